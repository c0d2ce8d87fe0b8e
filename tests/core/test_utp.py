"""The uTP core: codec, handshake, and two connections back to back through a
simulated link that loses, duplicates and reorders datagrams, on a fake clock."""

import heapq
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from torrentfs.core import utp
from torrentfs.core.utp import (
    Closed,
    Connected,
    Connection,
    Eof,
    Packet,
    UtpError,
    decode,
    encode,
    is_utp,
)


def test_codec_round_trip_with_selective_ack():
    p = Packet(utp.ST_DATA, 0x1234, 7, 6, 65536, 99, 42, b"\x01\x00\x00\x80", b"payload")
    raw = encode(p)
    assert raw[0] == 0x01 and raw[1] == utp.EXT_SACK
    assert decode(raw) == p
    assert decode(encode(Packet(utp.ST_SYN, 1, 1, 0))).type == utp.ST_SYN


def test_dht_and_utp_told_apart():
    assert not is_utp(b"d1:ad2:id20:" + b"x" * 20 + b"e1:q4:ping1:t2:aa1:y1:qe")
    assert is_utp(encode(Packet(utp.ST_STATE, 1, 1, 1)))
    assert is_utp(b"\x41" + b"\x00" * 19)       # SYN
    assert not is_utp(b"\x51" + b"\x00" * 19)   # type 5 does not exist


@given(st.binary(max_size=80))
def test_decode_any_bytes_is_a_packet_or_a_clean_error(data):
    try:
        p = decode(data)
    except UtpError:
        return
    assert p.type <= utp.ST_SYN


def test_libtorrent_style_connection_ids_and_sequence_numbers():
    a = Connection.connect(100, 0.0)
    [syn] = a.outgoing(0.0)
    s = decode(syn)
    assert (s.type, s.conn_id, s.seq) == (utp.ST_SYN, 100, 1)
    b = Connection.accept(s, 0.0, isn=5000)
    assert (b.recv_id, b.send_id) == (101, 100)
    [state] = b.outgoing(0.0)
    st_ = decode(state)
    assert (st_.type, st_.conn_id, st_.seq, st_.ack) == (utp.ST_STATE, 100, 5000, 1)
    a.receive(st_, 0.01)
    assert a.events() == [Connected()] and a.ack_nr == 4999
    a.write(b"hello")
    [data] = a.outgoing(0.02)
    d = decode(data)
    assert (d.conn_id, d.seq, d.ack, d.payload) == (101, 2, 4999, b"hello")
    b.receive(d, 0.03)
    assert b.read(100) == b"hello"


class Link:
    """Two connections and the datagrams between them: each datagram is lost,
    duplicated or delayed (so reordered) at random."""

    def __init__(self, rng: random.Random, loss: float, dup: float, jitter: float) -> None:
        self.rng, self.loss, self.dup, self.jitter = rng, loss, dup, jitter
        self.now = 0.0
        self.queue: list = []
        self.n = 0
        self.a = Connection.connect(rng.randrange(65536), 0.0)
        self.b: Connection | None = None
        self.peak = 0

    def put(self, to: str, datagrams: list[bytes]) -> None:
        for d in datagrams:
            for _ in range(2 if self.rng.random() < self.dup else 1):
                if self.rng.random() < self.loss:
                    continue
                self.n += 1
                at = self.now + 0.01 + self.rng.random() * self.jitter
                heapq.heappush(self.queue, (at, self.n, to, d))

    def flush(self) -> None:
        self.put("b", self.a.outgoing(self.now))
        if self.b is not None:
            self.put("a", self.b.outgoing(self.now))

    def step(self) -> bool:
        conns = [c for c in (self.a, self.b) if c is not None]
        timers = [c.next_timeout for c in conns if c.next_timeout is not None]
        nxt = min(([self.queue[0][0]] if self.queue else []) + timers, default=None)
        if nxt is None:
            return False
        self.now = max(self.now, nxt)
        while self.queue and self.queue[0][0] <= self.now:
            _, _, to, d = heapq.heappop(self.queue)
            p = decode(d)
            if to == "b":
                if self.b is None:
                    if p.type != utp.ST_SYN:
                        continue
                    self.b = Connection.accept(p, self.now, self.rng.randrange(65536))
                else:
                    self.b.receive(p, self.now)
            else:
                self.a.receive(p, self.now)
        for c in conns:
            c.tick(self.now)
        self.peak = max(self.peak, *(c.buffered for c in conns))
        return True


def transfer(link: Link, data_a: bytes, data_b: bytes, limit: float = 900.0):
    got = {"a": bytearray(), "b": bytearray()}
    sent = {"a": 0, "b": 0}
    events = {"a": [], "b": []}
    link.flush()
    while link.now < limit:
        for name, conn, data in (("a", link.a, data_a), ("b", link.b, data_b)):
            if conn is None:
                continue
            if conn.state == utp.CONNECTED and sent[name] < len(data):
                sent[name] += conn.write(data[sent[name]:sent[name] + 100_000])
            if conn.state == utp.CONNECTED and sent[name] == len(data):
                conn.close()
            got[name] += conn.read(link.rng.choice([1000, 1 << 20]))
            events[name] += conn.events()
        link.flush()
        done = all(c is not None and c.state == utp.CLOSED for c in (link.a, link.b))
        if done or not link.step():
            break
    for name, conn in (("a", link.a), ("b", link.b)):
        if conn is not None:
            got[name] += conn.read(1 << 30)
            events[name] += conn.events()
    return got, events


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), loss=st.sampled_from([0.0, 0.02, 0.1]),
       dup=st.sampled_from([0.0, 0.05]), jitter=st.sampled_from([0.0, 0.005, 0.2]),
       size_a=st.integers(0, 300_000), size_b=st.integers(0, 30_000))
