"""Runs of HAVEs read at once (``core/haverun``, ``PeerConnection.take_haves``): the
quick way gives exactly the messages of the general parser, in order, whatever the
chunking; a bad HAVE is still the peer's error, where it stands."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.test_wire import NUM_PIECES, after_handshake, drain, raw, same, u32s
from torrentfs.core import haverun
from torrentfs.core.wire import (
    NEED_DATA,
    Have,
    Interested,
    PeerConnection,
    RemoteProtocolError,
    Unchoke,
)


def running() -> PeerConnection:
    conn = after_handshake()
    conn.receive_data(raw(2))
    assert drain(conn) == [Interested()]
    return conn


def have(i: int) -> bytes:
    return raw(4, u32s(i))


def drain_runs(conn: PeerConnection) -> list:
    """As ``drain``, but each Have followed by ``take_haves`` (what a session does)."""
    events = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            return events
        events.append(event)
        if type(event) is Have:
            events += [Have(i) for i in conn.take_haves()]


def test_take_reads_the_whole_run_and_stops_at_anything_else():
    buf = have(3) + have(0) + have(20) + raw(6, u32s(1, 0, 16384)) + have(5)
    assert haverun.take(buf, 0, NUM_PIECES) == ([3, 0, 20], 27)
    assert haverun.take(buf, 27, NUM_PIECES) == ([], 27)
    assert haverun.take(buf, 44, NUM_PIECES) == ([5], 53)


@pytest.mark.parametrize("tail", [
    have(NUM_PIECES),             # index out of range: left to the parser
    have(1)[:8],                  # half a HAVE
    raw(4, u32s(1) + b"\0"),      # a HAVE of 5 payload bytes
    b"\0\0\0\x05\x05" + u32s(1),  # another message of 5 bytes
], ids=["index", "half", "long", "other id"])
def test_take_stops_before_what_is_not_a_whole_good_have(tail):
    buf = bytearray(have(1) + have(2) + tail)
    assert haverun.take(buf, 0, NUM_PIECES) == ([1, 2], 18)


def test_a_run_in_one_receive_is_taken_after_its_first():
    conn = running()
    conn.receive_data(b"".join(have(i) for i in range(NUM_PIECES)) + raw(1))
    assert conn.next_event() == Have(0)
    assert conn.take_haves() == list(range(1, NUM_PIECES))
    assert conn.take_haves() == []
    assert drain(conn) == [Unchoke()]
    assert conn.buffered == 0


def test_a_bad_index_after_good_haves_is_the_peers_error():
    conn = running()
    conn.receive_data(have(1) + have(2) + have(NUM_PIECES) + have(3))
    assert conn.next_event() == Have(1)
    assert conn.take_haves() == [2]
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    assert conn.take_haves() == []  # nothing more once failed


def test_nothing_is_taken_before_the_first_message():
    conn = after_handshake()
    conn.receive_data(have(1) + have(2))
    assert conn.take_haves() == []
    assert drain(conn) == [Have(1), Have(2)]


messages = st.lists(st.one_of(
    st.integers(0, NUM_PIECES - 1).map(have),
    st.just(raw(1)),
    st.integers(0, NUM_PIECES - 1).map(lambda i: raw(6, u32s(i, 0, 16384))),
    st.just(raw(None)),
), max_size=40)


@settings(max_examples=200, deadline=None)
@given(messages, st.lists(st.integers(0, 400), max_size=8))
def test_runs_give_the_general_parsers_messages_whatever_the_chunking(msgs, cuts):
    data = raw(2) + b"".join(msgs)
    general, quick = after_handshake(), after_handshake()
    general.receive_data(data)
    expected = drain(general)
    got = []
    prev = 0
    for cut in sorted({c for c in cuts if c < len(data)}) + [len(data)]:
        if cut <= prev:
            continue
        quick.receive_data(data[prev:cut])
        got += drain_runs(quick)
        prev = cut
    assert same(got, expected)
    assert quick.buffered == 0
