"""The peer wire messages (BEP 3, BEP 6, the BEP 10 frame, BEP 52's hash request,
hashes and hash reject) and their codec.

One frozen dataclass per message under one base class, :class:`Message`; each
message with a fixed id carries it as the class attribute ``msg_id``.
:func:`encode` turns a message into its length-prefixed wire bytes and
:func:`decode` turns one received message back into its dataclass, each judging
the fields against the torrent's piece count.  Neither knows about the state of a
connection (what was negotiated, which message may come first): that is
``wire.PeerConnection``'s business, and it is the module the shells import.

Pure: no I/O, no clock.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from torrentfs.core import bitfield

__all__ = [
    "MAX_BLOCK_LENGTH",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "Message",
    "KeepAlive",
    "Choke",
    "Unchoke",
    "Interested",
    "NotInterested",
    "Have",
    "Bitfield",
    "Request",
    "Piece",
    "Cancel",
    "Port",
    "Suggest",
    "HaveAll",
    "HaveNone",
    "Reject",
    "AllowedFast",
    "Extended",
    "HashRequest",
    "Hashes",
    "HashReject",
    "HASH_TYPES",
    "MAX_HASH_COUNT",
    "Unknown",
    "ConnectionClosed",
    "FAST_TYPES",
    "FAST_IDS",
    "NAMES",
    "is_int",
    "encode",
    "length_prefix",
    "decode",
]

MAX_BLOCK_LENGTH = 131072
"""Longest block a request, cancel, reject or piece may carry (128 KiB)."""
MAX_HASH_COUNT = 8192
"""Most base-layer hashes one hash request may ask for (libtorrent's limit)."""
MAX_TREE_LAYERS = 64
"""Highest base layer or proof layer count a hash message may name (a merkle tree
of 2**64 blocks is far past any torrent)."""

_U32 = 2**32


class ProtocolError(Exception):
    """A peer wire protocol violation; ``str(exc)`` is a one-line reason."""


class LocalProtocolError(ProtocolError):
    """We tried to do something invalid (bad field, wrong moment)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something invalid; the connection should be dropped."""


@dataclass(frozen=True)
class Message:
    """Base class of everything ``next_event()`` returns and ``send()`` takes.

    Each subclass for a message with a fixed id carries it as the class
    attribute ``msg_id`` (``Have.msg_id == 4``); :class:`Unknown` has it as a
    field; handshake, keep-alive and connection-closed have none.
    """


@dataclass(frozen=True)
class KeepAlive(Message):
    """A zero-length message."""


@dataclass(frozen=True)
class Choke(Message):
    msg_id: ClassVar[int] = 0


@dataclass(frozen=True)
class Unchoke(Message):
    msg_id: ClassVar[int] = 1


@dataclass(frozen=True)
class Interested(Message):
    msg_id: ClassVar[int] = 2


@dataclass(frozen=True)
class NotInterested(Message):
    msg_id: ClassVar[int] = 3


@dataclass(frozen=True)
class Have(Message):
    msg_id: ClassVar[int] = 4
    index: int


@dataclass(frozen=True)
class Bitfield(Message):
    """Raw bitfield bytes, high bit of byte 0 is piece 0; validated for
    length and spare bits only."""

    msg_id: ClassVar[int] = 5
    bits: bytes

    def __repr__(self) -> str:
        return f"Bitfield(<{len(self.bits)} bytes>)"


@dataclass(frozen=True)
class Request(Message):
    msg_id: ClassVar[int] = 6
    index: int
    begin: int
    length: int


@dataclass(frozen=True)
class Piece(Message):
    """A block.  Received ``data`` is a read-only memoryview (compares equal
    to the same bytes); use ``bytes(data)`` if a real bytes is needed."""

    msg_id: ClassVar[int] = 7
    index: int
    begin: int
    data: bytes | memoryview

    def __repr__(self) -> str:
        return f"Piece(index={self.index}, begin={self.begin}, data=<{len(self.data)} bytes>)"

    def __hash__(self) -> int:
        # A view of a bytearray is unhashable; equal pieces have equal lengths.
        return hash((self.index, self.begin, len(self.data)))


@dataclass(frozen=True)
class Cancel(Message):
    msg_id: ClassVar[int] = 8
    index: int
    begin: int
    length: int


@dataclass(frozen=True)
class Port(Message):
    """DHT port (BEP 5)."""

    msg_id: ClassVar[int] = 9
    port: int


@dataclass(frozen=True)
class Suggest(Message):
    msg_id: ClassVar[int] = 0x0D
    index: int


@dataclass(frozen=True)
class HaveAll(Message):
    msg_id: ClassVar[int] = 0x0E


@dataclass(frozen=True)
class HaveNone(Message):
    msg_id: ClassVar[int] = 0x0F


@dataclass(frozen=True)
class Reject(Message):
    msg_id: ClassVar[int] = 0x10
    index: int
    begin: int
    length: int


@dataclass(frozen=True)
class AllowedFast(Message):
    msg_id: ClassVar[int] = 0x11
    index: int


@dataclass(frozen=True)
class Extended(Message):
    """A BEP 10 message: ``ext_id`` 0 is the extension handshake, others are
    the ids the receiver assigned in its handshake.  ``payload`` is raw."""

    msg_id: ClassVar[int] = 20
    ext_id: int
    payload: bytes


@dataclass(frozen=True)
class HashRequest(Message):
    """BEP 52: ask for ``length`` hashes of the merkle tree whose root is
    ``pieces_root``, at ``base_layer`` (0: the 16 KiB blocks) from ``index`` on,
    with the uncle hashes proving them up to ``proof_layers`` layers above."""

    msg_id: ClassVar[int] = 21
    pieces_root: bytes
    base_layer: int
    index: int
    length: int
    proof_layers: int


@dataclass(frozen=True)
class Hashes(Message):
    """BEP 52: the answer to a :class:`HashRequest` (its fields repeated), then
    ``hashes``: the base-layer hashes and the uncle hashes, 32 bytes each."""

    msg_id: ClassVar[int] = 22
    pieces_root: bytes
    base_layer: int
    index: int
    length: int
    proof_layers: int
    hashes: bytes

    def __repr__(self) -> str:
        return (f"Hashes(root={self.pieces_root[:4].hex()}.., base={self.base_layer}, "
                f"index={self.index}, length={self.length}, proof={self.proof_layers}, "
                f"<{len(self.hashes) // 32} hashes>)")


@dataclass(frozen=True)
class HashReject(Message):
    """BEP 52: the peer will not answer this :class:`HashRequest`."""

    msg_id: ClassVar[int] = 23
    pieces_root: bytes
    base_layer: int
    index: int
    length: int
    proof_layers: int


@dataclass(frozen=True)
class Unknown(Message):
    """A message with an id this module does not know; tolerated."""

    msg_id: int
    payload: bytes


@dataclass(frozen=True)
class ConnectionClosed(Message):
    """The peer closed the connection at a message boundary (never sent)."""


_KNOWN_IDS = frozenset({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x0D, 0x0E, 0x0F, 0x10, 0x11, 20,
                        21, 22, 23})
HASH_TYPES = (HashRequest, Hashes, HashReject)
"""BEP 52's merkle hash messages."""
FAST_TYPES = (Suggest, HaveAll, HaveNone, Reject, AllowedFast)
"""The messages of the fast extension (BEP 6): allowed only once it is negotiated."""
FAST_IDS = frozenset(t.msg_id for t in FAST_TYPES)
_NO_PAYLOAD_TYPES = {0: Choke, 1: Unchoke, 2: Interested, 3: NotInterested, 0x0E: HaveAll, 0x0F: HaveNone}
_INDEX_TYPES = {4: Have, 0x0D: Suggest, 0x11: AllowedFast}
_BLOCK_TYPES = {6: Request, 8: Cancel, 0x10: Reject}
NAMES = {
    0: "choke",
    1: "unchoke",
    2: "interested",
    3: "not interested",
    4: "have",
    5: "bitfield",
    6: "request",
    7: "piece",
    8: "cancel",
    9: "port",
    0x0D: "suggest",
    0x0E: "have_all",
    0x0F: "have_none",
    0x10: "reject",
    0x11: "allowed_fast",
    20: "extended",
    21: "hash request",
    22: "hashes",
    23: "hash reject",
}
"""The protocol's name of each known message id, for error messages."""

_LEN_ID = struct.Struct(">IB")
_INDEX = struct.Struct(">I")
_BLOCK = struct.Struct(">III")
_PORT = struct.Struct(">H")
_PIECE_HEAD = struct.Struct(">II")
_PIECE_FULL_HEAD = struct.Struct(">IBII")
_REQUEST = struct.Struct(">IBIII")  # a whole Request: length 13, id 6, index, begin, length

_HASH_HEAD = struct.Struct(">32sIIII")


def hash_header_problem(root: object, base: object, index: object, length: object,
                        proof: object) -> str | None:
    """Why a hash message's header is invalid, or None: a 32-byte root, a base and
    proof layer count under MAX_TREE_LAYERS, a length that is a power of two up to
    MAX_HASH_COUNT, an index that is a multiple of it (BEP 52)."""
    if not isinstance(root, bytes) or len(root) != 32:
        return "pieces root is not 32 bytes"
    if not all(is_int(v) and v >= 0 for v in (base, index, length, proof)):
        return "fields must be non-negative integers"
    if base >= MAX_TREE_LAYERS or proof >= MAX_TREE_LAYERS:  # type: ignore[operator]
        return f"base layer {base} or proof layers {proof} not under {MAX_TREE_LAYERS}"
    if not 1 <= length <= MAX_HASH_COUNT or length & (length - 1):  # type: ignore[operator]
        return f"length {length} is not a power of two in 1..{MAX_HASH_COUNT}"
    if index % length or index >= 2**32:  # type: ignore[operator]
        return f"index {index} is not a multiple of length {length}"
    return None


def is_int(value: object) -> bool:
    """True for an int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def _is_bytes(value: object) -> bool:
    return isinstance(value, (bytes, bytearray, memoryview))


# ---------------------------------------------------------------------------
# Encoding (what we send)


def _check_index(msg: Message, index: object, num_pieces: int | None) -> None:
    if num_pieces is None:
        raise LocalProtocolError(f"{type(msg).__name__}: the number of pieces is not known")
    if not is_int(index) or not 0 <= index < num_pieces:  # type: ignore[operator]
        raise LocalProtocolError(
            f"{type(msg).__name__}: piece index {index!r} not in 0..{num_pieces - 1}"
        )


def _check_block(msg: Message, begin: object, length: int | None) -> None:
    if not is_int(begin) or not 0 <= begin < _U32:  # type: ignore[operator]
        raise LocalProtocolError(f"{type(msg).__name__}: bad begin {begin!r}")
    if length is None:
        return
    if not is_int(length) or not 1 <= length <= MAX_BLOCK_LENGTH:
        raise LocalProtocolError(
            f"{type(msg).__name__}: length {length!r} not in 1..{MAX_BLOCK_LENGTH}"
        )


def _encode_piece(msg: Piece, num_pieces: int | None) -> bytes:
    return b"".join(encode_piece_parts(msg, num_pieces))


def encode_piece_parts(msg: Piece, num_pieces: int | None) -> tuple[bytes, object]:
    """A Piece's wire form in two parts: its 13-byte head and its payload as given
    (not copied: a sender can hand both to the kernel in one ``sendmsg``)."""
    _check_index(msg, msg.index, num_pieces)
    _check_block(msg, msg.begin, None)
    if not _is_bytes(msg.data):
        raise LocalProtocolError("Piece: data must be bytes-like")
    size = memoryview(msg.data).nbytes
    if not 1 <= size <= MAX_BLOCK_LENGTH:
        raise LocalProtocolError(f"Piece: block of {size} bytes not in 1..{MAX_BLOCK_LENGTH}")
    return _PIECE_FULL_HEAD.pack(9 + size, 7, msg.index, msg.begin), msg.data


def piece_head(index: int, begin: int, size: int, num_pieces: int | None) -> bytes:
    """The 13-byte head of a Piece message whose block of ``size`` bytes follows it
    on the wire (``encode_piece_parts`` without the message object); judged the
    same way."""
    if num_pieces is None or not 0 <= index < num_pieces:
        raise LocalProtocolError(f"Piece: piece index {index!r} not in 0..{num_pieces}")
    if not 0 <= begin < _U32:
        raise LocalProtocolError(f"Piece: bad begin {begin!r}")
    if not 1 <= size <= MAX_BLOCK_LENGTH:
        raise LocalProtocolError(f"Piece: block of {size} bytes not in 1..{MAX_BLOCK_LENGTH}")
    return _PIECE_FULL_HEAD.pack(9 + size, 7, index, begin)


def encode_requests(blocks: list[tuple[int, int, int]], num_pieces: int | None) -> bytes:
    """The wire bytes of a Request for each ``(index, begin, length)``, joined: what
    ``encode`` gives for each, in one pass (a pick asks for many blocks at once).
    Raises LocalProtocolError as ``encode`` would for the first bad one."""
    pack = _REQUEST.pack
    out = []
    for index, begin, length in blocks:
        if (type(index) is not int or type(begin) is not int or type(length) is not int
                or num_pieces is None or not 0 <= index < num_pieces
                or not 0 <= begin < _U32 or not 1 <= length <= MAX_BLOCK_LENGTH):
            encode(Request(index, begin, length), num_pieces)  # raises the right error
        out.append(pack(13, 6, index, begin, length))
    return b"".join(out)


def encode(msg: Message, num_pieces: int | None) -> bytes:
    """The wire bytes of ``msg`` for a torrent of ``num_pieces`` pieces (None: not
    known yet, so no bitfield and no piece index may be sent).

    Raises LocalProtocolError for a bad field value (an index outside
    ``0..num_pieces-1``, begin outside u32, a length or block size outside
    ``1..MAX_BLOCK_LENGTH``, a port outside ``1..65535``, a bitfield of the wrong
    length or with spare bits set, an extension id outside a byte, an
    :class:`Unknown` with an assigned id) and for what is not a message one sends.
    """
    if type(msg) is Piece:  # the common case first: what a seed sends most
        return _encode_piece(msg, num_pieces)
    if isinstance(msg, KeepAlive):
        return b"\x00\x00\x00\x00"
    if isinstance(msg, (Choke, Unchoke, Interested, NotInterested, HaveAll, HaveNone)):
        return _LEN_ID.pack(1, msg.msg_id)
    if isinstance(msg, (Have, Suggest, AllowedFast)):
        _check_index(msg, msg.index, num_pieces)
        return _LEN_ID.pack(5, msg.msg_id) + _INDEX.pack(msg.index)
    if isinstance(msg, (Request, Cancel, Reject)):
        _check_index(msg, msg.index, num_pieces)
        _check_block(msg, msg.begin, msg.length)
        return _LEN_ID.pack(13, msg.msg_id) + _BLOCK.pack(msg.index, msg.begin, msg.length)
    if isinstance(msg, Piece):
        return _encode_piece(msg, num_pieces)
    if isinstance(msg, Bitfield):
        if not _is_bytes(msg.bits):
            raise LocalProtocolError("Bitfield: bits must be bytes-like")
        bits = bytes(msg.bits)
        if num_pieces is None:
            raise LocalProtocolError("Bitfield: the number of pieces is not known")
        expected = bitfield.byte_length(num_pieces)
        if len(bits) != expected:
            raise LocalProtocolError(f"Bitfield: {len(bits)} bytes, expected {expected}")
        if bits and bits[-1] & bitfield.spare_mask(num_pieces):
            raise LocalProtocolError("Bitfield: spare bits set")
        return _LEN_ID.pack(1 + len(bits), 5) + bits
    if isinstance(msg, Port):
        if not is_int(msg.port) or not 1 <= msg.port <= 65535:
            raise LocalProtocolError(f"Port: bad port {msg.port!r}")
        return _LEN_ID.pack(3, 9) + _PORT.pack(msg.port)
    if isinstance(msg, Extended):
        if not is_int(msg.ext_id) or not 0 <= msg.ext_id <= 255:
            raise LocalProtocolError(f"Extended: bad extension id {msg.ext_id!r}")
        if not _is_bytes(msg.payload):
            raise LocalProtocolError("Extended: payload must be bytes-like")
        payload = bytes(msg.payload)
        return _LEN_ID.pack(2 + len(payload), 20) + bytes([msg.ext_id]) + payload
    if isinstance(msg, HASH_TYPES):
        problem = hash_header_problem(msg.pieces_root, msg.base_layer, msg.index, msg.length,
                                      msg.proof_layers)
        if problem:
            raise LocalProtocolError(f"{type(msg).__name__}: {problem}")
        head = _HASH_HEAD.pack(msg.pieces_root, msg.base_layer, msg.index, msg.length,
                               msg.proof_layers)
        body = b""
        if isinstance(msg, Hashes):
            if not _is_bytes(msg.hashes):
                raise LocalProtocolError("Hashes: hashes must be bytes-like")
            body = bytes(msg.hashes)
            if len(body) % 32 or not msg.length <= len(body) // 32 <= msg.length + MAX_TREE_LAYERS:
                raise LocalProtocolError(f"Hashes: {len(body)} bytes of hashes for length "
                                         f"{msg.length}")
        return _LEN_ID.pack(1 + len(head) + len(body), msg.msg_id) + head + body
    if isinstance(msg, Unknown):
        if not is_int(msg.msg_id) or not 0 <= msg.msg_id <= 255 or msg.msg_id in _KNOWN_IDS:
            raise LocalProtocolError(f"Unknown: {msg.msg_id!r} is not an unassigned message id")
        if not _is_bytes(msg.payload):
            raise LocalProtocolError("Unknown: payload must be bytes-like")
        payload = bytes(msg.payload)
        return _LEN_ID.pack(1 + len(payload), msg.msg_id) + payload
    raise LocalProtocolError(f"cannot send {type(msg).__name__}")


# ---------------------------------------------------------------------------
# Decoding (what the peer sent)


def length_prefix(buf: bytes | bytearray, pos: int) -> int:
    """The length prefix at ``buf[pos:pos+4]``: how many bytes follow it."""
    return _INDEX.unpack_from(buf, pos)[0]


def decode(buf: bytearray, msg_id: int, start: int, end: int,
           num_pieces: int | None) -> Message:
    """The message with id ``msg_id`` whose payload is ``buf[start:end]``.

    Judges the payload's length and fields against ``num_pieces`` (None: not
    known yet, so piece indices are not bounded and a bitfield of any length is
    taken) and raises RemoteProtocolError for a violation.  A :class:`Piece`'s
    ``data`` is a read-only view into ``buf``: the caller must not write to
    ``buf`` again.  Unknown ids become :class:`Unknown`.  Whether a fast or
    extended message was negotiated is the caller's question.
    """
    size = end - start
    if msg_id == 7 and 8 < size <= 8 + MAX_BLOCK_LENGTH:
        # The common case first, without the helpers below (most messages are blocks).
        index, begin = _PIECE_HEAD.unpack_from(buf, start)
        if num_pieces is None or index < num_pieces:
            return Piece(index, begin, memoryview(buf)[start + 8 : end].toreadonly())
    elif msg_id == 6 and size == 12:  # a request: what a seed hears most
        index, begin, length = _BLOCK.unpack_from(buf, start)
        if (num_pieces is None or index < num_pieces) and 1 <= length <= MAX_BLOCK_LENGTH:
            return Request(index, begin, length)
    name = NAMES.get(msg_id)

    def expect(expected: int) -> None:
        if size != expected:
            raise RemoteProtocolError(f"{name} payload is {size} bytes, expected {expected}")

    def index_at(offset: int) -> int:
        (index,) = _INDEX.unpack_from(buf, offset)
        if num_pieces is not None and index >= num_pieces:
            raise RemoteProtocolError(
                f"{name} piece index {index} >= number of pieces {num_pieces}"
            )
        return index

    if msg_id in _NO_PAYLOAD_TYPES:
        expect(0)
        return _NO_PAYLOAD_TYPES[msg_id]()
    if msg_id in _INDEX_TYPES:
        expect(4)
        return _INDEX_TYPES[msg_id](index_at(start))
    if msg_id in _BLOCK_TYPES:
        expect(12)
        index = index_at(start)
        _, begin, length = _BLOCK.unpack_from(buf, start)
        if not 1 <= length <= MAX_BLOCK_LENGTH:
            raise RemoteProtocolError(f"{name} length {length} not in 1..{MAX_BLOCK_LENGTH}")
        return _BLOCK_TYPES[msg_id](index, begin, length)
    if msg_id == 7:
        if size <= 8:
            raise RemoteProtocolError(f"piece payload is {size} bytes, expected more than 8")
        index = index_at(start)
        _, begin = _PIECE_HEAD.unpack_from(buf, start)
        if size - 8 > MAX_BLOCK_LENGTH:
            raise RemoteProtocolError(
                f"piece block of {size - 8} bytes exceeds {MAX_BLOCK_LENGTH}"
            )
        return Piece(index, begin, memoryview(buf)[start + 8 : end].toreadonly())
    if msg_id == 5:
        if num_pieces is None:
            return Bitfield(bytes(buf[start:end]))
        expect(bitfield.byte_length(num_pieces))
        if size and buf[end - 1] & bitfield.spare_mask(num_pieces):
            raise RemoteProtocolError("bitfield has spare bits set")
        return Bitfield(bytes(buf[start:end]))
    if msg_id == 9:
        expect(2)
        (port,) = _PORT.unpack_from(buf, start)
        return Port(port)
    if msg_id == 20:
        if size < 1:
            raise RemoteProtocolError("extended message without an extension id")
        return Extended(buf[start], bytes(buf[start + 1 : end]))
    if msg_id in (21, 22, 23):
        return _decode_hash_message(buf, msg_id, start, end)
    return Unknown(msg_id, bytes(buf[start:end]))


def _decode_hash_message(buf: bytearray, msg_id: int, start: int, end: int) -> Message:
    """A BEP 52 hash request, hashes or hash reject; its header judged as on send.
    Whether hashes were asked for and prove anything is the receiver's question."""
    name = NAMES[msg_id]
    size = end - start
    if size < _HASH_HEAD.size or (msg_id != 22 and size != _HASH_HEAD.size):
        raise RemoteProtocolError(f"{name} payload is {size} bytes, expected "
                                  f"{_HASH_HEAD.size}{' or more' if msg_id == 22 else ''}")
    root, base, index, length, proof = _HASH_HEAD.unpack_from(buf, start)
    problem = hash_header_problem(root, base, index, length, proof)
    if problem:
        raise RemoteProtocolError(f"{name}: {problem}")
    if msg_id == 21:
        return HashRequest(root, base, index, length, proof)
    if msg_id == 23:
        return HashReject(root, base, index, length, proof)
    hashes = bytes(buf[start + _HASH_HEAD.size:end])
    count, rest = divmod(len(hashes), 32)
    if rest or not length <= count <= length + MAX_TREE_LAYERS:
        raise RemoteProtocolError(f"hashes: {len(hashes)} bytes of hashes for length {length}")
    return Hashes(root, base, index, length, proof, hashes)
