"""HTTP tracker announces (BEP 3) with compact peer lists (BEP 23, and BEP 7's
``peers6``). Pure: builds the request URL, parses the response body.

``parse_response`` accepts any bytes and either returns an ``AnnounceResponse`` or
raises ``TrackerError`` with one human line; it never raises anything else.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from urllib.parse import quote_from_bytes, urlsplit

import bencodepy

from torrentfs.core.address import unpack_addr
from torrentfs.core.text import replace_control

DEFAULT_INTERVAL = 1800
MIN_INTERVAL = 30  # we never re-announce faster than this, whatever a tracker says


class TrackerError(Exception):
    """A tracker answered with an error, or with something that is not an answer."""


@dataclass(frozen=True)
class AnnounceRequest:
    info_hash: bytes
    peer_id: bytes
    port: int
    uploaded: int = 0
    downloaded: int = 0
    left: int = 0
    event: str = ""  # "started", "completed", "stopped" or "" for a regular announce
    numwant: int = 50
    key: str = ""
    tracker_id: bytes | None = None


@dataclass(frozen=True)
class AnnounceResponse:
    interval: int = DEFAULT_INTERVAL
    min_interval: int | None = None
    peers: tuple[tuple[str, int], ...] = field(default=())
    complete: int | None = None
    incomplete: int | None = None
    tracker_id: bytes | None = None
    warning: str | None = None


def announce_url(base: str, req: AnnounceRequest) -> str:
    """The GET URL for announcing ``req`` to the tracker at ``base`` (whose own query
    string, if any, is kept). Binary fields are percent-encoded byte by byte."""
    params = [
        ("info_hash", quote_from_bytes(req.info_hash, safe="")),
        ("peer_id", quote_from_bytes(req.peer_id, safe="")),
        ("port", str(req.port)),
        ("uploaded", str(req.uploaded)),
        ("downloaded", str(req.downloaded)),
        ("left", str(req.left)),
        ("compact", "1"),
        ("no_peer_id", "1"),
        ("numwant", str(req.numwant)),
    ]
    if req.event:
        params.append(("event", req.event))
    if req.key:
        params.append(("key", quote_from_bytes(req.key.encode(), safe="")))
    if req.tracker_id:
        params.append(("trackerid", quote_from_bytes(req.tracker_id, safe="")))
    own = "&".join(f"{k}={v}" for k, v in params)
    query = urlsplit(base).query
    if base.endswith("?") or (query and base.endswith("&")):
        sep = ""  # "http://t/announce?" must not give "??info_hash="
    else:
        sep = "&" if query else "?"
    return f"{base}{sep}{own}"


def _text(value, limit: int = 200) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    # One line, no control characters: a tracker's words go into our log.
    return replace_control(" ".join(str(value).split()))[:limit]


def _compact_peers(data: bytes, size: int) -> list[tuple[str, int]]:
    if len(data) % size:
        raise TrackerError(f"compact peer list of {len(data)} bytes is not a multiple of {size}")
    peers = []
    for i in range(0, len(data), size):
        host, port = unpack_addr(data[i:i + size])
        if port:
            peers.append((host, port))
    return peers


def _dict_peers(items: list) -> list[tuple[str, int]]:
    peers = []
    for item in items:
        if not isinstance(item, dict):
            continue
        ip, port = item.get(b"ip"), item.get(b"port")
        if not isinstance(ip, bytes) or not isinstance(port, int) or not 0 < port < 65536:
            continue
        try:
            peers.append((str(ipaddress.ip_address(ip.decode("ascii"))), port))
        except (UnicodeDecodeError, ValueError):
            continue  # hostnames are not resolved: a tracker has no business sending them
    return peers


def parse_response(body: bytes) -> AnnounceResponse:
    """Decode a tracker's answer. Raises ``TrackerError`` for a ``failure reason`` or
    for anything that is not a well-formed answer."""
    try:
        data = bencodepy.decode(body)
    except Exception:
        snippet = _text(body[:80]) if body else "an empty body"
        raise TrackerError(f"tracker sent something that is not bencode: {snippet!r}") from None
    if not isinstance(data, dict):
        raise TrackerError("tracker response is not a dictionary")
    if b"failure reason" in data:
        raise TrackerError(f"tracker refused: {_text(data[b'failure reason'])}")
    interval = data.get(b"interval", DEFAULT_INTERVAL)
    if not isinstance(interval, int) or interval <= 0:
        interval = DEFAULT_INTERVAL
    min_interval = data.get(b"min interval")
    if not isinstance(min_interval, int) or min_interval <= 0:
        min_interval = None
    peers: list[tuple[str, int]] = []
    raw = data.get(b"peers", b"")
    if isinstance(raw, bytes):
        peers += _compact_peers(raw, 6)
    elif isinstance(raw, list):
        peers += _dict_peers(raw)
    raw6 = data.get(b"peers6", b"")
    if isinstance(raw6, bytes):
        peers += _compact_peers(raw6, 18)
    tracker_id = data.get(b"tracker id")
    warning = data.get(b"warning message")
    complete, incomplete = data.get(b"complete"), data.get(b"incomplete")
    return AnnounceResponse(
        interval=interval,
        min_interval=min_interval,
        peers=tuple(dict.fromkeys(peers)),
        complete=complete if isinstance(complete, int) else None,
        incomplete=incomplete if isinstance(incomplete, int) else None,
        tracker_id=tracker_id if isinstance(tracker_id, bytes) else None,
        warning=_text(warning) if warning is not None else None,
    )


def next_announce_in(resp: AnnounceResponse) -> int:
    """Seconds to wait before the next regular announce."""
    return max(MIN_INTERVAL, resp.min_interval or 0, resp.interval)
