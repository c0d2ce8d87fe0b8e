"""Local Service Discovery (BEP 14). Pure: builds and parses ``BT-SEARCH``
announcements and decides when to announce and which datagrams name a peer; time
is passed in.

An announcement is an HTTP-like datagram multicast to 239.192.152.143:6771 (or
[ff15::efc0:988f]:6771)::

    BT-SEARCH * HTTP/1.1\\r\\n
    Host: 239.192.152.143:6771\\r\\n
    Port: <our listen port>\\r\\n
    Infohash: <40 hex digits>\\r\\n      (one or more)
    cookie: <ours>\\r\\n
    \\r\\n\\r\\n

The peer is the datagram's source address with the announced port.

``LocalDiscovery`` holds one torrent's side of it:
* ``announce_due(now)`` is true at start and then every ``interval`` (5 min)
  seconds after ``announced(now)``: one announcement per torrent per interval.
* ``heard(data, source_ip, now)`` returns the peer an announcement names, or
  ``None`` for one of ours (same cookie, since multicast loops back), for another
  torrent, or over the per-source limit (``PER_SOURCE`` new peers per source
  address per ``SOURCE_WINDOW`` s, at most ``MAX_SOURCES`` sources remembered).
  Anything that is not a well-formed announcement raises ``LsdError``; parsing is
  bounded (``MAX_DATAGRAM`` bytes, ``MAX_LINES`` lines) and raises nothing else.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

GROUP4 = "239.192.152.143"
GROUP6 = "ff15::efc0:988f"
PORT = 6771
ANNOUNCE_INTERVAL = 300.0
MAX_DATAGRAM = 1400       # BEP 14: announcements stay under this (no fragments)
MAX_LINES = 40
MAX_COOKIE = 64
PER_SOURCE = 4            # new peers accepted from one source address ...
SOURCE_WINDOW = 300.0     # ... per this many seconds
MAX_SOURCES = 256


class LsdError(ValueError):
    """A datagram that is not a well-formed BT-SEARCH announcement."""


@dataclass(frozen=True)
class Announcement:
    port: int
    info_hashes: tuple[bytes, ...]
    cookie: str | None = None


def host_header(ipv6: bool = False) -> str:
    return f"[{GROUP6}]:{PORT}" if ipv6 else f"{GROUP4}:{PORT}"


def build_announce(info_hashes: list[bytes], port: int, cookie: str | None = None,
                   ipv6: bool = False) -> bytes:
    """One BT-SEARCH datagram announcing ``info_hashes`` on ``port``."""
    if not info_hashes or any(len(h) != 20 for h in info_hashes):
        raise ValueError("announce 20-byte info-hashes")
    if not 0 < port < 65536:
        raise ValueError(f"bad port {port}")
    lines = ["BT-SEARCH * HTTP/1.1", f"Host: {host_header(ipv6)}", f"Port: {port}"]
    lines += [f"Infohash: {h.hex()}" for h in info_hashes]
    if cookie:
        lines.append(f"cookie: {cookie}")
    data = ("\r\n".join(lines) + "\r\n\r\n\r\n").encode("ascii")
    if len(data) > MAX_DATAGRAM:
        raise ValueError("too many info-hashes for one announcement")
    return data


def parse_announce(data: bytes) -> Announcement:
    """The announcement in ``data``; ``LsdError`` if it is not one."""
    if len(data) > MAX_DATAGRAM:
        raise LsdError(f"datagram of {len(data)} bytes")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise LsdError("not ASCII") from None
    lines = text.replace("\r\n", "\n").split("\n")
    if len(lines) > MAX_LINES:
        raise LsdError(f"more than {MAX_LINES} lines")
    method, _, rest = lines[0].partition(" ")
    if method.upper() != "BT-SEARCH" or not rest.upper().endswith("HTTP/1.1"):
        raise LsdError(f"not a BT-SEARCH request: {lines[0][:40]!r}")
    port: int | None = None
    hashes: list[bytes] = []
    cookie = None
    for line in lines[1:]:
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise LsdError("header line without ':'")
        name, value = name.strip().lower(), value.strip()
        if name == "port":
            if len(value) > 5 or not value.isdigit() or not 0 < int(value) < 65536:
                raise LsdError(f"bad port {value[:10]!r}")
            port = int(value)
        elif name == "infohash":
            if len(value) == 40:
                try:
                    hashes.append(bytes.fromhex(value))
                except ValueError:
                    pass  # a malformed one among good ones is skipped
        elif name == "cookie":
            cookie = value[:MAX_COOKIE]
    if port is None:
        raise LsdError("no Port header")
    if not hashes:
        raise LsdError("no valid Infohash header")
    return Announcement(port, tuple(dict.fromkeys(hashes)), cookie)


class LocalDiscovery:
    """One torrent's announcement schedule and its filter of what it hears."""

    def __init__(self, info_hash: bytes, cookie: str,
                 interval: float = ANNOUNCE_INTERVAL, also: tuple[bytes, ...] = ()) -> None:
        self.info_hash = info_hash
        # Every info-hash announced and heard: a hybrid torrent's v2 one (cut to 20
        # bytes) is ``also``.
        self.info_hashes = [info_hash, *also]
        self.cookie = cookie
        self.interval = interval
        self._next_announce: float | None = None  # None: not yet announced
        self._sources: OrderedDict[str, list[tuple[float, int]]] = OrderedDict()

    def announce_due(self, now: float) -> bool:
        return self._next_announce is None or now >= self._next_announce

    def next_announce(self, now: float) -> float:
        """When the next announcement is due (``now`` if it is)."""
        return now if self._next_announce is None else max(now, self._next_announce)

    def announced(self, now: float) -> None:
        self._next_announce = now + self.interval

    def announcement(self, port: int, ipv6: bool = False) -> bytes:
        return build_announce(self.info_hashes, port, self.cookie, ipv6)

    def heard(self, data: bytes, source_ip: str, now: float) -> tuple[str, int] | None:
        """The peer (source_ip, port) an announcement names, if it is for us and new
        enough; ``None`` otherwise. Raises ``LsdError`` for a malformed one."""
        ann = parse_announce(data)
        if ann.cookie is not None and ann.cookie == self.cookie:
            return None
        if not any(h in ann.info_hashes for h in self.info_hashes):
            return None
        seen = [(t, p) for t, p in self._sources.pop(source_ip, []) if now - t < SOURCE_WINDOW]
        if any(p == ann.port for _, p in seen) or len(seen) >= PER_SOURCE:
            self._sources[source_ip] = seen
            return None
        seen.append((now, ann.port))
        self._sources[source_ip] = seen
        while len(self._sources) > MAX_SOURCES:
            self._sources.popitem(last=False)
        return source_ip, ann.port
