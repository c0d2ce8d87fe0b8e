"""BEP 9, metadata exchange (``ut_metadata``): fetch a torrent's info dictionary
from peers, and serve ours.  Pure: messages in, decisions out.

Messages (the payload after the extension id): a bencoded dictionary with
``msg_type`` (0 request, 1 data, 2 reject) and ``piece``; a data message also
has ``total_size`` and is followed by the piece's raw bytes.  The metadata is
cut into 16 KiB pieces, the last one shorter.  :func:`decode` returns a
:class:`Request`, :class:`Data` or :class:`Reject`, None for a message type
it does not know (BEP 9: ignore it), and raises :class:`MetadataError` for a
malformed one.

:class:`MetadataFetcher` holds the download.  Its contract:

* ``peer_joined(peer, metadata_size)`` when a peer's extension handshake says
  it has the metadata.  A size of 0 or above ``max_size`` is a MetadataError
  (drop the peer).  The first size heard fixes the download's size; a peer
  that says another size is kept aside, and used only if the first size turns
  out wrong (the assembled metadata fails its hash).
* ``next_request(peer)`` gives a piece to ask that peer for, or None; each peer
  has at most ``per_peer`` requests out, a piece is out with one peer at a time
  (with a second peer only when nothing else is left: an endgame), and a peer
  that rejected a piece is not asked for it again.
* ``received(peer, msg)`` takes the peer's decoded Data or Reject.  Data for a
  piece we did not ask that peer for, with the wrong ``total_size`` or of the
  wrong length is a MetadataError (drop the peer).  When the last piece
  arrives the whole is hashed: a match returns :class:`Complete` with the info
  dictionary's bytes (which must also decode as a bencoded dictionary); a
  mismatch returns :class:`HashFailed` and the download starts over.  If one
  peer gave every piece, HashFailed names it and it is forgotten.  If several
  did, nobody can be blamed: HashFailed names nobody, and from then on all
  pieces of an attempt come from a single peer, so the next failure names its
  liar (a source that leaves mid-attempt takes its pieces with it).
* ``peer_left(peer)`` puts its outstanding pieces back.  Answers to requests
  sent before a restart are ignored.
* ``sources()`` says how many peers could still be asked (the shell waits for
  more peers when it is zero).

Serving: :func:`serve` answers a request from our info bytes (data, or a
reject for a piece out of range or when we do not have the metadata).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Hashable

from torrentfs.core.extension import ExtensionError, bdecode, bdecode_prefix, bencode

__all__ = ["PIECE_SIZE", "MAX_METADATA_SIZE", "MetadataError", "Request", "Data", "Reject",
           "Complete", "HashFailed", "decode", "encode", "serve", "num_pieces",
           "MetadataFetcher"]

PIECE_SIZE = 16384
MAX_METADATA_SIZE = 16 << 20   # an info dict this big holds ~800k piece hashes
PER_PEER = 4


class MetadataError(ValueError):
    """A malformed or hostile ut_metadata message; ``str()`` is one line."""


@dataclass(frozen=True)
class Request:
    piece: int


@dataclass(frozen=True)
class Data:
    piece: int
    total_size: int
    data: bytes

    def __repr__(self) -> str:
        return f"Data(piece={self.piece}, total_size={self.total_size}, <{len(self.data)} bytes>)"


@dataclass(frozen=True)
class Reject:
    piece: int


@dataclass(frozen=True)
class Complete:
    info_bytes: bytes


@dataclass(frozen=True)
class HashFailed:
    culprits: tuple


def num_pieces(size: int) -> int:
    return -(-size // PIECE_SIZE)


def _piece_length(size: int, piece: int) -> int:
    return min(PIECE_SIZE, size - piece * PIECE_SIZE)


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def decode(payload: bytes) -> Request | Data | Reject | None:
    """Read one ut_metadata message; None for an unknown msg_type."""
    try:
        head, end = bdecode_prefix(payload)
    except ExtensionError as e:
        raise MetadataError(f"ut_metadata: {e}") from None
    if not isinstance(head, dict):
        raise MetadataError("ut_metadata: message is not a dictionary")
    kind, piece = head.get(b"msg_type"), head.get(b"piece")
    if not _int(kind):
        raise MetadataError("ut_metadata: no integer msg_type")
    if kind not in (0, 1, 2):
        return None
    if not _int(piece) or not 0 <= piece < num_pieces(MAX_METADATA_SIZE):
        raise MetadataError(f"ut_metadata: bad piece {piece!r}")
    rest = bytes(payload[end:])
    if kind == 1:
        total = head.get(b"total_size")
        if not _int(total) or not 0 < total <= MAX_METADATA_SIZE:
            raise MetadataError(f"ut_metadata: bad total_size {total!r}")
        return Data(piece, total, rest)
    if rest:
        raise MetadataError(f"ut_metadata: {len(rest)} stray bytes after the message")
    return Request(piece) if kind == 0 else Reject(piece)


def encode(msg: Request | Data | Reject) -> bytes:
    if isinstance(msg, Request):
        return bencode({b"msg_type": 0, b"piece": msg.piece})
    if isinstance(msg, Reject):
        return bencode({b"msg_type": 2, b"piece": msg.piece})
    return bencode({b"msg_type": 1, b"piece": msg.piece,
                    b"total_size": msg.total_size}) + msg.data


def serve(info_bytes: bytes | None, request: Request) -> Data | Reject:
    """Our answer to a peer's request for a piece of our metadata."""
    if not info_bytes or not 0 <= request.piece < num_pieces(len(info_bytes)):
        return Reject(request.piece)
    start = request.piece * PIECE_SIZE
    return Data(request.piece, len(info_bytes), info_bytes[start:start + PIECE_SIZE])


