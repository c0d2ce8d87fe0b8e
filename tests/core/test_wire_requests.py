"""Requests are what a seed hears most, blocks what it sends most: ``PeerConnection``
reads a whole request at hand without its general path, and ``send_block`` makes a
block's head without a message object. These check that the quick ways judge and
encode exactly as the general ones (``messages.decode``, ``send``), whatever the
chunking."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.test_wire import (
    NUM_PIECES,
    after_handshake,
    drain,
    feed_in_pieces,
    raw,
    same,
    u32s,
)
from torrentfs.core.wire import (
    MAX_BLOCK_LENGTH,
    Cancel,
    Have,
    Interested,
    KeepAlive,
    LocalProtocolError,
    PeerConnection,
    Piece,
    RemoteProtocolError,
    Request,
)


def running() -> PeerConnection:
    """A connection past its first message (where the quick way applies)."""
    conn = after_handshake()
    conn.receive_data(raw(2))
    assert drain(conn) == [Interested()]
    return conn


def test_many_requests_in_one_receive():
    conn = running()
    reqs = [Request(i % NUM_PIECES, 16384 * i, 16384) for i in range(200)]
    conn.receive_data(b"".join(raw(6, u32s(r.index, r.begin, r.length)) for r in reqs))
    assert drain(conn) == reqs
    assert conn.buffered == 0


@pytest.mark.parametrize("payload", [
    u32s(NUM_PIECES, 0, 16384),              # index out of range
    u32s(2**32 - 1, 0, 16384),
    u32s(1, 0, 0),                           # length 0
    u32s(1, 0, MAX_BLOCK_LENGTH + 1),        # too long
    u32s(1, 0, 16384) + b"\0",               # 13 bytes
    u32s(1, 0) + b"\0\x40\0",                # 11 bytes
], ids=["index", "index max", "length 0", "too long", "13 bytes", "11 bytes"])
def test_a_bad_request_after_good_ones_is_refused(payload):
    conn = running()
    good = raw(6, u32s(1, 0, 16384))
    conn.receive_data(good * 3 + raw(6, payload) + good * 3)
    for _ in range(3):
        assert conn.next_event() == Request(1, 0, 16384)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert conn.errored


def test_a_magnet_connection_takes_any_index():
    """Before the metadata (num_pieces None) indexes are not bounded: the general
    path, as before."""
    conn = after_handshake(num_pieces=None)
    conn.receive_data(raw(2) + raw(6, u32s(10**6, 0, 16384)) * 2)
    assert drain(conn) == [Interested(), Request(10**6, 0, 16384), Request(10**6, 0, 16384)]


messages = st.one_of(
    st.builds(Request, st.integers(0, NUM_PIECES - 1), st.integers(0, 2**32 - 1),
              st.integers(1, MAX_BLOCK_LENGTH)),
    st.builds(Cancel, st.integers(0, NUM_PIECES - 1), st.integers(0, 2**32 - 1),
              st.integers(1, MAX_BLOCK_LENGTH)),
    st.builds(Have, st.integers(0, NUM_PIECES - 1)),
    st.builds(Piece, st.integers(0, NUM_PIECES - 1), st.integers(0, 2**32 - 1),
              st.binary(min_size=1, max_size=40)),
    st.just(KeepAlive()),
    st.just(Interested()),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(messages, max_size=30), st.lists(st.integers(1, 2000), max_size=20))
def test_any_mix_any_chunking_gives_the_messages_sent(msgs, cuts):
    sender = PeerConnection(bytes(range(20)), b"-TF0001-bbbbbbbbbbbb", num_pieces=NUM_PIECES)
    sender.handshake()
    data = raw(2) + b"".join(sender.send(m) for m in msgs)
    conn = after_handshake()
    events = feed_in_pieces(conn, data, [c for c in cuts if c < len(data)])
    assert same(events, [Interested(), *msgs])


@pytest.mark.parametrize("index, begin, data", [
    (0, 0, b"x"), (NUM_PIECES - 1, 2**32 - 1, bytes(MAX_BLOCK_LENGTH)),
    (3, 16384, memoryview(bytearray(b"abc" * 5000))[7:16391]),
])
def test_send_block_is_send_of_a_piece(index, begin, data):
    conn = after_handshake()
    conn.handshake()
    head = conn.send_block(index, begin, len(data))
    assert head + bytes(data) == conn.send(Piece(index, begin, data))


@pytest.mark.parametrize("index, begin, size", [
    (NUM_PIECES, 0, 1), (-1, 0, 1), (0, -1, 1), (0, 2**32, 1), (0, 0, 0),
    (0, 0, MAX_BLOCK_LENGTH + 1),
])
def test_send_block_refuses_what_send_refuses(index, begin, size):
    conn = after_handshake()
    conn.handshake()
    with pytest.raises(LocalProtocolError):
        conn.send_block(index, begin, size)
    with pytest.raises(LocalProtocolError):
        conn.send(Piece(index, begin, bytes(size)))


def test_send_block_needs_the_handshake_and_the_piece_count():
    with pytest.raises(LocalProtocolError):
        after_handshake().send_block(0, 0, 1)
    conn = after_handshake(num_pieces=None)
    conn.handshake()
    with pytest.raises(LocalProtocolError):
        conn.send_block(0, 0, 1)
