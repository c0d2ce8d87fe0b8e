"""Tests for the fast paths of torrentfs.core.wire: the batched sends
(``send_requests``: the same bytes as one ``send`` per Request, and the same refusals)
and the shortcut for a whole block already buffered (the same events and errors as
the general parser, which a byte-at-a-time feed always takes)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.test_wire import (
    NUM_PIECES,
    after_handshake,
    drain,
    feed_in_pieces,
    make_pair,
    new_conn,
    raw,
    u32s,
)
from torrentfs.core.wire import (
    MAX_BLOCK_LENGTH,
    NEED_DATA,
    Have,
    LocalProtocolError,
    PeerConnection,
    Piece,
    RemoteProtocolError,
    Request,
)

blocks = st.lists(st.tuples(st.integers(0, NUM_PIECES - 1), st.integers(0, 2**32 - 1),
                            st.integers(1, MAX_BLOCK_LENGTH)), max_size=20)


@given(blocks)
def test_send_requests_is_the_sends_joined(picked):
    a, _ = make_pair()
    assert a.send_requests(picked) == b"".join(a.send(Request(*b)) for b in picked)


def test_send_requests_arrive_as_requests():
    a, b = make_pair()
    picked = [(0, 0, 16384), (3, 16384, 16384), (NUM_PIECES - 1, 0, 100)]
    b.receive_data(a.send_requests(picked))
    assert drain(b) == [Request(*x) for x in picked]


@pytest.mark.parametrize("bad", [
    (NUM_PIECES, 0, 16384),          # index past the torrent
    (-1, 0, 16384),
    (0, 2**32, 16384),               # begin outside u32
    (0, 0, 0),                       # empty block
    (0, 0, MAX_BLOCK_LENGTH + 1),
    (0, 0, True),                    # not an int
    (0.0, 0, 16384),
])
def test_send_requests_refuses_what_send_refuses(bad):
    a, _ = make_pair()
    with pytest.raises(LocalProtocolError) as batch:
        a.send_requests([(0, 0, 16384), bad])
    with pytest.raises(LocalProtocolError) as one:
        a.send(Request(*bad))
    assert str(batch.value) == str(one.value)


def test_send_requests_before_handshake_is_local_error():
    with pytest.raises(LocalProtocolError):
        new_conn().send_requests([(0, 0, 16384)])


def test_send_requests_without_the_number_of_pieces_is_refused():
    a = PeerConnection(bytes(20), bytes(20), num_pieces=None)
    a.handshake()
    with pytest.raises(LocalProtocolError):
        a.send_requests([(0, 0, 16384)])


def _events(conn: PeerConnection, data: bytes, cuts: list[int]):
    """The events of ``data`` fed at ``cuts``, then what ends it: ("error", message)
    or ("need data", bytes still buffered)."""
    try:
        events = feed_in_pieces(conn, data, cuts) if cuts else (
            conn.receive_data(data), drain(conn))[1]
    except RemoteProtocolError as e:
        return ("error", str(e))
    return (events, conn.buffered)


block_messages = st.lists(st.one_of(
    st.builds(lambda i, b, n: raw(7, u32s(i, b) + b"x" * n),
              st.integers(0, NUM_PIECES + 2), st.integers(0, 2**32 - 1),
              st.sampled_from([0, 1, 100, 16384, MAX_BLOCK_LENGTH, MAX_BLOCK_LENGTH + 1])),
    st.builds(lambda i: raw(4, u32s(i)), st.integers(0, NUM_PIECES - 1)),
    st.just(raw(7, b"abc")),  # a block message too short for its head
    st.just(raw(None)),
), min_size=1, max_size=6).map(b"".join)


@settings(max_examples=200, deadline=None)
@given(data=block_messages, max_message=st.sampled_from([1000, 2**17 + 9, 2**18]),
       num_pieces=st.sampled_from([None, NUM_PIECES]))
def test_whole_blocks_parse_as_they_do_byte_by_byte(data, max_message, num_pieces):
    kwargs = {"max_message": max_message, "num_pieces": num_pieces}
    whole = _events(after_handshake(**kwargs), data, [])
    bytewise = _events(after_handshake(**kwargs), data, list(range(1, len(data))))
    assert whole == bytewise


def test_a_buffered_block_is_a_readonly_view_and_the_next_message_follows():
    conn = after_handshake()
    conn.receive_data(raw(7, u32s(3, 16384) + b"y" * 16384) + raw(4, u32s(2)))
    first = conn.next_event()
    second = conn.next_event()
    assert first == Piece(3, 16384, b"y" * 16384)
    assert isinstance(first.data, memoryview) and first.data.readonly
    assert second == Have(2)
    assert conn.buffered == 0


@settings(max_examples=200, deadline=None)
@given(data=block_messages, cuts=st.lists(st.integers(1, 6 * (MAX_BLOCK_LENGTH + 13)),
                                          max_size=12))
def test_blocks_cut_anywhere_across_receives_parse_as_they_do_whole(data, cuts):
    """A received chunk is parsed in place and only a message cut across receives is
    copied: wherever the cuts fall, the events, errors and leftovers are the same."""
    kwargs = {"max_message": 2**18}
    whole = _events(after_handshake(**kwargs), data, [])
    cut = _events(after_handshake(**kwargs), data, sorted({c for c in cuts if c < len(data)}))
    assert cut == whole


def test_a_block_cut_across_receives_stays_valid_after_more_arrive():
    conn = after_handshake()
    first, second = raw(7, u32s(1, 0) + b"a" * 16384), raw(7, u32s(2, 0) + b"b" * 16384)
    data = first + second
    conn.receive_data(data[:10000])
    assert conn.next_event() is NEED_DATA
    conn.receive_data(data[10000:20000])
    block = conn.next_event()
    conn.receive_data(data[20000:])
    assert conn.next_event() == Piece(2, 0, b"b" * 16384)
    assert block == Piece(1, 0, b"a" * 16384)  # not overwritten by what came after
    assert conn.buffered == 0