@dataclass
class _Peer:
    size: int
    out: set[int] = field(default_factory=set)       # pieces asked, not answered
    stale: set[int] = field(default_factory=set)     # asked before a restart: ignored
    rejected: set[int] = field(default_factory=set)  # pieces it refused


class MetadataFetcher:
    """Assembles the metadata for ``info_hash`` from peers (see the module
    docstring).  Peers are any hashable objects."""

    def __init__(self, info_hash: bytes, *, max_size: int = MAX_METADATA_SIZE,
                 per_peer: int = PER_PEER) -> None:
        self.info_hash = info_hash
        self.max_size = max_size
        self.per_peer = per_peer
        self.size: int | None = None
        self._peers: dict[Hashable, _Peer] = {}
        self._single = False                # after an unattributable failure
        self._source: Hashable | None = None  # the one peer of a single-source attempt
        self._reset(None)

    def _reset(self, size: int | None) -> None:
        self.size = size
        self._source = None
        n = num_pieces(size) if size else 0
        self._pieces: list[bytes | None] = [None] * n
        self._from: dict[int, Hashable] = {}
        for p in self._peers.values():
            p.stale |= p.out
            p.out.clear()
            p.rejected.clear()

    @property
    def received_pieces(self) -> int:
        return sum(1 for p in self._pieces if p is not None)

    @property
    def total_pieces(self) -> int:
        return len(self._pieces)

    def peer_joined(self, peer: Hashable, metadata_size: int) -> None:
        if not _int(metadata_size) or not 0 < metadata_size <= self.max_size:
            raise MetadataError(f"metadata_size {metadata_size!r} not in 1..{self.max_size}")
        self._peers[peer] = _Peer(metadata_size)
        if self.size is None:
            self._reset(metadata_size)

    def peer_left(self, peer: Hashable) -> None:
        self._peers.pop(peer, None)
        if self._single and peer == self._source:
            self._reset(self.size)

    def sources(self) -> int:
        """Peers that could still be asked for something."""
        return sum(1 for p in self._peers.values() if p.size == self.size
                   and len(p.rejected) < len(self._pieces))

    def outstanding(self, peer: Hashable) -> int:
        """Requests out with this peer."""
        p = self._peers.get(peer)
        return len(p.out) if p else 0

    def useful(self, peer: Hashable) -> bool:
        """False once the peer has rejected every piece (or is unknown)."""
        p = self._peers.get(peer)
        return p is not None and (p.size != self.size or len(p.rejected) < len(self._pieces))

    def next_request(self, peer: Hashable) -> int | None:
        p = self._peers.get(peer)
        if p is None or p.size != self.size or len(p.out) >= self.per_peer:
            return None
        if self._single:
            if self._source is None:
                self._source = peer
            elif self._source != peer:
                return None
        busy = {i for q in self._peers.values() for i in q.out}
        missing = [i for i, got in enumerate(self._pieces)
                   if got is None and i not in p.out and i not in p.rejected]
        for i in missing:
            if i not in busy:
                p.out.add(i)
                return i
        if missing and not p.out:  # endgame: ask a second peer for a piece in flight
            p.out.add(missing[0])
            return missing[0]
        return None

    def received(self, peer: Hashable, msg: Data | Reject) -> Complete | HashFailed | None:
        p = self._peers.get(peer)
        if p is not None and msg.piece in p.stale and msg.piece not in p.out:
            p.stale.discard(msg.piece)  # the answer to a request from before a restart
            return None
        if p is None or msg.piece not in p.out:
            raise MetadataError(f"ut_metadata: piece {msg.piece} was not asked for")
        p.out.discard(msg.piece)
        if isinstance(msg, Reject):
            p.rejected.add(msg.piece)
            return None
        if msg.total_size != self.size:
            raise MetadataError(f"ut_metadata: total_size {msg.total_size} is not the "
                                f"{self.size} announced")
        want = _piece_length(self.size, msg.piece)
        if len(msg.data) != want:
            raise MetadataError(f"ut_metadata: piece {msg.piece} is {len(msg.data)} bytes, "
                                f"expected {want}")
        if self._pieces[msg.piece] is not None:
            return None  # an endgame duplicate
        self._pieces[msg.piece] = msg.data
        self._from[msg.piece] = peer
        if any(got is None for got in self._pieces):
            return None
        info = b"".join(self._pieces)  # type: ignore[arg-type]
        if matches(info, self.info_hash) and _is_dict(info):
            return Complete(info)
        culprits = tuple(dict.fromkeys(self._from.values()))
        if len(culprits) == 1:
            self._peers.pop(culprits[0], None)
        else:
            culprits = ()
            self._single = True
        sizes = [q.size for q in self._peers.values()]
        self._reset(max(set(sizes), key=sizes.count) if sizes else None)
        return HashFailed(culprits)


def matches(info: bytes, info_hash: bytes) -> bool:
    """Whether an info dictionary is the one a 20-byte info-hash names: its SHA-1
    (v1, hybrid), or its SHA-256 cut to 20 bytes (BEP 52: a v2 torrent's swarm)."""
    return (hashlib.sha1(info).digest() == info_hash
            or hashlib.sha256(info).digest()[:20] == info_hash)


def _is_dict(info: bytes) -> bool:
    try:
        return isinstance(bdecode(info), dict)
    except ExtensionError:
        return False
