"""UDP tracker protocol (BEP 15). Pure: builds request datagrams, checks and parses
answers; time is passed in.

A UDP announce is two exchanges. ``connect_request`` asks for a connection id,
which the client may reuse for ``CONNECTION_ID_LIFETIME`` seconds after it got it
(``ConnectionIds``). ``announce_request`` / ``scrape_request`` then carry it.
Every request has a random 32-bit transaction id; an answer counts only if it
echoes it. A request with no answer is sent again after ``retry_timeout(n)``
seconds, ``base * 2**n`` (BEP 15: 15 s doubling up to n = 8).

``read_answer(data, transaction_id, action)`` is the one entry point for what
arrives: ``None`` for a datagram that is not an answer to this request (too short
to carry a transaction id, or another one), the parsed message for an answer, and
``TrackerError`` (with one human line) for an error answer (action 3) or an answer
of the wrong action or size. It never raises anything else, whatever the bytes.

Peers in an announce answer are 6 bytes each (IPv4) when the tracker was reached
over IPv4 and 18 bytes each (IPv6) when over IPv6: the caller says which.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from torrentfs.core.announce import (
    DEFAULT_INTERVAL,
    AnnounceRequest,
    AnnounceResponse,
    TrackerError,
    _compact_peers,
    _text,
)

PROTOCOL_ID = 0x41727101980
CONNECT, ANNOUNCE, SCRAPE, ERROR = 0, 1, 2, 3
EVENTS = {"": 0, "completed": 1, "started": 2, "stopped": 3}
CONNECTION_ID_LIFETIME = 60.0
RETRY_BASE = 15.0
MAX_RETRY_EXPONENT = 8
MAX_SCRAPE = 74  # info-hashes per scrape request (BEP 15)
MAX_DATAGRAM = 65536

_ACTION_NAMES = {CONNECT: "connect", ANNOUNCE: "announce", SCRAPE: "scrape", ERROR: "error"}


@dataclass(frozen=True)
class Connected:
    transaction_id: int
    connection_id: int


@dataclass(frozen=True)
class Announced:
    transaction_id: int
    response: AnnounceResponse


@dataclass(frozen=True)
class ScrapeStats:
    seeders: int
    completed: int
    leechers: int


@dataclass(frozen=True)
class Scraped:
    transaction_id: int
    stats: tuple[ScrapeStats, ...] = field(default=())


def retry_timeout(attempt: int, base: float = RETRY_BASE) -> float:
    """Seconds to wait for an answer to the ``attempt``-th sending (0 = first)."""
    return base * 2 ** min(max(attempt, 0), MAX_RETRY_EXPONENT)


def key_number(key: str) -> int:
    """The announce key as the 32-bit number BEP 15 sends: a hex key (as HTTP
    announces send it) as itself, anything else hashed."""
    try:
        return int(key, 16) & 0xFFFFFFFF
    except ValueError:
        return zlib.crc32(key.encode())


def connect_request(transaction_id: int) -> bytes:
    return struct.pack(">QII", PROTOCOL_ID, CONNECT, transaction_id & 0xFFFFFFFF)


def announce_request(connection_id: int, transaction_id: int, req: AnnounceRequest) -> bytes:
    """98 bytes: ``req`` as a BEP 15 announce. The IP field is 0 (the tracker uses the
    datagram's source); ``numwant`` below 0 means the tracker's default."""
    if len(req.info_hash) != 20 or len(req.peer_id) != 20:
        raise ValueError("info-hash and peer id must be 20 bytes")
    numwant = req.numwant if req.numwant >= 0 else -1
    return struct.pack(">QII20s20sQQQIIIiH", connection_id, ANNOUNCE,
                       transaction_id & 0xFFFFFFFF, req.info_hash, req.peer_id,
                       max(req.downloaded, 0), max(req.left, 0), max(req.uploaded, 0),
                       EVENTS.get(req.event, 0), 0, key_number(req.key),
                       min(numwant, 0x7FFFFFFF), req.port & 0xFFFF)


def scrape_request(connection_id: int, transaction_id: int, info_hashes: list[bytes]) -> bytes:
    if not 0 < len(info_hashes) <= MAX_SCRAPE or any(len(h) != 20 for h in info_hashes):
        raise ValueError(f"a scrape asks for 1 to {MAX_SCRAPE} 20-byte info-hashes")
    return struct.pack(">QII", connection_id, SCRAPE, transaction_id & 0xFFFFFFFF) + b"".join(
        info_hashes)


def read_answer(data: bytes, transaction_id: int, action: int, *, ipv6: bool = False,
                scraped: int = 0) -> Connected | Announced | Scraped | None:
    """The answer in ``data`` to the request with ``transaction_id`` and ``action``,
    or ``None`` if ``data`` is not an answer to it. ``scraped`` is the number of
    info-hashes a scrape asked for. Raises ``TrackerError`` for an error answer or a
    malformed one."""
    if len(data) < 8:
        return None
    got_action, tid = struct.unpack_from(">II", data)
    if tid != transaction_id & 0xFFFFFFFF:
        return None
    if got_action == ERROR:
        message = _text(data[8:]) or "no reason given"
        raise TrackerError(f"tracker refused: {message}")
    if got_action != action:
        raise TrackerError(f"tracker answered {_ACTION_NAMES.get(got_action, got_action)!r} "
                           f"to a {_ACTION_NAMES.get(action, action)!r} request")
    if action == CONNECT:
        if len(data) < 16:
            raise TrackerError(f"connect answer of {len(data)} bytes (16 expected)")
        return Connected(tid, struct.unpack_from(">Q", data, 8)[0])
    if action == ANNOUNCE:
        return Announced(tid, _announce_response(data, ipv6))
    if action == SCRAPE:
        return Scraped(tid, _scrape_stats(data, scraped))
    raise TrackerError(f"unknown action {action}")


def _announce_response(data: bytes, ipv6: bool) -> AnnounceResponse:
    if len(data) < 20:
        raise TrackerError(f"announce answer of {len(data)} bytes (at least 20 expected)")
    interval, leechers, seeders = struct.unpack_from(">iii", data, 8)
    peers = _compact_peers(data[20:], 18 if ipv6 else 6)
    return AnnounceResponse(
        interval=interval if interval > 0 else DEFAULT_INTERVAL,
        peers=tuple(dict.fromkeys(peers)),
        complete=seeders if seeders >= 0 else None,
        incomplete=leechers if leechers >= 0 else None,
    )


def _scrape_stats(data: bytes, scraped: int) -> tuple[ScrapeStats, ...]:
    body = data[8:]
    if len(body) % 12 or (scraped and len(body) // 12 != scraped):
        raise TrackerError(f"scrape answer of {len(data)} bytes for {scraped} info-hashes")
    return tuple(ScrapeStats(*struct.unpack_from(">III", body, i))
                 for i in range(0, len(body), 12))


class ConnectionIds:
    """Connection ids per tracker address, each usable for ``lifetime`` seconds
    after it arrived (BEP 15 allows one minute)."""

    def __init__(self, lifetime: float = CONNECTION_ID_LIFETIME) -> None:
        self.lifetime = lifetime
        self._ids: dict[object, tuple[int, float]] = {}

    def get(self, tracker: object, now: float) -> int | None:
        entry = self._ids.get(tracker)
        if entry is None:
            return None
        if now - entry[1] >= self.lifetime:
            del self._ids[tracker]
            return None
        return entry[0]

    def put(self, tracker: object, connection_id: int, now: float) -> None:
        self._ids[tracker] = (connection_id, now)

    def forget(self, tracker: object) -> None:
        self._ids.pop(tracker, None)
