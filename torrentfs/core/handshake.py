"""The BitTorrent handshake (BEP 3): its 68 bytes, and the reserved bits in it.

Layout::

    offset  0  pstrlen: 19
            1  pstr: b"BitTorrent protocol"
           20  reserved: 8 bytes of feature bits (BEP 10, BEP 6, BEP 5)
           28  info_hash: 20 bytes
           48  peer_id: 20 bytes
           68  (end)

Every reading of handshake bytes is here: :func:`check` judges a peer's
handshake as its bytes arrive (``wire.PeerConnection`` refuses a wrong protocol
or torrent before all 68 are in), :func:`decode` reads a whole one, and
:func:`info_hash_of` tells which torrent the first 48 bytes of an incoming
connection ask for (to route it among the torrents one listening socket serves).

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from torrentfs.core.messages import Message, RemoteProtocolError

__all__ = [
    "PROTOCOL",
    "HANDSHAKE_LENGTH",
    "INFO_HASH_END",
    "RESERVED_FAST",
    "RESERVED_EXTENDED",
    "RESERVED_DHT",
    "DEFAULT_RESERVED",
    "make_reserved",
    "Handshake",
    "encode",
    "check",
    "decode",
    "info_hash_of",
]

PROTOCOL = b"BitTorrent protocol"
_PREFIX = bytes([len(PROTOCOL)]) + PROTOCOL
_RESERVED_AT = len(_PREFIX)           # 20
_INFO_HASH_AT = _RESERVED_AT + 8      # 28
INFO_HASH_END = _INFO_HASH_AT + 20    # 48
"""How many bytes of a handshake name its torrent: up to the end of the info-hash."""
HANDSHAKE_LENGTH = INFO_HASH_END + 20  # 68

# (byte index in reserved, bit mask)
RESERVED_EXTENDED = (5, 0x10)  # BEP 10
RESERVED_FAST = (7, 0x04)  # BEP 6
RESERVED_DHT = (7, 0x01)  # BEP 5
RESERVED_V2 = (7, 0x10)  # BEP 52: we speak v2 (set only for a v2 or hybrid torrent:
# libtorrent drops a peer that sets it for a torrent it knows to be v1-only)


def make_reserved(*, fast: bool = True, extended: bool = True, dht: bool = False,
                  v2: bool = False) -> bytes:
    """Return the 8 reserved handshake bytes with exactly the given bits set."""
    reserved = bytearray(8)
    for wanted, (byte, mask) in (
        (fast, RESERVED_FAST),
        (extended, RESERVED_EXTENDED),
        (dht, RESERVED_DHT),
        (v2, RESERVED_V2),
    ):
        if wanted:
            reserved[byte] |= mask
    return bytes(reserved)


DEFAULT_RESERVED = make_reserved()
"""Our default reserved bytes: fast extension and BEP 10, no DHT."""


def _has_bit(reserved: bytes, bit: tuple[int, int]) -> bool:
    byte, mask = bit
    return len(reserved) > byte and bool(reserved[byte] & mask)


@dataclass(frozen=True)
class Handshake(Message):
    """The 68-byte handshake; only the peer's arrives as an event."""

    info_hash: bytes
    peer_id: bytes
    reserved: bytes = DEFAULT_RESERVED

    @property
    def fast(self) -> bool:
        """Whether the sender supports the fast extension (BEP 6)."""
        return _has_bit(self.reserved, RESERVED_FAST)

    @property
    def extended(self) -> bool:
        """Whether the sender supports the extension protocol (BEP 10)."""
        return _has_bit(self.reserved, RESERVED_EXTENDED)

    @property
    def dht(self) -> bool:
        """Whether the sender runs a DHT node (BEP 5)."""
        return _has_bit(self.reserved, RESERVED_DHT)


def encode(hs: Handshake) -> bytes:
    """The 68 bytes of ``hs``."""
    return b"".join((_PREFIX, hs.reserved, hs.info_hash, hs.peer_id))


def check(head: bytes, info_hash: bytes, *also: bytes) -> None:
    """Judge the first bytes of a peer's handshake, however many have arrived (up to
    all 68): raises RemoteProtocolError as soon as they show a pstrlen other than
    19, a protocol string other than ``BitTorrent protocol``, or an info-hash other
    than ``info_hash`` (or one of ``also``: a hybrid torrent's other swarm, whose
    name a v2 peer may answer with).  The reserved bytes and the peer id are not
    judged."""
    n = min(len(head), len(_PREFIX))
    if head[:n] != _PREFIX[:n]:
        if head[0] != len(PROTOCOL):
            raise RemoteProtocolError(f"bad handshake: pstrlen {head[0]}, expected 19")
        raise RemoteProtocolError("bad handshake: protocol string is not 'BitTorrent protocol'")
    if (len(head) >= INFO_HASH_END
            and head[_INFO_HASH_AT:INFO_HASH_END] not in (info_hash, *also)):
        raise RemoteProtocolError("bad handshake: info_hash is not ours")


def decode(head: bytes) -> Handshake:
    """The handshake in the first 68 bytes of ``head`` (judged by :func:`check`)."""
    return Handshake(
        info_hash=bytes(head[_INFO_HASH_AT:INFO_HASH_END]),
        peer_id=bytes(head[INFO_HASH_END:HANDSHAKE_LENGTH]),
        reserved=bytes(head[_RESERVED_AT:_INFO_HASH_AT]),
    )


def info_hash_of(head: bytes) -> bytes | None:
    """The info-hash the first ``INFO_HASH_END`` bytes of a connection ask for, or
    None if they are not the start of a BitTorrent handshake."""
    if len(head) < INFO_HASH_END or head[: len(_PREFIX)] != _PREFIX:
        return None
    return bytes(head[_INFO_HASH_AT:INFO_HASH_END])
