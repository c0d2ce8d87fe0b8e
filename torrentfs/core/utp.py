"""uTP, the micro transport protocol (BEP 29): the pure core of one connection.

``encode``/``decode`` are the packet codec (the 20-byte header and its extension
chain, selective ACK among them); ``is_utp`` tells a uTP datagram from a DHT one on a
shared UDP socket the way libtorrent does (a uTP packet starts with a type/version
byte whose low nibble is 1; a bencoded DHT message starts with ``d``, 0x64).

``Connection`` is one connection's state machine, sans I/O: the shell feeds it
packets (``receive``), the application's bytes (``write``, ``close``) and the time
(``tick``; every call takes ``now`` in seconds), then collects the datagrams to send
(``outgoing``), the bytes received in order (``read``), and the state changes
(``events``: ``Connected``, ``Eof``, ``Closed``). It does:

- the handshake: SYN / STATE, connection ids paired as libtorrent pairs them (the
  initiator receives on ``id`` and sends on ``id + 1``); a STATE consumes no sequence
  number, a SYN, DATA and FIN one each;
- LEDBAT congestion control (target delay ``TARGET_DELAY``, at most
  ``MAX_CWND_INCREASE`` bytes of window more per round trip, slow start before the
  first loss or delay), the peer's advertised receive window, ours;
- retransmission: a timeout (RTO from the smoothed round trip, as TCP, backing off)
  resends everything in flight; three duplicate ACKs or a selective ACK showing three
  later packets resend the first missing one (fast retransmit, window halved);
- selective ACK of out-of-order packets both ways;
- FIN in both directions (``Eof`` once every byte before the peer's FIN is read) and
  RESET.

Every buffer is bounded: what the application wrote and the peer did not acknowledge
(``SEND_BUFFER``), what arrived and the application did not read, in order or not
(``RECV_BUFFER``, the window we advertise; packets beyond it are dropped), and the
out-of-order packets kept (``MAX_REORDER``). A peer that sends anything at all costs
no more than that; ``decode`` raises ``UtpError`` on any malformed datagram.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

VERSION = 1
ST_DATA, ST_FIN, ST_STATE, ST_RESET, ST_SYN = range(5)
EXT_SACK = 1
HEADER = struct.Struct(">BBHIIIHH")
HEADER_SIZE = HEADER.size
SEQ_MASK = 0xFFFF
U32 = 0xFFFFFFFF

MSS = 1380                  # payload bytes per DATA packet (fits a 1500-byte MTU)
SEND_BUFFER = 1 << 20       # bytes written and not yet acknowledged
RECV_BUFFER = 1 << 20       # bytes received and not yet read (our advertised window)
MAX_REORDER = 1000          # out-of-order packets kept (and seq distance accepted)
SACK_BYTES = 32             # at most 256 packets described by one selective ACK
TARGET_DELAY = 100_000      # µs of queuing delay LEDBAT aims for
MAX_CWND_INCREASE = 3000    # bytes per round trip at zero queuing delay
MIN_CWND = MSS
INITIAL_CWND = 4 * MSS
MAX_CWND = SEND_BUFFER
INITIAL_RTO = 1.0
MIN_RTO = 0.5
MAX_RTO = 30.0
DATA_RESENDS = 6            # a packet sent this many more times unacked: the peer is gone
SYN_RESENDS = 5             # a SYN sent this many more times, 1 s apart, unanswered: no peer
FIN_RESENDS = DATA_RESENDS  # a lost FIN costs the peer its Eof: as many tries as data (within LINGER)
DUP_ACKS = 3
BASE_DELAY_MINUTES = 2      # LEDBAT's base delay: the minimum over this many minutes


class UtpError(ValueError):
    """A datagram that is not a well-formed uTP packet."""


@dataclass(slots=True)
class Packet:
    type: int
    conn_id: int
    seq: int
    ack: int
    wnd: int = 0
    ts: int = 0
    ts_diff: int = 0
    sack: bytes | None = None
    payload: bytes = b""


def is_utp(data: bytes) -> bool:
    """Could this datagram be uTP (not DHT)? libtorrent's test: version 1 and a
    known type in the first byte, and a full header."""
    return len(data) >= HEADER_SIZE and data[0] & 0x0F == VERSION and data[0] >> 4 <= ST_SYN


def encode(p: Packet) -> bytes:
    if p.sack:
        return b"".join((HEADER.pack((p.type << 4) | VERSION, EXT_SACK, p.conn_id, p.ts,
                                     p.ts_diff, p.wnd, p.seq, p.ack),
                         bytes((0, len(p.sack))), p.sack, p.payload))
    return HEADER.pack((p.type << 4) | VERSION, 0, p.conn_id, p.ts, p.ts_diff, p.wnd,
                       p.seq, p.ack) + p.payload


def decode(data: bytes) -> Packet:
    if not is_utp(data):
        raise UtpError("not a uTP packet")
    tv, ext, cid, ts, tsd, wnd, seq, ack = HEADER.unpack_from(data)
    pos, end, sack = HEADER_SIZE, len(data), None
    while ext:
        if pos + 2 > end:
            raise UtpError("truncated extension")
        nxt, length = data[pos], data[pos + 1]
        pos += 2
        if pos + length > end:
            raise UtpError("truncated extension")
        if ext == EXT_SACK:
            if length == 0:
                raise UtpError("empty selective ACK")
            sack = bytes(data[pos:pos + length])
        pos += length
        ext = nxt
    return Packet(tv >> 4, cid, seq, ack, wnd, ts, tsd, sack, bytes(data[pos:]))


def seq_less(a: int, b: int) -> bool:
    """a before b, modulo 2**16."""
    return a != b and (b - a) & SEQ_MASK < 0x8000


# -- events ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Connected:
    pass


@dataclass(frozen=True, slots=True)
class Eof:
    """The peer sent FIN and every byte before it has been read."""


@dataclass(frozen=True, slots=True)
class Closed:
    error: str | None = None   # None: both FINs exchanged


@dataclass(slots=True)
class _Out:
    seq: int
    type: int
    payload: bytes
    sent_at: float = 0.0
    transmissions: int = 0
    need_resend: bool = True   # queued for (re)transmission


SYN_SENT, CONNECTED, CLOSED = "syn-sent", "connected", "closed"


class Connection:
    """One uTP connection (see the module docstring). Make one with ``connect`` or
    ``accept``."""

    def __init__(self, recv_id: int, send_id: int, seq_nr: int, now: float) -> None:
        self.recv_id, self.send_id = recv_id, send_id
        self.state = SYN_SENT
        self.error: str | None = None
        self.seq_nr = seq_nr & SEQ_MASK   # the next sequence number we use
        self.ack_nr = 0                   # the last one received in order
        self._events: list = []
        # sending
        self._sendbuf = bytearray()
        self._inflight: dict[int, _Out] = {}   # by seq, in send order
        self._window_used = 0                  # bytes in flight (not marked for resend)
        self._unacked_bytes = 0                # payload bytes in _inflight
        self._closing = False                  # close() called: FIN after the data
        self._fin_seq: int | None = None
        self.fin_acked = False
        self.cwnd = float(INITIAL_CWND)
        self._slow_start = True
        self._ssthresh = float(MAX_CWND)
        self.peer_wnd = MSS
        self._dup_acks = 0
        self._last_ack: int | None = None
        self._fast_resent: int | None = None   # seq fast-retransmitted last
        self.rtt: float | None = None
        self._rtt_var = 0.0
        self.rto = INITIAL_RTO
        self._timeout_at: float | None = None
        self._base_delays: list[tuple[int, int]] = []   # (minute, min delay µs)
        self._reply_micro = 0                  # ts_diff we send back
        # receiving
        self._readable = bytearray()
        self._reorder: dict[int, bytes] = {}
        self._reorder_bytes = 0
        self._eof_seq: int | None = None       # the peer's FIN
        self.eof = False
        self._need_ack = False
        self._advertised = RECV_BUFFER
        self.last_received = now
        self._isn = 0
        self._discard = False                  # stop_reading called
        self._syn_ack = False                  # the STATE answering a SYN is due

    # -- construction --------------------------------------------------------------

    @classmethod
    def connect(cls, conn_id: int, now: float) -> "Connection":
        """An outgoing connection receiving on ``conn_id`` (the shell picks one free
        for the address); its SYN is in ``outgoing``."""
        c = cls(conn_id & SEQ_MASK, (conn_id + 1) & SEQ_MASK, 1, now)
        c._queue(ST_SYN, b"")
        c._timeout_at = None
        return c

    @classmethod
    def accept(cls, syn: Packet, now: float, isn: int) -> "Connection":
        """The connection a peer's SYN asks for; ``isn`` our first sequence number
        (random). It answers with a STATE (in ``outgoing``) and is connected."""
        c = cls((syn.conn_id + 1) & SEQ_MASK, syn.conn_id, isn, now)
        c.state = CONNECTED
        c._isn = isn & SEQ_MASK
        c._syn_ack = True
        c.ack_nr = syn.seq
        c.peer_wnd = syn.wnd
        c._reply_micro = (_micros(now) - syn.ts) & U32
        c._events.append(Connected())
        return c

    # -- the application's side ------------------------------------------------------

    @property
    def send_space(self) -> int:
        """Bytes ``write`` takes now."""
        if self.state == CLOSED or self._closing:
            return 0
        return max(0, SEND_BUFFER - len(self._sendbuf) - self._unacked_bytes)

    def write(self, data: bytes) -> int:
        """Queue what fits of ``data``; returns how many bytes were taken."""
        n = min(len(data), self.send_space)
        if n:
            self._sendbuf += data[:n]
        return n

    @property
    def readable(self) -> int:
        return len(self._readable)

    def read(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` received in order (b"" when there are none)."""
        data = bytes(self._readable[:max_bytes])
        del self._readable[:max_bytes]
        if data and self._advertised < MSS <= self.recv_window:
            self._need_ack = True   # the window reopened: tell the peer
        return data

    def close(self) -> None:
        """Send FIN once what was written is sent."""
        if self.state != CLOSED:
            self._closing = True

    def stop_reading(self) -> None:
        """The application reads no more: what arrives is acknowledged and dropped
        (a closed stream lingering for its FIN holds no data)."""
        self._discard = True
        self._readable.clear()

    def reset(self) -> bytes:
        """Abort: a RESET datagram for the peer; the connection is closed."""
        p = encode(Packet(ST_RESET, self.send_id, self.seq_nr, self.ack_nr))
        self._close("reset")
        return p

    def events(self) -> list:
        ev, self._events = self._events, []
        return ev

    @property
    def recv_window(self) -> int:
        return max(0, RECV_BUFFER - len(self._readable) - self._reorder_bytes)

    @property
    def buffered(self) -> int:
        """Bytes this connection holds, both ways (bounded by the two buffers)."""
        return (len(self._sendbuf) + self._unacked_bytes + len(self._readable)
                + self._reorder_bytes)

    @property
    def finished(self) -> bool:
        """Closed, or our FIN acknowledged and the peer's FIN received: nothing more
        to exchange."""
        return self.state == CLOSED or (self.fin_acked and not self._inflight and self.eof)

    # -- packets in ------------------------------------------------------------------

    def receive(self, p: Packet, now: float) -> None:
        """A packet the shell routed here (its connection id is our ``recv_id``)."""
        if self.state == CLOSED:
            return
        if p.type == ST_RESET:
            self._close("connection reset by peer")
            return
        if p.type == ST_SYN:
            if (self.state == CONNECTED and p.seq == self.ack_nr and self._isn
                    and self.recv_id == (p.conn_id + 1) & SEQ_MASK):
                self._syn_ack = True   # our STATE was lost: send it again
            return
        if self.state == SYN_SENT:
            # Only the STATE tells the peer's first sequence number: a DATA or FIN
            # overtaking it is dropped (and sent again).
            if p.type != ST_STATE or p.ack != (self.seq_nr - 1) & SEQ_MASK:
                return
            self.state = CONNECTED
            self.ack_nr = (p.seq - 1) & SEQ_MASK
            self._events.append(Connected())
        elif (self.seq_nr - 1 - p.ack) & SEQ_MASK >= 0x8000:
            return   # it acknowledges what we never sent: not from our peer
        self.last_received = now
        self._reply_micro = (_micros(now) - p.ts) & U32
        self.peer_wnd = p.wnd
        self._on_ack(p, now)
        if p.type == ST_DATA or p.type == ST_FIN:
            self._on_data(p)
        if self.state != CLOSED and self.fin_acked and not self._inflight and self.eof:
            self._close(None)

    def _on_ack(self, p: Packet, now: float) -> None:
        inflight = self._inflight
        acked_bytes = 0
        sample: float | None = None
        if inflight:
            first = next(iter(inflight))
            if not seq_less(p.ack, first):
                n = ((p.ack - first) & SEQ_MASK) + 1
                for _ in range(min(n, len(inflight))):
                    seq, out = next(iter(inflight.items()))
                    if seq_less(p.ack, seq):
                        break
                    del inflight[seq]
                    acked_bytes += self._acked(out)
                    if out.transmissions == 1:
                        sample = now - out.sent_at
            if p.sack and inflight:
                acked_bytes += self._on_sack(p, now)
        if acked_bytes:
            self._dup_acks = 0
            if sample is not None:
                self._rtt_sample(sample)
            self._timeout_at = now + self.rto if inflight else None
            self._congestion(acked_bytes, p.ts_diff, now)
        elif (p.type == ST_STATE and inflight and p.ack == self._last_ack):
            self._dup_acks += 1
            if self._dup_acks == DUP_ACKS:
                self._fast_retransmit((p.ack + 1) & SEQ_MASK)
        self._last_ack = p.ack

    def _acked(self, out: _Out) -> int:
        if not out.need_resend:
            self._window_used -= len(out.payload)
        self._unacked_bytes -= len(out.payload)
        if out.type == ST_FIN:
            self.fin_acked = True
        return len(out.payload) or 1

    def _on_sack(self, p: Packet, now: float) -> int:
        """Selective ACK: bit i (LSB first) of the mask is seq ack+2+i."""
        acked_bytes = 0
        later = 0   # packets acknowledged past the first missing one
        base = (p.ack + 2) & SEQ_MASK
        for i in range(len(p.sack) * 8 - 1, -1, -1):
            seq = (base + i) & SEQ_MASK
            if p.sack[i >> 3] >> (i & 7) & 1:
                later += 1
                out = self._inflight.pop(seq, None)
                if out is not None:
                    acked_bytes += self._acked(out)
        if later >= DUP_ACKS:
            self._fast_retransmit((p.ack + 1) & SEQ_MASK)
        return acked_bytes

    def _fast_retransmit(self, seq: int) -> None:
        out = self._inflight.get(seq)
        if out is None or out.need_resend or self._fast_resent == seq:
            return
        self._fast_resent = seq
        out.need_resend = True
        self._window_used -= len(out.payload)
        self._loss()

    def _loss(self) -> None:
        self.cwnd = max(MIN_CWND, self.cwnd / 2)
        self._ssthresh = self.cwnd
        self._slow_start = False

    def _rtt_sample(self, sample: float) -> None:
        if self.rtt is None:
            self.rtt, self._rtt_var = sample, sample / 2
        else:
            self._rtt_var += (abs(self.rtt - sample) - self._rtt_var) / 4
            self.rtt += (sample - self.rtt) / 8
        self.rto = min(MAX_RTO, max(MIN_RTO, self.rtt + 4 * self._rtt_var))

    def _congestion(self, acked_bytes: int, delay_sample: int, now: float) -> None:
        """LEDBAT: grow the window in proportion to how far the queuing delay our
        packets see (the peer's ``ts_diff`` less its minimum) is under target."""
        our_delay = 0
        if delay_sample:
            minute = int(now // 60)
            hist = self._base_delays
            if not hist or hist[-1][0] != minute:
                hist.append((minute, delay_sample))
                del hist[:-BASE_DELAY_MINUTES]
            base = min(d for _, d in hist)
            if (delay_sample - base) & U32 >= 0x80000000:   # a new, lower base
                hist[-1] = (minute, delay_sample)
                base = delay_sample
            elif (delay_sample - hist[-1][1]) & U32 >= 0x80000000:
                hist[-1] = (minute, delay_sample)
            our_delay = min((delay_sample - base) & U32, 10 * TARGET_DELAY)
        off_target = (TARGET_DELAY - our_delay) / TARGET_DELAY
        gain = MAX_CWND_INCREASE * off_target * acked_bytes / max(self.cwnd, 1.0)
        if self._slow_start:
            if our_delay > TARGET_DELAY * 0.9 or self.cwnd + acked_bytes > self._ssthresh:
                self._slow_start = False
            else:
                gain = max(gain, float(acked_bytes))
        if self._window_used + acked_bytes < self.cwnd * 0.8 and gain > 0:
            gain = 0.0   # not using the window we have: do not grow it
        self.cwnd = min(float(MAX_CWND), max(float(MIN_CWND), self.cwnd + gain))

    def _on_data(self, p: Packet) -> None:
        self._need_ack = True
        d = (p.seq - self.ack_nr) & SEQ_MASK
        if d == 0 or d >= 0x8000:
            return   # already have it: the ACK was lost; acknowledge again
        if self._eof_seq is not None and seq_less(self._eof_seq, p.seq):
            return   # past the peer's FIN
        if p.type == ST_FIN:
            self._eof_seq = p.seq
            payload = b""
        else:
            payload = p.payload
        if d == 1:
            if len(self._readable) + len(payload) > RECV_BUFFER:
                return   # beyond the window we advertised
            self._deliver(p.seq, payload)
            reorder = self._reorder
            while reorder:
                nxt = (self.ack_nr + 1) & SEQ_MASK
                data = reorder.pop(nxt, None)
                if data is None:
                    break
                self._reorder_bytes -= len(data)
                self._deliver(nxt, data)
        elif d <= MAX_REORDER and p.seq not in self._reorder:
            if len(payload) > self.recv_window or len(self._reorder) >= MAX_REORDER:
                return
            self._reorder[p.seq] = payload
            self._reorder_bytes += len(payload)

    def _deliver(self, seq: int, payload: bytes) -> None:
        self.ack_nr = seq
        if not self._discard:
            self._readable += payload
        if seq == self._eof_seq and not self.eof:
            self.eof = True
            self._reorder.clear()
            self._reorder_bytes = 0
            self._events.append(Eof())

    # -- time ------------------------------------------------------------------------

    @property
    def next_timeout(self) -> float | None:
        return self._timeout_at if self.state != CLOSED else None

    def tick(self, now: float) -> None:
        """Retransmit on timeout; give up after too many."""
        if self.state == CLOSED or self._timeout_at is None or now < self._timeout_at:
            return
        if not self._inflight:
            self._timeout_at = None
            if self.peer_wnd < MSS:   # probe a closed window
                self.peer_wnd = MSS
            return
        first = next(iter(self._inflight.values()))
        limit = {ST_SYN: SYN_RESENDS, ST_FIN: FIN_RESENDS}.get(first.type, DATA_RESENDS)
        if first.transmissions > limit:
            self._close("connection timed out" if self.state == CONNECTED
                        else "connect timed out")
            return
        if first.type != ST_SYN:  # SYNs go 1 s apart: a lost one costs 1 s, not 2, 4, 8...
            self.rto = min(MAX_RTO, self.rto * 2)
        self.cwnd = float(MIN_CWND)
        self._ssthresh = max(float(MIN_CWND), self.cwnd)
        self._slow_start = True
        for out in self._inflight.values():
            if not out.need_resend:
                out.need_resend = True
                self._window_used -= len(out.payload)
        if self.peer_wnd < MSS:
            self.peer_wnd = MSS
        self._timeout_at = now + self.rto

    # -- packets out -----------------------------------------------------------------

    def _queue(self, type_: int, payload: bytes) -> None:
        self._inflight[self.seq_nr] = _Out(self.seq_nr, type_, payload)
        self._unacked_bytes += len(payload)
        self.seq_nr = (self.seq_nr + 1) & SEQ_MASK

    def outgoing(self, now: float) -> list[bytes]:
        """The datagrams to send now: retransmissions, new data as the windows allow,
        FIN, and an ACK if something needs acknowledging and nothing else carried it."""
        out: list[bytes] = []
        if self.state == CLOSED:
            if self._need_ack and self.error is None:   # the ACK of the peer's FIN
                out.append(encode(self._header(ST_STATE, self.seq_nr, now)))
            self._need_ack = False
            return out
        if self._syn_ack:
            self._syn_ack = False
            out.append(encode(self._header(ST_STATE, self._isn, now)))
        window = min(self.cwnd, self.peer_wnd) if self.state == CONNECTED else MSS
        for o in self._inflight.values():
            if o.need_resend:
                if self._window_used and self._window_used + len(o.payload) > window:
                    break
                out.append(self._send(o, now))
        if self.state == CONNECTED:
            buf = self._sendbuf
            while buf and (len(self._inflight) < MAX_REORDER - 1):
                size = min(len(buf), MSS)
                if self._window_used and self._window_used + size > window:
                    break
                if self._window_used == 0 and size > window and window < MSS:
                    break   # a zero window: wait for the probe timeout
                self._queue(ST_DATA, bytes(buf[:size]))
                del buf[:size]
                out.append(self._send(self._inflight[(self.seq_nr - 1) & SEQ_MASK], now))
            if self._closing and not buf and self._fin_seq is None:
                self._fin_seq = self.seq_nr
                self._queue(ST_FIN, b"")
                out.append(self._send(self._inflight[self._fin_seq], now))
            if buf and not self._inflight and self._timeout_at is None:
                self._timeout_at = now + self.rto   # a closed window: probe it then
        if self._need_ack and not out and self.state == CONNECTED:
            out.append(encode(self._header(ST_STATE, self.seq_nr, now)))
        self._need_ack = False
        return out

    def _header(self, type_: int, seq: int, now: float, payload: bytes = b"") -> Packet:
        self._advertised = wnd = self.recv_window
        p = Packet(type_, self.send_id if type_ != ST_SYN else self.recv_id, seq,
                   self.ack_nr, wnd, _micros(now), self._reply_micro, None, payload)
        if self._reorder and type_ != ST_SYN:
            p.sack = self._sack()
        return p

    def _send(self, o: _Out, now: float) -> bytes:
        o.need_resend = False
        o.transmissions += 1
        o.sent_at = now
        self._window_used += len(o.payload)
        if self._timeout_at is None:
            self._timeout_at = now + self.rto
        return encode(self._header(o.type, o.seq, now, o.payload))

    def _sack(self) -> bytes:
        base = (self.ack_nr + 2) & SEQ_MASK
        mask = bytearray(SACK_BYTES)
        top = 0
        for seq in self._reorder:
            i = (seq - base) & SEQ_MASK
            if i < SACK_BYTES * 8:
                mask[i >> 3] |= 1 << (i & 7)
                top = max(top, i)
        return bytes(mask[:(top // 32 + 1) * 4])

    def _close(self, error: str | None) -> None:
        if self.state == CLOSED:
            return
        self.state = CLOSED
        self.error = error
        self._timeout_at = None
        self._sendbuf.clear()
        self._inflight.clear()
        self._unacked_bytes = self._window_used = 0
        self._reorder.clear()
        self._reorder_bytes = 0
        self._events.append(Closed(error))


def _micros(now: float) -> int:
    return int(now * 1_000_000) & U32
