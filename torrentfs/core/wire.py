"""The BitTorrent peer wire protocol as a pure state machine: bytes in, events out.

Covers BEP 3 (handshake and the core messages), BEP 6 (fast extension) and
the framing of BEP 10 (message id 20; the payload is handed over raw, its
bencoded content is somebody else's business).  No sockets, no clock, no
trio: the shell feeds received bytes to :meth:`PeerConnection.receive_data`,
pulls events with :meth:`PeerConnection.next_event`, and writes whatever
:meth:`PeerConnection.handshake` and :meth:`PeerConnection.send` return.
The design follows h11's ``Connection``.

Contract
========

Receive direction (what the peer sends us), one state per connection::

    HANDSHAKE --68 valid bytes--> FIRST --first "real" message--> RUNNING
        |                          |                                 |
        +---- EOF at a boundary ---+---------------------------------+--> CLOSED
        +---- any RemoteProtocolError -------------------------------+--> ERROR

* The first event is always the peer's :class:`Handshake` (or
  :class:`ConnectionClosed` if the peer hung up before sending a single
  byte).  Its pstrlen must be 19, its pstr ``b"BitTorrent protocol"`` and
  its info_hash ours; the reserved bytes and the peer_id are not judged.
  The pstr and info_hash are checked as soon as their bytes arrive, so a
  peer speaking some other protocol is refused without waiting for 68 bytes.
* Then length-prefixed messages.  A length prefix of 0 is :class:`KeepAlive`.
  A prefix above ``max_message`` (raised if needed to admit a bitfield for
  ``num_pieces``) is refused as soon as its four bytes are in.
* Every known message must have exactly its payload length (choke..not
  interested, have_all, have_none: 0; have, suggest, allowed_fast: 4;
  request, cancel, reject: 12; port: 2; piece: more than 8; bitfield:
  ``ceil(num_pieces / 8)``; extended: at least 1, the extension id).
* ``num_pieces=None`` means the torrent's size is not known yet (a magnet
  link whose metadata is being fetched, BEP 9): a received bitfield of any
  length up to ``max_message`` is accepted unchecked, piece indices are not
  bounded, and we may not send a bitfield or an index-bearing message.
* Every piece index must be ``< num_pieces``.  Request, cancel and reject
  lengths must be in ``1..MAX_BLOCK_LENGTH``; a piece's block likewise.
* A bitfield must have its spare (trailing) bits clear.
* Bitfield, have_all and have_none are accepted only in state FIRST, i.e.
  before any message other than keep-alive, extended, port or an unknown
  id.  (BEP 3 says "first message"; Transmission sends its BEP 10 handshake
  before its bitfield, and DHT clients may send port early, so those do not
  use up the slot.)  Sending none of the three is allowed.
* Suggest, have_all, have_none, reject and allowed_fast need the fast
  extension negotiated (both handshakes carry reserved[7] & 0x04); extended
  messages need BEP 10 negotiated (both carry reserved[5] & 0x10).  Port is
  accepted whatever the DHT bit says.
* Unknown message ids are not an error: they become :class:`Unknown` events.
* ``receive_data(b"")`` is EOF.  At a message boundary the next event is
  :class:`ConnectionClosed`, and it stays so on every later call.  In the
  middle of a message (or the handshake) it is a RemoteProtocolError.
* Breaking any rule raises :class:`RemoteProtocolError` from
  ``next_event()``, and the receive direction enters ERROR: every later
  ``next_event()`` raises RemoteProtocolError again, and received data is
  discarded.  Events already returned stay valid.

Send direction (what we send), independent of the receive direction:

* ``handshake()`` must be called exactly once, before any ``send()``; it
  does not depend on having received the peer's handshake.
* ``send()`` validates the message and raises :class:`LocalProtocolError`
  (without emitting anything or changing any state) for bad field values
  (index outside ``0..num_pieces-1``, begin outside u32, length or block
  size outside ``1..MAX_BLOCK_LENGTH``, port outside ``1..65535``, a
  bitfield of the wrong length or with spare bits set, an extension id
  outside a byte, an :class:`Unknown` with an assigned id), for
  bitfield/have_all/have_none after our first message (keep-alive,
  extended, port and unknown do not count, as on receive), for
  fast-extension messages unless fast is negotiated, for extended messages
  unless BEP 10 is negotiated (both need the peer's handshake to have
  arrived), and for :class:`Handshake` or :class:`ConnectionClosed`, which
  are not messages one sends.
* A receive-side ERROR or EOF does not stop ``send()``.
* ``receive_data()`` with data after EOF is a LocalProtocolError.

Not covered here (the shell's job): choke and interest state, which blocks
were requested, whether a piece was asked for, timeouts and keep-alive
timing, what the bits of a bitfield mean.

Piece data is delivered without copying it out of the receive buffer: a
:class:`Piece` event's ``data`` is a read-only ``memoryview`` into it.  The
buffer is never written to again once a view of it has been handed out (a
fresh buffer is started instead), so the view stays valid and unchanged for
as long as the caller keeps it.  A view keeps its whole buffer alive, so
take ``bytes(piece.data)`` for anything kept long.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "BLOCK_SIZE",
    "MAX_BLOCK_LENGTH",
    "DEFAULT_MAX_MESSAGE",
    "PROTOCOL",
    "HANDSHAKE_LENGTH",
    "RESERVED_FAST",
    "RESERVED_EXTENDED",
    "RESERVED_DHT",
    "DEFAULT_RESERVED",
    "make_reserved",
    "ProtocolError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "Message",
    "Handshake",
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
    "Unknown",
    "ConnectionClosed",
    "NEED_DATA",
    "PeerConnection",
]

BLOCK_SIZE = 16384
"""The block size we request and that every client serves."""

MAX_BLOCK_LENGTH = 131072
"""Longest block a request, cancel, reject or piece may carry (128 KiB)."""

DEFAULT_MAX_MESSAGE = 2**17 + 13 + 1024
"""Default bound on an incoming length prefix: a maximal piece plus slack."""

PROTOCOL = b"BitTorrent protocol"
HANDSHAKE_LENGTH = 1 + len(PROTOCOL) + 8 + 20 + 20  # 68
_HANDSHAKE_PREFIX = bytes([len(PROTOCOL)]) + PROTOCOL

# (byte index in reserved, bit mask)
RESERVED_EXTENDED = (5, 0x10)  # BEP 10
RESERVED_FAST = (7, 0x04)  # BEP 6
RESERVED_DHT = (7, 0x01)  # BEP 5


def make_reserved(*, fast: bool = True, extended: bool = True, dht: bool = False) -> bytes:
    """Return the 8 reserved handshake bytes with exactly the given bits set."""
    reserved = bytearray(8)
    for wanted, (byte, mask) in (
        (fast, RESERVED_FAST),
        (extended, RESERVED_EXTENDED),
        (dht, RESERVED_DHT),
    ):
        if wanted:
            reserved[byte] |= mask
    return bytes(reserved)


DEFAULT_RESERVED = make_reserved()
"""Our default reserved bytes: fast extension and BEP 10, no DHT."""

_U32 = 2**32


class ProtocolError(Exception):
    """A peer wire protocol violation; ``str(exc)`` is a one-line reason."""


class LocalProtocolError(ProtocolError):
    """We tried to do something invalid (bad field, wrong moment)."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something invalid; the connection should be dropped."""


