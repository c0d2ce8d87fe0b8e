"""The picker keeps its urgency order between picks (issue 13: a swarm's haves made
it sort every raised piece again after each one). Whatever it hears, the kept order
must be the one a fresh sort gives, and the priority the most urgent raise."""

from __future__ import annotations

import copy
import math
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from torrentfs.core import priorities
from torrentfs.core.bitfield import Bitfield
from torrentfs.core.geometry import BLOCK_SIZE as B
from torrentfs.core.geometry import Geometry
from torrentfs.core.picker import NONE, NORMAL, NOW, READAHEAD, Picker

N = 24

events = st.lists(st.one_of(
    st.tuples(st.just("raise"), st.integers(0, 2), st.lists(st.integers(0, N - 1), max_size=6),
              st.sampled_from([NONE, NORMAL, READAHEAD, NOW]), st.integers(0, 5),
              st.booleans()),
    st.tuples(st.just("drop"), st.integers(0, 2)),
    st.tuples(st.just("drop_some"), st.integers(0, 2), st.lists(st.integers(0, N - 1),
                                                              max_size=4)),
    st.tuples(st.just("read"), st.integers(0, 2), st.lists(st.integers(0, N - 1), max_size=5),
              st.integers(0, 5), st.booleans()),
    st.tuples(st.just("first"), st.integers(0, 2), st.integers(0, N - 1)),
    st.tuples(st.just("have"), st.integers(0, 3), st.integers(0, N - 1)),
    st.tuples(st.just("bitfield"), st.integers(0, 3), st.integers(0, 2 ** N - 1)),
    st.tuples(st.just("verified"), st.integers(0, N - 1)),
    st.tuples(st.just("lost"), st.integers(0, N - 1)),
    st.tuples(st.just("remove"), st.integers(0, 3)),
    st.tuples(st.just("pick"), st.integers(0, 3)),
), max_size=60)


def fresh(p: Picker) -> tuple[list, list]:
    """What the order and every piece's priority are when worked out from scratch,
    on a copy: the picker's own kept state goes on to the next event untouched."""
    p = copy.deepcopy(p)
    p._order = None
    p._top.clear()
    return list(p._urgent_order()), [p.priority(i) for i in range(N)]


@settings(max_examples=300, deadline=None)
@given(events, st.booleans(), st.sampled_from([priorities.RESORT_MAX, 0, 2]))
def test_kept_order_is_a_fresh_sort(evs, prefetch, resort_max):
    # A small RESORT_MAX sorts the kept order again where the default would move
    # entries one by one (``_move_entries``): both must agree with a fresh sort.
    with mock.patch.object(priorities, "RESORT_MAX", resort_max):
        check_kept_order(evs, prefetch)


def check_kept_order(evs, prefetch):
    p = Picker(Geometry(2 * B, (N * 2 * B,)), Bitfield(N), prefetch=prefetch, salt=7)
    peers: set[int] = set()
    for ev in evs:
        kind = ev[0]
        if kind == "raise":
            p.raise_priority(ev[1], ev[2], ev[3], float(ev[4]), ordered=ev[5])
        elif kind == "drop":
            p.drop(ev[1])
        elif kind == "drop_some":
            p.drop(ev[1], ev[2])
        elif kind == "read":
            p.raise_read(ev[1], ev[2], float(ev[3]), ordered=ev[4])
        elif kind == "first":
            p.want_first(ev[1], ev[2], range(1))
        elif kind in ("have", "bitfield", "pick") and ev[1] not in peers:
            p.add_peer(ev[1])
            peers.add(ev[1])
        if kind == "have":
            p.got_have(ev[1], ev[2])
        elif kind == "bitfield":
            p.got_bitfield(ev[1], Bitfield.from_bytes(ev[2].to_bytes(3, "big"), N))
        elif kind == "verified":
            p.piece_verified(ev[1])
        elif kind == "lost":
            p.piece_lost(ev[1])
        elif kind == "remove" and ev[1] in peers:
            p.remove_peer(ev[1])
            peers.discard(ev[1])
        elif kind == "pick":
            p.pick(ev[1], 10.0, 4)
        # A piece is in reading order while an owner that asked so still raises it.
        for i, owners in p._ordered.items():
            assert owners and owners <= set(p._raises.get(i, ())), (i, owners)
        # ``urgent``: what the head of the order says, asked before the order is used.
        urgent = p.urgent()
        kept = list(p._urgent_order())
        assert urgent == (bool(kept) and kept[0][1] == NOW)
        # What a pick walks: the kept order's pieces a peer has (its getter of
        # every entry's flag made again whenever the order changed).
        has = bytearray((i * 7 + len(evs)) % 3 != 0 for i in range(N))
        assert list(p._had_by(has)) == [e for e in kept if has[e[0]]]
        assert (kept, [p.priority(i) for i in range(N)]) == fresh(p)


