"""Tests for the batched sends of torrentfs.core.wire (``send_requests``): the same
bytes as one ``send`` per Request, and the same refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentfs.core.wire import (
    MAX_BLOCK_LENGTH,
    LocalProtocolError,
    PeerConnection,
    Request,
)

from tests.core.test_wire import NUM_PIECES, drain, make_pair, new_conn

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