def test_lossy_link_delivers_everything_exactly(seed, loss, dup, jitter, size_a, size_b):
    rng = random.Random(seed)
    data_a, data_b = rng.randbytes(size_a), rng.randbytes(size_b)
    link = Link(rng, loss, dup, jitter)
    got, events = transfer(link, data_a, data_b)
    assert bytes(got["b"]) == data_a
    assert bytes(got["a"]) == data_b
    assert Eof() in events["a"] and Eof() in events["b"]
    assert link.peak <= utp.SEND_BUFFER + utp.RECV_BUFFER


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), loss=st.floats(0.0, 0.9),
       dup=st.floats(0.0, 0.5), jitter=st.floats(0.0, 2.0), size=st.integers(0, 100_000))
def test_any_loss_never_crashes_and_delivers_a_prefix(seed, loss, dup, jitter, size):
    rng = random.Random(seed)
    data = rng.randbytes(size)
    link = Link(rng, loss, dup, jitter)
    got, events = transfer(link, data, b"", limit=300.0)
    assert data.startswith(bytes(got["b"]))
    assert got["a"] == b""
    assert link.peak <= utp.SEND_BUFFER + utp.RECV_BUFFER
    for ev in events["a"] + events["b"]:
        assert isinstance(ev, (Connected, Eof, Closed))


def _connected_pair():
    a = Connection.connect(7, 0.0)
    b = Connection.accept(decode(a.outgoing(0.0)[0]), 0.0, 300)
    a.receive(decode(b.outgoing(0.0)[0]), 0.0)
    return a, b


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 65535), st.integers(0, 65535),
                          st.integers(0, 2**32 - 1), st.binary(max_size=1500),
                          st.none() | st.binary(min_size=1, max_size=40)), max_size=60))
def test_any_packets_in_any_order_never_crash_and_stay_bounded(packets):
    a, b = _connected_pair()
    a.write(b"x" * 50_000)
    now = 0.0
    for type_, seq, ack, wnd, payload, sack in packets:
        now += 0.05
        for conn in (a, b):
            conn.receive(Packet(type_, conn.recv_id, seq, ack, wnd, 0, 0, sack, payload), now)
            conn.tick(now)
            for d in conn.outgoing(now):
                decode(d)
            conn.read(700)
            assert conn.buffered <= utp.SEND_BUFFER + utp.RECV_BUFFER
            assert len(conn._reorder) <= utp.MAX_REORDER


def test_window_full_then_reopened():
    a, b = _connected_pair()
    a.write(b"y" * (utp.SEND_BUFFER))
    assert a.send_space == 0
    now = 0.0
    total = 0
    for _ in range(5000):
        now += 0.01
        for d in a.outgoing(now):
            b.receive(decode(d), now)
        for d in b.outgoing(now):
            a.receive(decode(d), now)
        a.tick(now), b.tick(now)
        if b.recv_window == 0:
            break
    assert b.recv_window == 0 and b.readable == utp.RECV_BUFFER
    total += len(b.read(1 << 30))
    for _ in range(5000):
        now += 0.01
        for d in b.outgoing(now):
            a.receive(decode(d), now)
        for d in a.outgoing(now):
            b.receive(decode(d), now)
        a.tick(now), b.tick(now)
        total += len(b.read(1 << 30))
        if total == utp.SEND_BUFFER:
            break
    assert total == utp.SEND_BUFFER


def test_reset_and_connect_timeout():
    a, b = _connected_pair()
    a.receive(Packet(utp.ST_RESET, a.recv_id, 0, 0), 1.0)
    assert a.events()[-1] == Closed("connection reset by peer")
    c = Connection.connect(9, 0.0)
    now = 0.0
    while c.state != utp.CLOSED and now < 100:
        c.outgoing(now)
        now = c.next_timeout
        c.tick(now)
    assert c.error == "connect timed out" and now < 20


def test_after_stop_reading_data_is_acknowledged_and_dropped():
    a, b = _connected_pair()
    b.stop_reading()
    a.write(b"z" * 100_000)
    now = 0.0
    for _ in range(200):
        now += 0.01
        for d in a.outgoing(now):
            b.receive(decode(d), now)
        for d in b.outgoing(now):
            a.receive(decode(d), now)
    assert b.readable == 0 and b.recv_window == utp.RECV_BUFFER
    assert a.send_space == utp.SEND_BUFFER   # everything acknowledged


def test_a_fin_lost_four_times_still_ends_the_stream():
    a, b = _connected_pair()
    a.close()
    now, lost_fins = 0.0, 0
    for _ in range(10_000):
        now += 0.05
        for d in a.outgoing(now):
            p = decode(d)
            if p.type == utp.ST_FIN and lost_fins < 4:
                lost_fins += 1
                continue
            b.receive(p, now)
        for d in b.outgoing(now):
            a.receive(decode(d), now)
        a.tick(now), b.tick(now)
        if Eof() in b.events():
            break
    else:
        raise AssertionError("the FIN never arrived")
    assert lost_fins == 4