def test_priority_is_the_most_urgent_raise():
    p = Picker(Geometry(2 * B, (4 * 2 * B,)), Bitfield(4))
    assert p.priority(0) == (NONE, math.inf)
    p.raise_priority("a", [0], READAHEAD, 5.0)
    p.raise_priority("b", [0], READAHEAD, 3.0)
    p.raise_priority("c", [0], NORMAL, 1.0)
    assert p.priority(0) == (READAHEAD, 3.0)
    p.raise_priority("d", [0], NOW, 9.0)
    assert p.priority(0) == (NOW, 9.0)
    p.raise_priority("e", [1], NONE, 2.0)
    assert p.priority(1) == (NONE, 2.0)
    q = Picker(Geometry(2 * B, (4 * 2 * B,)), Bitfield(4), prefetch=True)
    q.raise_priority("e", [1], NONE, 2.0)
    assert q.priority(1) == (NORMAL, math.inf)  # prefetch: a raise at NONE cannot lower it
    assert q.priority(2) == (NORMAL, math.inf)


def test_many_rarities_changed_at_once_sort_the_kept_order_again():
    """More than RESORT_MAX raised pieces change rarity between two uses of the
    order (a cluster's HAVEs): it is sorted again, rarest first within READAHEAD,
    and is what a fresh sort gives."""
    n = 4 * priorities.RESORT_MAX
    p = Picker(Geometry(2 * B, (n * 2 * B,)), Bitfield(n), salt=3)
    for peer in "abc":
        p.add_peer(peer)
    p.raise_priority("r", range(n), READAHEAD, 5.0)
    p.raise_priority("s", [n - 1], NOW, 5.0)
    before = list(p._urgent_order())
    # Peer a announces the first half, b the last pieces: both ends' rarities change,
    # and with them the order (rarest first within READAHEAD).
    for i in range(n // 2):
        p.got_have("a", i)
    for i in range(n // 2, n - 8):
        p.got_have("b", i)
        p.got_have("c", i)
    assert len(p._resort) > priorities.RESORT_MAX
    kept = list(p._urgent_order())
    assert kept != before
    assert kept == fresh(p)[0]
    assert kept[0][0] == n - 1  # NOW first
    assert all(p.availability[kept[k][0]] <= p.availability[kept[k + 1][0]]
               for k in range(1, n - 1))


def test_urgent_follows_every_raise_to_now():
    """``urgent`` through every way a raise to NOW comes and goes: a raise replaced
    by a lower one, several owners, drops, a read's raise and a verified piece."""
    p = Picker(Geometry(2 * B, (4 * 2 * B,)), Bitfield(4))
    p.raise_priority("a", [1], NOW, 1.0)
    assert p.urgent()
    p.raise_priority("a", [1], READAHEAD, 1.0)  # the same owner, lower: no longer
    assert not p.urgent()
    p.raise_priority("a", [1, 2], NOW, 1.0)
    p.raise_priority("b", [2], NOW, 2.0)
    p.drop("a", [2])
    assert p.urgent()  # b still waits on 2, a on 1
    p.drop("a")
    assert p.urgent()  # b
    p.piece_verified(2)
    assert not p.urgent()  # b's piece is here
    p.raise_read("c", [0, 3], 1.0)  # no other leechers: every missing piece at NOW
    assert p.urgent()
    p.piece_verified(0)
    assert p.urgent()  # 3
    p.drop("c")
    assert not p.urgent()
    p.raise_priority("d", [2], NOW, 1.0)  # had already: nothing raised
    assert not p.urgent()


def test_a_video_window_keeps_reading_order_among_leechers():
    """Among leechers READAHEAD goes rarest first, jittered per node; an ``ordered``
    raise (a video's window) goes first, by deadline, until its owner drops it or
    raises it again unordered."""
    p = Picker(Geometry(2 * B, (N * 2 * B,)), Bitfield(N), salt=7, jitter=10.0)
    for peer in range(priorities.SPLIT_LEECHERS + 1):
        p.add_peer(peer)
    p.got_bitfield(0, Bitfield.from_bytes(b"\xff\xff\xff", N))
    p.got_have(1, 20)                           # piece 20 is commoner now
    p.raise_priority("other", range(12, 24), READAHEAD, 9.0)
    for i in range(10, 22):                     # a window: due one after another
        p.raise_priority("video", [i], READAHEAD, 1.0 + i / 10, ordered=True)
    order = [i for i, _, _ in p.waiting()]
    assert order[:12] == list(range(10, 22))    # in order, ahead of the jittered rest
    assert sorted(order[12:]) == [22, 23]
    p.raise_priority("video", range(16, 22), READAHEAD, 3.0)  # the same owner, unordered
    order = [i for i, _, _ in p.waiting()]
    assert order[:6] == list(range(10, 16))
    assert order[6:] != sorted(order[6:])       # rarest first, then jittered: shuffled
    p.drop("video")
    assert not p._ordered