# ---------------------------------------------------------------------------
# Events / messages


@dataclass(frozen=True)
class Message:
    """Base class of everything ``next_event()`` returns and ``send()`` takes.

    Each subclass for a message with a fixed id carries it as the class
    attribute ``msg_id`` (``Have.msg_id == 4``); :class:`Unknown` has it as a
    field; handshake, keep-alive and connection-closed have none.
    """


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
class Unknown(Message):
    """A message with an id this module does not know; tolerated."""

    msg_id: int
    payload: bytes


@dataclass(frozen=True)
class ConnectionClosed(Message):
    """The peer closed the connection at a message boundary (never sent)."""


class _Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return self.value

    __str__ = __repr__


NEED_DATA = _Sentinel.NEED_DATA
"""Returned by ``next_event()`` when more bytes must be received first."""

_KNOWN_IDS = frozenset({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0x0D, 0x0E, 0x0F, 0x10, 0x11, 20})
_FAST_TYPES = (Suggest, HaveAll, HaveNone, Reject, AllowedFast)
_FAST_IDS = frozenset(t.msg_id for t in _FAST_TYPES)
_FIRST_TYPES = (Bitfield, HaveAll, HaveNone)
# Messages that may precede the bitfield without using up its slot.
_BEFORE_FIRST_TYPES = (KeepAlive, Extended, Port, Unknown)
_NO_PAYLOAD_TYPES = {0: Choke, 1: Unchoke, 2: Interested, 3: NotInterested, 0x0E: HaveAll, 0x0F: HaveNone}
_INDEX_TYPES = {4: Have, 0x0D: Suggest, 0x11: AllowedFast}
_BLOCK_TYPES = {6: Request, 8: Cancel, 0x10: Reject}
_NAMES = {
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
}

