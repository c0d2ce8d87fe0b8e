"""core/asked: ``askers``, the peers asked for a piece's blocks once no other peer's pick
could find one of them to ask for (``Torrent.schedule(piece=)`` lets only those pick
when a read's next piece is raised to NOW)."""

from __future__ import annotations

import copy

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.test_picker import make, peer_with, seed
from torrentfs.core.asked import askers, unasked
from torrentfs.core.geometry import BLOCK_SIZE as B
from torrentfs.core.picker import NOW, READAHEAD


def test_askers_are_none_until_every_block_is_asked():
    p = make("0000", blocks=3)
    a, b = seed(p, "a"), seed(p, "b")
    p.raise_priority("r", [1], NOW, 5.0)
    assert askers(p, 1, 0.0) is None and not unasked(p, 1)  # not started
    assert len(p.pick(a, 0.0, 2)) == 2
    assert askers(p, 1, 0.0) is None and unasked(p, 1)  # one block still free
    assert len(p.pick(b, 0.0, 5)) == 1
    assert askers(p, 1, 0.0) == {a, b} and not unasked(p, 1)
    p.block_received(a, 1, 0, B, 0.5)
    p.block_received(a, 1, B, B, 0.5)
    assert askers(p, 1, 0.5) == {b}                      # only b's block is still due
    p.request_dropped(b, 1, 2 * B)
    assert askers(p, 1, 0.5) is None and unasked(p, 1)  # freed: anybody may pick it


def test_askers_are_none_once_a_silent_askers_block_may_be_doubled():
    p = make("0000", blocks=2)
    a, b, c = seed(p, "a"), seed(p, "b"), seed(p, "c")
    p.raise_priority("r", [1], NOW, 0.1)
    p.pick(a, 0.0, 5)
    assert askers(p, 1, 0.9) == {a}
    assert askers(p, 1, 1.0) is None                     # a silent for duplicate_after
    assert [i for i, _, _ in p.pick(c, 1.0, 5)] == [1, 1]  # (doubled, as said)
    p.block_received(a, 1, 0, B, 1.2)                   # a delivers: not silent
    assert askers(p, 1, 1.5) == {a, c}
    assert b not in askers(p, 1, 1.5)


def test_askers_are_none_for_a_piece_on_parole_or_with_blocks_wanted_first():
    p = make("0000", blocks=2)
    a = seed(p, "a")
    p.raise_priority("r", [1, 2], NOW, 5.0)
    p.pick(a, 0.0, 10)
    assert askers(p, 1, 0.0) == {a} and askers(p, 2, 0.0) == {a}
    p.want_first("r", 1, range(1, 2))
    assert askers(p, 1, 0.0) is None
    for begin in (0, B):
        p.block_received(a, 2, begin, B, 0.1)
    p.piece_failed(2)
    p.pick(a, 0.2, 10)
    assert askers(p, 2, 0.2) is None                     # on parole: one peer at a time


def test_askers_are_none_while_stealing_is_on():
    """core/stealing lets a peer take over a block another peer was asked for long
    enough ago, however recently that peer delivered."""
    p = make("0000", blocks=2)
    p.steal_after = 0.5
    a, c = peer_with(p, "a", "1110"), peer_with(p, "c", "0111")
    p.raise_priority("r", [1], NOW, 0.1)
    p.pick(a, 0.0, 5)
    p.block_received(a, 1, 0, B, 0.8)
    assert askers(p, 1, 1.0) is None
    assert p.pick(c, 1.0, 5) == [(1, B, B)]             # (taken over, as said)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["pick", "recv", "drop", "tick"]),
                          st.integers(0, 3), st.integers(0, 5), st.integers(1, 4)),
                max_size=40),
       st.booleans())
def test_no_other_peer_picks_a_block_of_a_piece_with_askers(events, stealing):
    """Whatever happened before: if ``askers`` names who is asked, a pick by any
    other peer that has the piece asks none of its blocks."""
    p = make("000000", blocks=3)
    if stealing:  # (core/stealing, off by default)
        p.steal_after = 0.5
    # Leechers, each lacking a piece of its own (a seed never steals).
    peers = [peer_with(p, name, "111111"[:k] + "0" + "111111"[k + 1:])
             for k, name in zip((5, 0, 1, 3), "abcd")]
    p.raise_priority("h", range(6), READAHEAD, 9.0)
    p.raise_priority("r", [2, 4], NOW, 0.3)
    now = 0.0
    for kind, who, index, n in events:
        peer = peers[who]
        if kind == "pick":
            p.pick(peer, now, n, spread=2, ahead=4)
        elif kind == "tick":
            now += 0.4 * n
        else:
            asked = [k for k in p._outstanding[peer] if k[0] == index]
            for key in asked[:n]:
                if kind == "recv":
                    p.block_received(peer, *key, B, now)
                else:
                    p.request_dropped(peer, *key)
        for index in range(6):
            asked = askers(p, index, now)
            if asked is None:
                continue
            for other in peers:
                if other in asked:
                    continue
                trial = copy.deepcopy(p)
                assert index not in {i for i, _, _ in trial.pick(other, now, 10**6)}
