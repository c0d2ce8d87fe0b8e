"""The BitTorrent peer wire protocol as a pure state machine: bytes in, events out.

Covers BEP 3 (handshake and the core messages), BEP 6 (fast extension) and
the framing of BEP 10 (message id 20; the payload is handed over raw, its
bencoded content is somebody else's business).  No sockets, no clock, no
trio: the shell feeds received bytes to :meth:`PeerConnection.receive_data`,
pulls events with :meth:`PeerConnection.next_event`, and writes whatever
:meth:`PeerConnection.handshake` and :meth:`PeerConnection.send` return.
The design follows h11's ``Connection``.

This module owns the connection's state; the messages and their codec live in
``messages.py``, the handshake's bytes in ``handshake.py``.  It re-exports their
public names, so a shell imports this one module (``wire.Request``,
``wire.PeerConnection``), as h11's users import ``h11``.

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

from torrentfs.core import bitfield, blockrun, handshake, haverun, messages
from torrentfs.core.handshake import (
    DEFAULT_RESERVED,
    HANDSHAKE_LENGTH,
    PROTOCOL,
    RESERVED_DHT,
    RESERVED_EXTENDED,
    RESERVED_FAST,
    Handshake,
    make_reserved,
)
from torrentfs.core.messages import (
    _PIECE_FULL_HEAD,
    MAX_BLOCK_LENGTH,
    AllowedFast,
    Bitfield,
    Cancel,
    Choke,
    ConnectionClosed,
    Extended,
    Hashes,
    HashReject,
    HashRequest,
    Have,
    HaveAll,
    HaveNone,
    Interested,
    KeepAlive,
    LocalProtocolError,
    Message,
    NotInterested,
    Piece,
    Port,
    ProtocolError,
    Reject,
    RemoteProtocolError,
    Request,
    Suggest,
    Unchoke,
    Unknown,
    is_int,
)

__all__ = [
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
    "HashRequest",
    "Hashes",
    "HashReject",
    "Unknown",
    "ConnectionClosed",
    "NEED_DATA",
    "PeerConnection",
]

DEFAULT_MAX_MESSAGE = 2**17 + 13 + 1024
"""Default bound on an incoming length prefix: a maximal piece plus slack."""


class _Sentinel(enum.Enum):
    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return self.value

    __str__ = __repr__


NEED_DATA = _Sentinel.NEED_DATA
_REQUEST = struct.Struct(">IBIII")  # a request, length prefix to length
"""Returned by ``next_event()`` when more bytes must be received first."""
_HAVE = struct.Struct(">IBI")  # a HAVE: length prefix, id, index

_FIRST_TYPES = (Bitfield, HaveAll, HaveNone)
# Messages that may precede the bitfield without using up its slot.
_BEFORE_FIRST_TYPES = (KeepAlive, Extended, Port, Unknown, *messages.HASH_TYPES)


class _RecvState(enum.Enum):
    HANDSHAKE = "HANDSHAKE"
    FIRST = "FIRST"
    RUNNING = "RUNNING"
    CLOSED = "CLOSED"
    ERROR = "ERROR"


# ---------------------------------------------------------------------------
# The connection


class PeerConnection:
    """One peer connection's protocol state (see the module docstring).

    ``info_hash`` and ``peer_id`` are ours (20 bytes each).  ``num_pieces``
    bounds piece indices and fixes the bitfield length.  ``fast``,
    ``extended``, ``dht`` and ``v2`` (BEP 52) choose the bits we set in our handshake.
    ``also_info_hash``: another info-hash the peer may answer with (a hybrid
    torrent's v2 one, cut to 20 bytes: libtorrent answers a v2-capable peer so).
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
        v2: bool = False,
        also_info_hash: bytes | None = None,
        max_message: int = DEFAULT_MAX_MESSAGE,
    ) -> None:
        if not isinstance(info_hash, bytes) or len(info_hash) != 20:
            raise ValueError("info_hash must be 20 bytes")
        if not isinstance(peer_id, bytes) or len(peer_id) != 20:
            raise ValueError("peer_id must be 20 bytes")
        if num_pieces is not None and (not is_int(num_pieces) or num_pieces < 0):
            raise ValueError("num_pieces must be a non-negative int or None")
        if not is_int(max_message) or max_message < 1:
            raise ValueError("max_message must be a positive int")
        self._info_hash = info_hash
        self._also = () if also_info_hash is None else (also_info_hash,)
        self._num_pieces = num_pieces
        self._max_message = max(max_message, 1 + bitfield.byte_length(num_pieces or 0))
        self._our_handshake = Handshake(
            info_hash, peer_id, make_reserved(fast=fast, extended=extended, dht=dht, v2=v2)
        )
        self._their_handshake: Handshake | None = None

        # Receive side.  Bytes from receive_data() wait in _incoming until the
        # parser runs short; then the next one becomes _buf, or (the tail of a
        # message cut across receives) what is needed is appended to _buf, which
        # is read from _pos onwards.  _exported means a memoryview of _buf was
        # handed out (or _buf is a received chunk), so _buf must never be resized
        # or written again.
        self._state = _RecvState.HANDSHAKE
        self._error: str | None = None
        self._buf: bytearray | bytes | memoryview = bytearray()
        self._pos = 0
        self._exported = False
        self._incoming: list[bytes | memoryview] = []
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
        """Return our 68 handshake bytes.  Call exactly once, before ``send()``.
        Answering a peer that named our other info-hash (``also_info_hash``: a
        hybrid's v2 swarm), we name that one too."""
        if self._handshake_sent:
            raise LocalProtocolError("handshake already sent")
        self._handshake_sent = True
        theirs = self._their_handshake
        if theirs is not None and theirs.info_hash in self._also:
            self._our_handshake = Handshake(theirs.info_hash, self._our_handshake.peer_id,
                                            self._our_handshake.reserved)
        return handshake.encode(self._our_handshake)

    def send_piece(self, msg: Piece) -> tuple[bytes, object]:
        """``send`` of a Piece in two parts: (head, payload), the payload not copied.
        Raises LocalProtocolError as ``send`` does."""
        if not self._handshake_sent:
            raise LocalProtocolError("send() before handshake()")
        parts = messages.encode_piece_parts(msg, self._num_pieces)
        self._first_sent = True
        return parts

    def send_block(self, index: int, begin: int, size: int) -> bytes:
        """The head of ``Piece(index, begin, data)`` for a block of ``size`` bytes,
        to be sent right before them (``send_piece`` without the message object).
        Raises LocalProtocolError as ``send`` does."""
        if not self._handshake_sent:
            raise LocalProtocolError("send() before handshake()")
        head = messages.piece_head(index, begin, size, self._num_pieces)
        self._first_sent = True
        return head

    def send_requests(self, blocks: list[tuple[int, int, int]]) -> bytes:
        """``send`` of a Request for each ``(index, begin, length)``: their wire
        bytes, joined. Raises LocalProtocolError as ``send`` does, emitting nothing."""
        if not self._handshake_sent:
            raise LocalProtocolError("send() before handshake()")
        data = messages.encode_requests(blocks, self._num_pieces)
        if blocks:
            self._first_sent = True
        return data

    def send(self, msg: Message) -> bytes:
        """Validate ``msg`` and return its wire encoding.

        Raises LocalProtocolError, emitting nothing and changing nothing, if
        the message is invalid or not allowed now (see the module docstring).
        """
        if type(msg) is Piece or type(msg) is Request:  # the common cases, no checks below apply
            if not self._handshake_sent:
                raise LocalProtocolError("send() before handshake()")
            data = messages.encode(msg, self._num_pieces)
            self._first_sent = True
            return data
        if type(msg) is Have and self._handshake_sent:  # every piece, to every peer
            index, n = msg.index, self._num_pieces
            if type(index) is int and n is not None and 0 <= index < n:
                self._first_sent = True
                return _HAVE.pack(5, 4, index)
        if not isinstance(msg, Message):
            raise LocalProtocolError(f"not a message: {msg!r}")
        if isinstance(msg, (Handshake, ConnectionClosed)):
            raise LocalProtocolError(f"{type(msg).__name__} cannot be sent with send()")
        if not self._handshake_sent:
            raise LocalProtocolError("send() before handshake()")
        if isinstance(msg, messages.FAST_TYPES) and not self.fast:
            raise LocalProtocolError(f"{type(msg).__name__} needs the fast extension negotiated")
        if isinstance(msg, Extended) and not self.extended:
            raise LocalProtocolError("Extended needs the extension protocol negotiated")
        if isinstance(msg, _FIRST_TYPES) and self._first_sent:
            raise LocalProtocolError(f"{type(msg).__name__} is only allowed as the first message")
        data = messages.encode(msg, self._num_pieces)
        if not isinstance(msg, _BEFORE_FIRST_TYPES):
            self._first_sent = True
        return data

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
        if self._state is _RecvState.RUNNING:
            # The common case first: a whole block already in the buffer (most
            # messages are blocks). Exactly what the general path below would
            # return for it; anything else goes there.
            buf, pos = self._buf, self._pos
            if len(buf) - pos >= 13 and buf[pos + 4] == 7:
                length, _, index, begin = _PIECE_FULL_HEAD.unpack_from(buf, pos)
                end = pos + 4 + length
                n = self._num_pieces
                if (9 < length <= 9 + MAX_BLOCK_LENGTH and length <= self._max_message
                        and end <= len(buf) and (n is None or index < n)):
                    self._pos = end
                    self._exported = True  # the block is a view of buf
                    return Piece(index, begin, memoryview(buf)[pos + 13:end].toreadonly())
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

    def take_blocks(self) -> list[tuple[int, int, memoryview]]:
        """The whole blocks next in the buffer, consumed, as ``(index, begin, data)``
        (``core/blockrun``; each judged as ``next_event`` judges a block, ``data`` a
        view as a Piece's is); what follows them is left to ``next_event``. Called
        after ``next_event`` returned a Piece: the blocks of one receive handled as
        one run. None unless running."""
        if self._state is not _RecvState.RUNNING:
            return []
        blocks, self._pos = blockrun.take(self._buf, self._pos, self._num_pieces,
                                          min(9 + MAX_BLOCK_LENGTH, self._max_message))
        if blocks:
            self._exported = True  # the blocks are views of buf
        return blocks

    def take_haves(self) -> list[int]:
        """The piece indexes of the whole HAVE messages next in the buffer, consumed
        (none unless running); what follows them is left to ``next_event``. Called
        after ``next_event`` returned a Have: a peer's batch of HAVEs comes in one
        receive and is handled as one (``core/haverun``)."""
        buf, pos = self._buf, self._pos
        if (len(buf) - pos < haverun.SIZE or buf[pos + 4] != 4
                or self._state is not _RecvState.RUNNING or self._num_pieces is None):
            return []
        indexes, self._pos = haverun.take(buf, pos, self._num_pieces)
        return indexes

    def _fill(self, n: int) -> bool:
        """Make at least ``n`` unread bytes available in _buf if possible.

        A received chunk read from its start becomes _buf as it is (no copy; it is
        never written, as if exported). Only a message cut across receives is
        copied: its bytes so far, then from the chunks after it just what it lacks."""
        buf, pos = self._buf, self._pos
        if len(buf) - pos >= n:
            return True
        incoming = self._incoming
        if not incoming:
            return False
        if pos == len(buf):
            self._buf = buf = incoming.pop(0)
            self._pos = pos = 0
            self._exported = True
            if len(buf) >= n or not incoming:
                return len(buf) >= n
        if self._exported:
            # Views of _buf are out there (or it is a received chunk): leave it
            # alone, start a new one with the unread tail (a partial message).
            self._buf = buf = bytearray(memoryview(buf)[pos:])
            self._pos = pos = 0
            self._exported = False
        elif pos and pos >= len(buf) - pos:
            # Compact when what we move is no bigger than what was consumed:
            # amortised O(1) per byte however the data is chunked.
            del buf[:pos]
            self._pos = pos = 0
        while incoming:
            lack = n - (len(buf) - pos)
            if lack <= 0:
                break
            chunk = incoming[0]
            if lack >= len(chunk):
                buf += chunk
                del incoming[0]
            else:  # the rest of this chunk waits, to be taken uncopied
                view = memoryview(chunk)
                buf += view[:lack]
                incoming[0] = view[lack:]
        return len(buf) - pos >= n

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
        buf, pos = self._buf, self._pos
        if state is _RecvState.RUNNING and len(buf) - pos >= 17 and buf[pos + 4] == 6:
            # A whole request at hand (what a seed hears most): judged as decode
            # judges it, without the general path's calls.
            length, _, index, begin, size = _REQUEST.unpack_from(buf, pos)
            if (length == 13 and self._num_pieces is not None and index < self._num_pieces
                    and 1 <= size <= MAX_BLOCK_LENGTH):
                self._pos = pos + 17
                return Request(index, begin, size)
        if state is _RecvState.RUNNING and len(buf) - pos >= 9 and buf[pos + 4] == 4:
            # A whole HAVE (what a trickle swarm's peers hear most).
            have = self._have_at(buf, pos)
            if have is not None:
                return have

        if not self._fill(4):
            return self._short("message")
        buf, pos = self._buf, self._pos
        length = messages.length_prefix(buf, pos)
        if length > self._max_message:
            raise RemoteProtocolError(
                f"message length {length} exceeds the limit of {self._max_message}"
            )
        if not self._fill(4 + length):
            return self._short("message")
        buf, pos = self._buf, self._pos  # _fill may have replaced or compacted
        start = pos + 4
        end = start + length
        if length == 5 and buf[start] == 4 and state is _RecvState.RUNNING:
            have = self._have_at(buf, pos)  # a HAVE cut across receives
            if have is not None:
                return have
        self._pos = end
        if length == 0:
            event: Message = KeepAlive()
        else:
            event = self._decode(buf, buf[start], start + 1, end)

        if isinstance(event, _FIRST_TYPES):
            if state is not _RecvState.FIRST:
                raise RemoteProtocolError(
                    f"{messages.NAMES[event.msg_id]} is only allowed as the first message"  # type: ignore[index]
                )
            self._state = _RecvState.RUNNING
        elif state is _RecvState.FIRST and not isinstance(event, _BEFORE_FIRST_TYPES):
            self._state = _RecvState.RUNNING
        return event

    def _have_at(self, buf, pos: int) -> Have | None:
        """The whole HAVE at ``buf[pos:]`` (id 4 checked by the caller), consumed, if
        decode would accept it; None leaves it to the general path, which judges it."""
        length, _, index = _HAVE.unpack_from(buf, pos)
        if length == 5 and self._num_pieces is not None and index < self._num_pieces:
            self._pos = pos + 9
            return Have(index)
        return None

    def _next_handshake(self) -> Message | _Sentinel:
        complete = self._fill(HANDSHAKE_LENGTH)
        pos = self._pos
        # Judge what has arrived so far, so garbage is refused early.
        head = bytes(self._buf[pos : pos + HANDSHAKE_LENGTH])
        handshake.check(head, self._info_hash, *self._also)
        if not complete:
            return self._short("handshake")
        theirs = handshake.decode(head)
        self._pos = pos + HANDSHAKE_LENGTH
        self._their_handshake = theirs
        self._state = _RecvState.FIRST
        return theirs

    def _decode(self, buf: bytearray, msg_id: int, start: int, end: int) -> Message:
        """The event for message ``msg_id`` whose payload is buf[start:end]; a
        fast or extended message must have been negotiated."""
        if msg_id == 7:  # a block: the common case
            self._exported = True  # its data is a view of buf
            return messages.decode(buf, msg_id, start, end, self._num_pieces)
        if msg_id in messages.FAST_IDS and not self.fast:
            raise RemoteProtocolError(
                f"{messages.NAMES[msg_id]} received but the fast extension was not negotiated"
            )
        if msg_id == Extended.msg_id and not self.extended:
            raise RemoteProtocolError(
                "extended message received but the extension protocol was not negotiated"
            )
        event = messages.decode(buf, msg_id, start, end, self._num_pieces)
        if isinstance(event, Piece):
            self._exported = True  # its data is a view of buf
        return event
