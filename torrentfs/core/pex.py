"""BEP 11, peer exchange (``ut_pex``): tell connected peers whom we know, and
learn whom they know.  Pure: messages in and out, time passed in.

A message is a bencoded dictionary with ``added`` / ``dropped`` (compact IPv4:
4 address bytes and 2 port bytes each), ``added6`` / ``dropped6`` (compact
IPv6: 16 + 2) and ``added.f`` / ``added6.f`` (one flags byte per added peer).

Contract:

* :func:`decode` reads a peer's message.  A list whose length is not a
  multiple of its entry size, or a payload that is not a bencoded dictionary,
  is a :class:`PexError`.  At most ``MAX_ACCEPT`` entries of each list are
  read (the rest is ignored); port 0, unspecified, multicast and IPv6 link-local
  addresses are skipped.  Missing or short flags read as 0.
* :func:`encode` writes one; host names (not IP literals) and IPv6
  link-local addresses are skipped: a link-local address means nothing without its zone,
  which the compact form cannot carry (TCP cannot reach it; only uTP on the
  sender's one link might, by luck).
* :class:`PexPeer` is our side towards one peer: ``update(current, now)``
  returns the message to send now (the peers added since the last one, at most
  ``MAX_ADDED``, and the ones dropped, at most ``MAX_DROPPED``), or None when
  nothing changed or the last was sent less than ``INTERVAL`` seconds ago.
  The first message may go at once.  ``accept(now)`` says whether to read a
  message just received: at most one per ``MIN_RECEIVE_GAP`` seconds, the rest
  are ignored (a flooding peer gets nothing in).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Iterable, Mapping

from torrentfs.core.address import Addr, pack_addr, unpack_addr
from torrentfs.core.extension import ExtensionError, bdecode, bencode

__all__ = ["PexError", "PexMessage", "PexPeer", "encode", "decode", "FLAG_SEED",
           "FLAG_REACHABLE", "INTERVAL", "MAX_ADDED", "MAX_DROPPED", "MAX_ACCEPT"]

FLAG_ENCRYPTION = 0x01
FLAG_SEED = 0x02
FLAG_UTP = 0x04
FLAG_HOLEPUNCH = 0x08
FLAG_REACHABLE = 0x10   # we connected out to it: it accepts connections

INTERVAL = 60.0         # at most one message per peer per this many seconds
MIN_RECEIVE_GAP = 10.0  # messages from one peer closer than this are ignored
MAX_ADDED = 50
MAX_DROPPED = 50
MAX_ACCEPT = 200



class PexError(ValueError):
    """A malformed ut_pex message; ``str()`` is one line."""


@dataclass(frozen=True)
class PexMessage:
    added: tuple[tuple[Addr, int], ...] = ()   # (address, flags)
    dropped: tuple[Addr, ...] = ()


def _link_local6(ip) -> bool:
    return ip.version == 6 and ip.is_link_local


def _compact(addr: Addr) -> tuple[int, bytes] | None:
    """(IP version, compact bytes) of an IP literal address, else None."""
    if not 0 < addr[1] < 65536:
        return None
    try:
        if _link_local6(ipaddress.ip_address(addr[0])):
            return None
        packed = pack_addr(addr)
    except ValueError:
        return None
    return (6 if len(packed) == 18 else 4), packed


def encode(added: Iterable[tuple[Addr, int]] = (), dropped: Iterable[Addr] = ()) -> bytes:
    out: dict[bytes, bytearray] = {k: bytearray() for k in (
        b"added", b"added.f", b"added6", b"added6.f", b"dropped", b"dropped6")}
    for addr, flags in added:
        c = _compact(addr)
        if c:
            v6 = b"6" if c[0] == 6 else b""
            out[b"added" + v6] += c[1]
            out[b"added" + v6 + b".f"].append(flags & 0xFF)
    for addr in dropped:
        c = _compact(addr)
        if c:
            out[b"dropped" + (b"6" if c[0] == 6 else b"")] += c[1]
    return bencode({k: bytes(v) for k, v in out.items()})


def _entries(blob: object, size: int, what: str) -> list[Addr | None]:
    if blob is None:
        return []
    if not isinstance(blob, bytes):
        raise PexError(f"ut_pex: {what} is not a byte string")
    if len(blob) % size:
        raise PexError(f"ut_pex: {what} is {len(blob)} bytes, not a multiple of {size}")
    out: list[Addr | None] = []
    for at in range(0, min(len(blob), size * MAX_ACCEPT), size):
        host, port = unpack_addr(blob[at:at + size])
        ip = ipaddress.ip_address(host)
        good = port and not (ip.is_unspecified or ip.is_multicast or _link_local6(ip))
        out.append((host, port) if good else None)
    return out


def decode(payload: bytes) -> PexMessage:
    try:
        top = bdecode(payload)
    except ExtensionError as e:
        raise PexError(f"ut_pex: {e}") from None
    if not isinstance(top, dict):
        raise PexError("ut_pex: message is not a dictionary")
    added: list[tuple[Addr, int]] = []
    dropped: list[Addr] = []
    for v6, size in ((b"", 6), (b"6", 18)):
        what = "added" + v6.decode()
        flags = top.get(b"added" + v6 + b".f")
        flags = flags if isinstance(flags, bytes) else b""
        for n, addr in enumerate(_entries(top.get(b"added" + v6), size, what)):
            if addr:
                added.append((addr, flags[n] if n < len(flags) else 0))
        dropped += [a for a in _entries(top.get(b"dropped" + v6), size, "dropped" + v6.decode())
                    if a]
    return PexMessage(tuple(added), tuple(dropped))


class PexPeer:
    """Our PEX state towards one peer: what we told it, and when."""

    def __init__(self) -> None:
        self.told: dict[Addr, int] = {}
        self.last_sent: float | None = None
        self.last_received: float | None = None
        #: the caller's token (``Extensions.tick``: the set of peers known) when the
        #: last ``update`` had nothing to send: the same set gives nothing again
        self.quiet_for: object = None

    def due(self, now: float) -> bool:
        """Whether a message may go now (``INTERVAL`` since the last): the caller
        need not gather the peers it knows before then."""
        return self.last_sent is None or now - self.last_sent >= INTERVAL

    def update(self, current: Mapping[Addr, int], now: float) -> bytes | None:
        """The message to send now, given the peers we know now (address -> flags),
        or None."""
        if not self.due(now):
            return None
        added = [(a, f) for a, f in current.items() if a not in self.told][:MAX_ADDED]
        dropped = [a for a in self.told if a not in current][:MAX_DROPPED]
        if not added and not dropped:
            return None
        for a in dropped:
            del self.told[a]
        self.told.update(added)
        self.last_sent = now
        return encode(added, dropped)

    def accept(self, now: float) -> bool:
        """Whether to read a message that just arrived (rate-limited)."""
        if self.last_received is not None and now - self.last_received < MIN_RECEIVE_GAP:
            return False
        self.last_received = now
        return True