_LEN_ID = struct.Struct(">IB")
_INDEX = struct.Struct(">I")
_BLOCK = struct.Struct(">III")
_PORT = struct.Struct(">H")
_PIECE_HEAD = struct.Struct(">II")


class _RecvState(enum.Enum):
    HANDSHAKE = "HANDSHAKE"
    FIRST = "FIRST"
    RUNNING = "RUNNING"
    CLOSED = "CLOSED"
    ERROR = "ERROR"


def _bitfield_length(num_pieces: int) -> int:
    return (num_pieces + 7) // 8


def _spare_mask(num_pieces: int) -> int:
    """Mask of the bits of the last bitfield byte that must be zero."""
    used = num_pieces % 8
    return 0 if used == 0 else (1 << (8 - used)) - 1


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_bytes(value: object) -> bool:
    return isinstance(value, (bytes, bytearray, memoryview))


# ---------------------------------------------------------------------------
# The connection


class PeerConnection:
    """One peer connection's protocol state (see the module docstring).

    ``info_hash`` and ``peer_id`` are ours (20 bytes each).  ``num_pieces``
    bounds piece indices and fixes the bitfield length.  ``fast``,
    ``extended`` and ``dht`` choose the bits we set in our handshake.
    ``max_message`` bounds the length prefix we accept from the peer; it is
    raised automatically to admit a bitfield for ``num_pieces``.  Invalid
    arguments raise ``ValueError``.
    """

    def __init__(
        self,
        info_hash: bytes,
        peer_id: bytes,
        *,
        num_pieces: int | None,
        fast: bool = True,
        extended: bool = True,
        dht: bool = False,
        max_message: int = DEFAULT_MAX_MESSAGE,
    ) -> None:
        if not isinstance(info_hash, bytes) or len(info_hash) != 20:
            raise ValueError("info_hash must be 20 bytes")
        if not isinstance(peer_id, bytes) or len(peer_id) != 20:
            raise ValueError("peer_id must be 20 bytes")
        if num_pieces is not None and (not _is_int(num_pieces) or num_pieces < 0):
            raise ValueError("num_pieces must be a non-negative int or None")
        if not _is_int(max_message) or max_message < 1:
            raise ValueError("max_message must be a positive int")
        self._info_hash = info_hash
        self._num_pieces = num_pieces
        self._bitfield_len = _bitfield_length(num_pieces or 0)
        self._spare_mask = _spare_mask(num_pieces or 0)
        self._max_message = max(max_message, 1 + self._bitfield_len)
        self._our_handshake = Handshake(
            info_hash, peer_id, make_reserved(fast=fast, extended=extended, dht=dht)
        )
        self._their_handshake: Handshake | None = None

        # Receive side.  Bytes from receive_data() wait in _incoming until the
        # parser runs short; then they are appended to _buf, which is read
        # from _pos onwards.  _exported means a memoryview of _buf was handed
        # out, so _buf must never be resized or written again.
        self._state = _RecvState.HANDSHAKE
        self._error: str | None = None
        self._buf = bytearray()
        self._pos = 0
        self._exported = False
        self._incoming: list[bytes] = []
        self._eof = False

        # Send side.
        self._handshake_sent = False
        self._first_sent = False  # a message that uses up the bitfield slot

    # -- negotiated properties ----------------------------------------------

    @property
    def info_hash(self) -> bytes:
        return self._info_hash

    @property
    def num_pieces(self) -> int | None:
        return self._num_pieces

    @property
    def max_message(self) -> int:
        """The effective bound on an incoming length prefix."""
        return self._max_message

    @property
    def our_handshake(self) -> Handshake:
        return self._our_handshake

    @property
    def their_handshake(self) -> Handshake | None:
        """The peer's handshake, once ``next_event()`` has returned it."""
        return self._their_handshake

    @property
    def fast(self) -> bool:
        """True once the peer's handshake arrived and both set the fast bit."""
        theirs = self._their_handshake
        return theirs is not None and theirs.fast and self._our_handshake.fast

    @property
    def extended(self) -> bool:
        """True once the peer's handshake arrived and both set the BEP 10 bit."""
        theirs = self._their_handshake
        return theirs is not None and theirs.extended and self._our_handshake.extended

    @property
    def buffered(self) -> int:
        """Bytes received and not yet turned into events.  Once ``next_event()``
        has returned NEED_DATA this is less than one message can be (the
        handshake, or ``4 + max_message``): a peer cannot make us hold more."""
        return len(self._buf) - self._pos + sum(map(len, self._incoming))

    @property
    def errored(self) -> bool:
        """True after a RemoteProtocolError; the receive side is dead."""
        return self._state is _RecvState.ERROR

    # -- sending ------------------------------------------------------------

    def handshake(self) -> bytes:
        """Return our 68 handshake bytes.  Call exactly once, before ``send()``."""
        if self._handshake_sent:
            raise LocalProtocolError("handshake already sent")
        self._handshake_sent = True
        ours = self._our_handshake
        return b"".join((_HANDSHAKE_PREFIX, ours.reserved, ours.info_hash, ours.peer_id))

    def send(self, msg: Message) -> bytes:
        """Validate ``msg`` and return its wire encoding.

        Raises LocalProtocolError, emitting nothing and changing nothing, if
        the message is invalid or not allowed now (see the module docstring).
        """
        if not isinstance(msg, Message):
            raise LocalProtocolError(f"not a message: {msg!r}")
        if isinstance(msg, (Handshake, ConnectionClosed)):
            raise LocalProtocolError(f"{type(msg).__name__} cannot be sent with send()")
        if not self._handshake_sent:
            raise LocalProtocolError("send() before handshake()")
        if isinstance(msg, _FAST_TYPES) and not self.fast:
            raise LocalProtocolError(f"{type(msg).__name__} needs the fast extension negotiated")
        if isinstance(msg, Extended) and not self.extended:
            raise LocalProtocolError("Extended needs the extension protocol negotiated")
        if isinstance(msg, _FIRST_TYPES) and self._first_sent:
            raise LocalProtocolError(f"{type(msg).__name__} is only allowed as the first message")
        data = self._encode(msg)
        if not isinstance(msg, _BEFORE_FIRST_TYPES):
            self._first_sent = True
        return data

    def _check_index(self, msg: Message, index: object) -> None:
        if self._num_pieces is None:
            raise LocalProtocolError(f"{type(msg).__name__}: the number of pieces is not known")
        if not _is_int(index) or not 0 <= index < self._num_pieces:  # type: ignore[operator]
            raise LocalProtocolError(
                f"{type(msg).__name__}: piece index {index!r} not in 0..{self._num_pieces - 1}"
            )

    def _check_block(self, msg: Message, begin: object, length: int | None) -> None:
        if not _is_int(begin) or not 0 <= begin < _U32:  # type: ignore[operator]
            raise LocalProtocolError(f"{type(msg).__name__}: bad begin {begin!r}")
        if length is None:
            return
        if not _is_int(length) or not 1 <= length <= MAX_BLOCK_LENGTH:
            raise LocalProtocolError(
                f"{type(msg).__name__}: length {length!r} not in 1..{MAX_BLOCK_LENGTH}"
            )

    def _encode(self, msg: Message) -> bytes:
        if isinstance(msg, KeepAlive):
            return b"\x00\x00\x00\x00"
        if isinstance(msg, (Choke, Unchoke, Interested, NotInterested, HaveAll, HaveNone)):
            return _LEN_ID.pack(1, msg.msg_id)
        if isinstance(msg, (Have, Suggest, AllowedFast)):
            self._check_index(msg, msg.index)
            return _LEN_ID.pack(5, msg.msg_id) + _INDEX.pack(msg.index)
        if isinstance(msg, (Request, Cancel, Reject)):
            self._check_index(msg, msg.index)
            self._check_block(msg, msg.begin, msg.length)
            return _LEN_ID.pack(13, msg.msg_id) + _BLOCK.pack(msg.index, msg.begin, msg.length)
        if isinstance(msg, Piece):
            self._check_index(msg, msg.index)
            self._check_block(msg, msg.begin, None)
            if not _is_bytes(msg.data):
                raise LocalProtocolError("Piece: data must be bytes-like")
            size = memoryview(msg.data).nbytes
            if not 1 <= size <= MAX_BLOCK_LENGTH:
                raise LocalProtocolError(f"Piece: block of {size} bytes not in 1..{MAX_BLOCK_LENGTH}")
            head = _LEN_ID.pack(9 + size, 7) + _PIECE_HEAD.pack(msg.index, msg.begin)
            return b"".join((head, msg.data))
        if isinstance(msg, Bitfield):
            if not _is_bytes(msg.bits):
                raise LocalProtocolError("Bitfield: bits must be bytes-like")
            bits = bytes(msg.bits)
            if self._num_pieces is None:
                raise LocalProtocolError("Bitfield: the number of pieces is not known")
            if len(bits) != self._bitfield_len:
                raise LocalProtocolError(
                    f"Bitfield: {len(bits)} bytes, expected {self._bitfield_len}"
                )
            if bits and bits[-1] & self._spare_mask:
                raise LocalProtocolError("Bitfield: spare bits set")
            return _LEN_ID.pack(1 + len(bits), 5) + bits
        if isinstance(msg, Port):
            if not _is_int(msg.port) or not 1 <= msg.port <= 65535:
                raise LocalProtocolError(f"Port: bad port {msg.port!r}")
            return _LEN_ID.pack(3, 9) + _PORT.pack(msg.port)
        if isinstance(msg, Extended):
            if not _is_int(msg.ext_id) or not 0 <= msg.ext_id <= 255:
                raise LocalProtocolError(f"Extended: bad extension id {msg.ext_id!r}")
            if not _is_bytes(msg.payload):
                raise LocalProtocolError("Extended: payload must be bytes-like")
            payload = bytes(msg.payload)
            return _LEN_ID.pack(2 + len(payload), 20) + bytes([msg.ext_id]) + payload
        if isinstance(msg, Unknown):
            if not _is_int(msg.msg_id) or not 0 <= msg.msg_id <= 255 or msg.msg_id in _KNOWN_IDS:
                raise LocalProtocolError(f"Unknown: {msg.msg_id!r} is not an unassigned message id")
            if not _is_bytes(msg.payload):
                raise LocalProtocolError("Unknown: payload must be bytes-like")
            payload = bytes(msg.payload)
            return _LEN_ID.pack(1 + len(payload), msg.msg_id) + payload
        raise LocalProtocolError(f"cannot send {type(msg).__name__}")

    # -- receiving ----------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes received from the peer; ``b""`` means EOF.

        Does no parsing.  Data after EOF raises LocalProtocolError; data
        received in the ERROR state is dropped.
        """
        if self._eof:
            if data:
                raise LocalProtocolError("data received after EOF")
            return
        if not data:
            self._eof = True
            return
        if self._state is _RecvState.ERROR:
            return
        if not isinstance(data, bytes):
            data = bytes(data)  # the caller may reuse its buffer
        self._incoming.append(data)

    def next_event(self) -> Message | _Sentinel:
        """Return the next event, or NEED_DATA if more bytes are needed.

        Raises RemoteProtocolError if the peer broke a rule; from then on
        every call raises it.
        """
        if self._state is _RecvState.ERROR:
            raise RemoteProtocolError(f"connection already failed: {self._error}")
        try:
            return self._next_event()
        except RemoteProtocolError as exc:
            self._state = _RecvState.ERROR
            self._error = str(exc)
            self._incoming.clear()
            self._buf = bytearray()
            self._pos = 0
            self._exported = False
            raise

    def _fill(self, n: int) -> bool:
        """Make at least ``n`` unread bytes available in _buf if possible."""
        if len(self._buf) - self._pos >= n:
            return True
        if not self._incoming:
            return False
        if self._exported:
            # Views of _buf are out there: leave it alone, start a new one
            # with the unread tail (a partial message, so short).
            self._buf = self._buf[self._pos :]
            self._pos = 0
            self._exported = False
        elif self._pos and self._pos >= len(self._buf) - self._pos:
            # Compact when what we move is no bigger than what was consumed:
            # amortised O(1) per byte however the data is chunked.
            del self._buf[: self._pos]
            self._pos = 0
        buf = self._buf
        for chunk in self._incoming:
            buf += chunk
        self._incoming.clear()
        return len(buf) - self._pos >= n

    def _short(self, what: str) -> _Sentinel:
        """NEED_DATA, or the right reaction to EOF while short of bytes."""
        if not self._eof:
            return NEED_DATA
        if len(self._buf) == self._pos:
            self._state = _RecvState.CLOSED
            self._buf = bytearray()
            self._pos = 0
            self._exported = False
            return ConnectionClosed()  # type: ignore[return-value]
        raise RemoteProtocolError(f"connection closed mid-{what}")

    def _next_event(self) -> Message | _Sentinel:
        state = self._state
        if state is _RecvState.CLOSED:
            return ConnectionClosed()
        if state is _RecvState.HANDSHAKE:
            return self._next_handshake()

        if not self._fill(4):
            return self._short("message")
        buf, pos = self._buf, self._pos
        (length,) = _INDEX.unpack_from(buf, pos)
        if length > self._max_message:
            raise RemoteProtocolError(
                f"message length {length} exceeds the limit of {self._max_message}"
            )
        if not self._fill(4 + length):
            return self._short("message")
        buf, pos = self._buf, self._pos  # _fill may have replaced or compacted
        start = pos + 4
        end = start + length
        self._pos = end
        if length == 0:
            event: Message = KeepAlive()
        else:
            event = self._parse(buf, buf[start], start + 1, end)

        if isinstance(event, _FIRST_TYPES):
            if state is not _RecvState.FIRST:
                raise RemoteProtocolError(
                    f"{_NAMES[event.msg_id]} is only allowed as the first message"  # type: ignore[index]
                )
            self._state = _RecvState.RUNNING
        elif state is _RecvState.FIRST and not isinstance(event, _BEFORE_FIRST_TYPES):
            self._state = _RecvState.RUNNING
        return event

    def _next_handshake(self) -> Message | _Sentinel:
        complete = self._fill(HANDSHAKE_LENGTH)
        buf, pos = self._buf, self._pos
        have = len(buf) - pos
        # Judge what has arrived so far, so garbage is refused early.
        n = min(have, len(_HANDSHAKE_PREFIX))
        if buf[pos : pos + n] != _HANDSHAKE_PREFIX[:n]:
            if buf[pos] != len(PROTOCOL):
                raise RemoteProtocolError(f"bad handshake: pstrlen {buf[pos]}, expected 19")
            raise RemoteProtocolError("bad handshake: protocol string is not 'BitTorrent protocol'")
        hash_at = pos + len(_HANDSHAKE_PREFIX) + 8
        if have >= hash_at - pos + 20 and buf[hash_at : hash_at + 20] != self._info_hash:
            raise RemoteProtocolError("bad handshake: info_hash is not ours")
        if not complete:
            return self._short("handshake")
        reserved_at = pos + len(_HANDSHAKE_PREFIX)
        theirs = Handshake(
            info_hash=bytes(buf[hash_at : hash_at + 20]),
            peer_id=bytes(buf[hash_at + 20 : hash_at + 40]),
            reserved=bytes(buf[reserved_at : reserved_at + 8]),
        )
        self._pos = pos + HANDSHAKE_LENGTH
        self._their_handshake = theirs
        self._state = _RecvState.FIRST
        return theirs

    def _parse(self, buf: bytearray, msg_id: int, start: int, end: int) -> Message:
        """Build the event for message ``msg_id`` whose payload is buf[start:end]."""
        size = end - start
        name = _NAMES.get(msg_id)

        def expect(expected: int) -> None:
            if size != expected:
                raise RemoteProtocolError(f"{name} payload is {size} bytes, expected {expected}")

        def index_at(offset: int) -> int:
            (index,) = _INDEX.unpack_from(buf, offset)
            if self._num_pieces is not None and index >= self._num_pieces:
                raise RemoteProtocolError(
                    f"{name} piece index {index} >= number of pieces {self._num_pieces}"
                )
            return index

        if msg_id in _FAST_IDS and not self.fast:
            raise RemoteProtocolError(f"{name} received but the fast extension was not negotiated")

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
            data = memoryview(buf)[start + 8 : end].toreadonly()
            self._exported = True
            return Piece(index, begin, data)
        if msg_id == 5:
            if self._num_pieces is None:
                return Bitfield(bytes(buf[start:end]))
            expect(self._bitfield_len)
            if size and buf[end - 1] & self._spare_mask:
                raise RemoteProtocolError("bitfield has spare bits set")
            return Bitfield(bytes(buf[start:end]))
        if msg_id == 9:
            expect(2)
            (port,) = _PORT.unpack_from(buf, start)
            return Port(port)
        if msg_id == 20:
            if not self.extended:
                raise RemoteProtocolError(
                    "extended message received but the extension protocol was not negotiated"
                )
            if size < 1:
                raise RemoteProtocolError("extended message without an extension id")
            return Extended(buf[start], bytes(buf[start + 1 : end]))
        return Unknown(msg_id, bytes(buf[start:end]))
