"""Tests for torrentfs.picker, in the style of libtorrent's test_piece_picker.cpp:
compact string fixtures with one character per piece."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentfs.core.bitfield import Bitfield
from torrentfs.core.geometry import BLOCK_SIZE as B
from torrentfs.core.geometry import Geometry
from torrentfs.core.picker import NONE, NORMAL, NOW, READAHEAD, Picker, Received

# -- fixtures ----------------------------------------------------------------------


def have(s: str) -> Bitfield:
    """'0010' -> a bitfield of 4 pieces with piece 2 set."""
    bf = Bitfield(len(s))
    for i, c in enumerate(s):
        if c == "1":
            bf.add(i)
    return bf


def make(ours: str, *, blocks: int = 2, last: int | None = None, prefetch: bool = False,
         duplicate_after: float = 1.0) -> Picker:
    """A picker over ``len(ours)`` pieces of ``blocks`` full blocks each; ``last`` bytes
    in the last piece if given. ``ours`` says which pieces we already have."""
    n = len(ours)
    total = (n - 1) * blocks * B + (blocks * B if last is None else last)
    g = Geometry(blocks * B, (total,))
    assert g.num_pieces == n
    return Picker(g, have(ours), prefetch=prefetch, duplicate_after=duplicate_after)


def peer_with(p: Picker, name: str, pieces: str) -> str:
    """Add peer ``name`` having the pieces marked '1' in ``pieces``."""
    p.add_peer(name)
    p.got_bitfield(name, have(pieces))
    return name


def seed(p: Picker, name: str) -> str:
    p.add_peer(name)
    p.got_have_all(name)
    return name


def order(picked) -> list[int]:
    """The pieces of a pick, consecutive repeats collapsed: [(2,0,..),(2,B,..),(0,0,..)] -> [2, 0]."""
    out: list[int] = []
    for index, _, _ in picked:
        if not out or out[-1] != index:
            out.append(index)
    return out


def everything(p: Picker, peer, now: float = 0.0) -> list[tuple[int, int, int]]:
    return p.pick(peer, now, 10**6)


def deliver(p: Picker, peer, block) -> Received:
    return p.block_received(peer, *block)


def check_consistent(p: Picker) -> None:
    """White-box invariant: a peer's outstanding set is exactly the blocks whose
    request lists name it, a received block has no requests, and each piece's count
    of free blocks and its cursor are right."""
    seen: dict = {peer: set() for peer in p._outstanding}
    for index, partial in p._partials.items():
        assert partial.num_received == sum(partial.received)
        free = [b for b in range(len(partial.blocks))
                if not partial.received[b] and not partial.requests[b]]
        assert partial.num_free == len(free), index
        assert not free or partial.cursor <= free[0], index
        for b, holders in enumerate(partial.requests):
            if partial.received[b]:
                assert not holders, (index, b)
            for peer in holders:
                seen.setdefault(peer, set()).add((index, partial.blocks[b][0]))
    for peer, out in p._outstanding.items():
        assert set(out) == seen.get(peer, set()), peer
        assert p.outstanding(peer) == len(out)
    for peer in seen:
        assert peer in p._outstanding or not seen[peer]


# -- tiers -------------------------------------------------------------------------


def test_nothing_picked_at_tier_none():
    p = make("0000")
    seed(p, "a")
    assert everything(p, "a") == []
    assert p.priority(0) == (NONE, math.inf)
    assert p.waiting() == []


def test_nothing_picked_when_raised_at_none():
    p = make("0000")
    seed(p, "a")
    p.raise_priority("r", [1, 2], NONE, 5.0)
    assert everything(p, "a") == []


def test_raised_at_none_still_prefetched():
    # the priority is the highest any owner holds; prefetch puts every piece at NORMAL
    p = make("00", prefetch=True)
    seed(p, "a")
    p.raise_priority("r", [0], NONE, 5.0)
    assert p.priority(0)[0] == NORMAL
    assert sorted(order(everything(p, "a"))) == [0, 1]


def test_unknown_peer_and_zero_limit():
    p = make("00")
    seed(p, "a")
    p.raise_priority("r", [0], NOW, 1.0)
    assert p.pick("stranger", 0.0, 10) == []
    assert p.pick("a", 0.0, 0) == []
    assert p.pick("a", 0.0, -3) == []
    assert p.outstanding("a") == 0


def test_now_before_readahead_before_normal():
    p = make("00000", prefetch=True)
    seed(p, "a")
    p.raise_priority("read", [3], NOW, 10.0)
    p.raise_priority("ahead", [1], READAHEAD, 1.0)  # earlier deadline, lower tier
    picked = everything(p, "a")
    assert order(picked)[:2] == [3, 1]
    assert sorted(order(picked)[2:]) == [0, 2, 4]
    assert len(picked) == 10
    assert p.waiting() == [(3, NOW, 10.0), (1, READAHEAD, 1.0)]


def test_normal_tier_raise_beats_prefetch():
    p = make("0000", prefetch=True)
    seed(p, "a")
    p.raise_priority("h", [3], NORMAL, 1.0)
    assert order(everything(p, "a"))[0] == 3


def test_deadline_order_within_tier():
    p = make("000000")
    seed(p, "a")
    p.raise_priority("x", [4], NOW, 3.0)
    p.raise_priority("y", [1], NOW, 1.0)
    p.raise_priority("z", [5], NOW, 2.0)
    p.raise_priority("w", [0, 2], READAHEAD, 0.5)
    assert order(everything(p, "a")) == [1, 5, 4, 0, 2]


def test_equal_deadlines_go_by_index():
    p = make("0000")
    seed(p, "a")
    p.raise_priority("x", [3, 1, 2], READAHEAD, 1.0)
    assert order(everything(p, "a")) == [1, 2, 3]


def test_raise_again_replaces_own_raise():
    p = make("000")
    seed(p, "a")
    p.raise_priority("x", [0], NOW, 1.0)
    p.raise_priority("x", [0], READAHEAD, 9.0)  # the same owner lowers it
    assert p.priority(0) == (READAHEAD, 9.0)


def test_two_owners_highest_wins_and_dropping_one_keeps_the_other():
    p = make("000")
    p.raise_priority("reader", [1], NOW, 5.0)
    p.raise_priority("ahead", [1], READAHEAD, 1.0)
    assert p.priority(1) == (NOW, 5.0)
    p.drop("reader")
    assert p.priority(1) == (READAHEAD, 1.0)
    p.raise_priority("reader", [1], NOW, 5.0)
    p.drop("ahead")
    assert p.priority(1) == (NOW, 5.0)
    p.drop("reader")
    assert p.priority(1) == (NONE, math.inf)
    assert p.waiting() == []


def test_same_tier_two_owners_earliest_deadline():
    p = make("00")
    p.raise_priority("a", [0], NOW, 5.0)
    p.raise_priority("b", [0], NOW, 2.0)
    assert p.priority(0) == (NOW, 2.0)
    p.drop("b")
    assert p.priority(0) == (NOW, 5.0)


def test_drop_only_own_raises_and_only_named_pieces():
    p = make("00000")
    seed(p, "peer")
    p.raise_priority("a", [0, 1, 2], NOW, 1.0)
    p.raise_priority("b", [2, 3], READAHEAD, 1.0)
    p.drop("a", [0])
    assert [i for i, _, _ in p.waiting()] == [1, 2, 3]
    p.drop("b")
    assert p.waiting() == [(1, NOW, 1.0), (2, NOW, 1.0)]
    p.drop("nobody")  # harmless
    p.drop("a", [4])  # a piece it never raised: harmless
    assert [i for i, _, _ in p.waiting()] == [1, 2]
    p.drop("a")
    assert p.waiting() == []
    assert everything(p, "peer") == []


def test_pieces_we_have_are_not_raised():
    p = make("0100")
    seed(p, "a")
    p.raise_priority("r", [0, 1, 2], NOW, 1.0)
    assert [i for i, _, _ in p.waiting()] == [0, 2]
    assert order(everything(p, "a")) == [0, 2]


# -- spreading, limits, availability ------------------------------------------------


def test_two_peers_get_disjoint_blocks_of_an_urgent_piece():
    p = make("000", blocks=4)
    seed(p, "a")
    seed(p, "b")
    p.raise_priority("r", [1], NOW, 1.0)
    got_a = p.pick("a", 0.0, 2)
    got_b = p.pick("b", 0.0, 2)
    assert got_a == [(1, 0, B), (1, B, B)]
    assert got_b == [(1, 2 * B, B), (1, 3 * B, B)]
    assert p.pick("b", 0.0, 5) == []  # nothing left that nobody fetches
    check_consistent(p)


def test_pipeline_limit_respected():
    p = make("0000", blocks=4)
    seed(p, "a")
    p.raise_priority("r", [0, 1, 2, 3], NOW, 1.0)
    first = p.pick("a", 0.0, 5)
    assert len(first) == 5
    assert p.outstanding("a") == 5
    second = p.pick("a", 0.0, 3)
    assert len(second) == 3
    assert not set(first) & set(second)
    assert p.outstanding("a") == 8
    assert len(p.pick("a", 0.0, 1)) == 1
    assert len(everything(p, "a")) == 16 - 9
    assert p.outstanding("a") == 16


def test_limit_respected_with_prefetch_and_duplicates():
    p = make("000", blocks=4, prefetch=True)
    seed(p, "a")
    seed(p, "b")
    p.raise_priority("r", [0], NOW, 1.0)
    everything(p, "a")
    assert len(p.pick("b", 5.0, 3)) == 3


def test_peer_only_given_pieces_it_has():
    p = make("00000", prefetch=True)
    peer_with(p, "a", "01010")
    p.raise_priority("r", [0, 1, 2], NOW, 1.0)
    picked = everything(p, "a")
    assert order(picked) == [1, 3]
    assert all(p.peer_has("a", i) for i, _, _ in picked)


def test_got_have_bitfield_have_all_and_availability():
    p = make("0000")
    p.add_peer("a")
    p.add_peer("b")
    p.add_peer("c")
    assert p.availability == [0, 0, 0, 0]
    p.got_have("a", 2)
    p.got_have("a", 2)  # repeated: counted once
    assert p.availability == [0, 0, 1, 0]
    p.got_bitfield("b", have("1010"))
    assert p.availability == [1, 0, 2, 0]
    p.got_have_all("c")
    assert p.availability == [2, 1, 3, 1]
    p.got_have_all("c")  # again: nothing changes
    p.got_have("b", 0)
    assert p.availability == [2, 1, 3, 1]
    assert p.peer_has("b", 2) and not p.peer_has("b", 1)
    p.remove_peer("c")
    assert p.availability == [1, 0, 2, 0]
    p.remove_peer("b")
    p.remove_peer("a")
    assert p.availability == [0, 0, 0, 0]
    p.remove_peer("a")  # unknown by now: harmless
    assert p.availability == [0, 0, 0, 0]


def test_have_after_pick_makes_piece_available():
    p = make("000")
    peer_with(p, "a", "000")
    p.raise_priority("r", [2], NOW, 1.0)
    assert everything(p, "a") == []
    p.got_have("a", 2)
    assert order(everything(p, "a")) == [2]


def test_remove_peer_frees_its_requests():
    p = make("00")
    seed(p, "a")
    seed(p, "b")
    p.raise_priority("r", [0, 1], NOW, 1.0)
    taken = everything(p, "a")
    assert len(taken) == 4
    assert everything(p, "b") == []
    p.remove_peer("a")
    assert p.outstanding("a") == 0
    assert everything(p, "b") == taken
    check_consistent(p)


def test_request_dropped_frees_one_block():
    p = make("0")
    seed(p, "a")
    seed(p, "b")
    p.raise_priority("r", [0], NOW, 1.0)
    everything(p, "a")
    p.request_dropped("a", 0, B)
    assert p.outstanding("a") == 1
    assert everything(p, "b") == [(0, B, B)]
    check_consistent(p)


def test_peer_choked_frees_all_its_blocks():
    p = make("00")
    seed(p, "a")
    seed(p, "b")
    p.raise_priority("r", [0, 1], READAHEAD, 1.0)
    taken = everything(p, "a")
    p.peer_choked("a")
    assert p.outstanding("a") == 0
    assert everything(p, "b") == taken
    # the choked peer may be asked again later (after an unchoke)
    p.peer_choked("b")
    assert everything(p, "a") == taken
    check_consistent(p)


@pytest.mark.parametrize("index, begin", [(0, 10**9), (0, -B), (0, 1), (1, 2**32 - 1), (7, 0)])
def test_request_dropped_for_a_block_never_asked(index, begin):
    """A reject from a peer names any index/begin; it must neither raise nor free
    another block."""
    p = make("00")
    seed(p, "a")
    p.raise_priority("r", [0, 1], NOW, 1.0)
    taken = everything(p, "a")
    p.request_dropped("a", index, begin)
    p.request_dropped("nobody", 0, 0)
    assert p.outstanding("a") == len(taken)
    check_consistent(p)
    seed(p, "b")
    assert everything(p, "b") == []


# -- receiving ---------------------------------------------------------------------


def test_block_received_new_then_duplicate():
    p = make("0")
    seed(p, "a")
    p.raise_priority("r", [0], NOW, 1.0)
    b0, b1 = everything(p, "a")
    assert deliver(p, "a", b0) == Received(True, False, [])
    assert p.outstanding("a") == 1
    assert deliver(p, "a", b0) == Received(False)
    assert p.outstanding("a") == 1
    r = deliver(p, "a", b1)
    assert r.new and r.piece_complete and r.cancel == []
    assert p.outstanding("a") == 0
    assert p.contributors(0) == {"a"}
    check_consistent(p)


def test_unrequested_block_changes_nothing():
    p = make("00")
    seed(p, "a")
    seed(p, "b")
    p.raise_priority("r", [0], NOW, 1.0)
    b0, b1 = everything(p, "a")
    assert deliver(p, "b", b0) == Received(False)  # b was never asked
    assert deliver(p, "b", (1, 0, B)) == Received(False)  # a piece nobody fetches
    assert p.outstanding("a") == 2
    assert p.contributors(0) == set()
    assert deliver(p, "a", b0).new  # a's request still counts
    check_consistent(p)


@pytest.mark.parametrize(
    "block",
    [(0, B, B - 1), (0, B, B + 1), (0, 1, B), (0, -B, B), (0, 2 * B, B), (5, 0, B), (-1, 0, B)],
)
def test_misshapen_block_changes_nothing(block):
    p = make("0")
    seed(p, "a")
    seed(p, "b")
    p.raise_priority("r", [0], NOW, 1.0)
    taken = everything(p, "a")
    assert deliver(p, "a", block) == Received(False)
    assert p.outstanding("a") == 2
    check_consistent(p)
    # the request is still a's: freeing a frees it for b
    p.remove_peer("a")
    assert everything(p, "b") == taken


def test_last_block_of_short_last_piece():
    p = make("00", blocks=4, last=B + 7)
    seed(p, "a")
    p.raise_priority("r", [1], NOW, 1.0)
    assert everything(p, "a") == [(1, 0, B), (1, B, 7)]
    assert deliver(p, "a", (1, B, B)) == Received(False)  # wrong length
    assert deliver(p, "a", (1, 0, B)).new
    r = deliver(p, "a", (1, B, 7))
    assert r.new and r.piece_complete


def test_complete_piece_not_picked_nor_received_again():
    p = make("00")
    seed(p, "a")
    seed(p, "b")
    p.raise_priority("r", [0], NOW, 1.0)
    for blk in everything(p, "a"):
        deliver(p, "a", blk)
    assert everything(p, "b", now=100.0) == []  # even as a duplicate
    assert everything(p, "a", now=100.0) == []
    assert deliver(p, "a", (0, 0, B)) == Received(False)


def test_cancel_list_when_now_block_was_duplicated():
    p = make("0", duplicate_after=1.0)
    seed(p, "slow")
    seed(p, "fast")
    seed(p, "third")
    p.raise_priority("r", [0], NOW, 1.0)
    taken = everything(p, "slow", now=0.0)
    dup = everything(p, "fast", now=2.0)
    assert dup == taken
    assert p.outstanding("fast") == 2
    r = deliver(p, "fast", taken[0])
    assert r.new and not r.piece_complete
    assert r.cancel == ["slow"]
    assert p.outstanding("slow") == 1
    # the slow answer arrives anyway: a duplicate
    assert deliver(p, "slow", taken[0]) == Received(False)
    r = deliver(p, "slow", taken[1])
    assert r.new and r.piece_complete and r.cancel == ["fast"]
    assert p.outstanding("fast") == 0 and p.outstanding("slow") == 0
    assert p.contributors(0) == {"slow", "fast"}
    check_consistent(p)


def test_duplicates_only_after_duplicate_after():
    p = make("0", duplicate_after=1.0)
    seed(p, "a")
    seed(p, "b")
    p.raise_priority("r", [0], NOW, 1.0)
    taken = p.pick("a", 10.0, 10)
    assert everything(p, "b", now=10.0) == []
    assert everything(p, "b", now=10.999) == []
    assert everything(p, "b", now=11.001) == taken
    # a peer is never given the same block twice
    assert everything(p, "b", now=50.0) == []
    assert everything(p, "a", now=50.0) == []
    check_consistent(p)


def test_a_holder_that_keeps_delivering_is_not_duplicated():
    # A full pipeline on a slow or shared link (a rack uplink, our own downlink):
    # the holder answers steadily, the late block is only queued behind what was
    # asked before, and a second request would queue on the same link.
    p = make("0", blocks=8, duplicate_after=1.0)
    seed(p, "a")
    seed(p, "b")
    p.raise_priority("r", [0], NOW, 1.0)
    taken = everything(p, "a", now=0.0)
    for k, block in enumerate(taken[:4]):  # one block every 0.8 s
        assert p.block_received("a", *block, now=0.8 * (k + 1)).new
        assert everything(p, "b", now=0.8 * (k + 1) + 0.9) == []
    # then it falls silent: duplicate_after after its last block, b is asked too
    assert everything(p, "b", now=3.2 + 0.999) == []
    assert everything(p, "b", now=3.2 + 1.001) == taken[4:]
    check_consistent(p)


def test_duplicate_after_setting_is_used():
    p = make("0", duplicate_after=5.0)
    seed(p, "a")
    seed(p, "b")
    p.raise_priority("r", [0], NOW, 1.0)
    taken = everything(p, "a", now=0.0)
    assert everything(p, "b", now=4.9) == []
    assert everything(p, "b", now=5.1) == taken


def test_fresh_blocks_before_duplicates_within_a_piece():
    p = make("0", blocks=3)
    seed(p, "a")
    seed(p, "b")
    p.raise_priority("r", [0], NOW, 1.0)
    assert p.pick("a", 0.0, 2) == [(0, 0, B), (0, B, B)]
    assert everything(p, "b", now=5.0) == [(0, 2 * B, B), (0, 0, B), (0, B, B)]


@pytest.mark.parametrize("tier", [READAHEAD, NORMAL])
def test_no_duplicates_below_now(tier):
    p = make("00", prefetch=tier == NORMAL)
    seed(p, "a")
    seed(p, "b")
    if tier != NORMAL:
        p.raise_priority("r", [0, 1], tier, 1.0)
    everything(p, "a", now=0.0)
    assert everything(p, "b", now=1000.0) == []


def test_duplicate_follows_a_raise_to_now():
    p = make("00")
    seed(p, "a")
    seed(p, "b")
    p.raise_priority("ahead", [0], READAHEAD, 1.0)
    taken = everything(p, "a", now=0.0)
    assert everything(p, "b", now=10.0) == []
    p.raise_priority("read", [0], NOW, 11.0)  # a read now waits on it, due at 11
    assert everything(p, "b", now=10.0) == []  # not late yet: no duplicate
    assert everything(p, "b", now=11.0) == taken  # late against its deadline


def test_no_duplicate_before_the_deadline_however_long_held():
    p = make("0")
    seed(p, "a")
    seed(p, "b")
    p.raise_priority("read", [0], NOW, 100.0)
    taken = everything(p, "a", now=0.0)
    assert everything(p, "b", now=99.0) == []
    assert everything(p, "b", now=100.0) == taken


def test_fully_requested_pieces_are_skipped_and_freed_blocks_found_again():
    p = make("000", blocks=4)
    seed(p, "a")
    seed(p, "b")
    p.raise_priority("r", [0, 1, 2], READAHEAD, 5.0)
    first = p.pick("a", 0.0, 3)
    assert first == [(0, 0, B), (0, B, B), (0, 2 * B, B)]
    # a's request for the middle block is dropped: b gets exactly that block first.
    p.request_dropped("a", 0, B)
    assert p.pick("b", 0.0, 2) == [(0, B, B), (0, 3 * B, B)]
    assert p.pick("b", 0.0, 1) == [(1, 0, B)]


def test_piece_failed_makes_all_blocks_missing_and_reports_contributors():
    p = make("00", blocks=3)
    seed(p, "a")
    seed(p, "b")
    p.raise_priority("r", [0], NOW, 1.0)
    ba = p.pick("a", 0.0, 2)
    bb = p.pick("b", 0.0, 2)
    for blk in ba:
        deliver(p, "a", blk)
    r = deliver(p, "b", bb[0])
    assert r.piece_complete
    assert p.contributors(0) == {"a", "b"}
    p.piece_failed(0)
    assert p.contributors(0) == set()
    assert p.outstanding("a") == 0 and p.outstanding("b") == 0
    assert everything(p, "a") == [(0, 0, B), (0, B, B), (0, 2 * B, B)]
    # the old blocks arriving late are not counted
    assert deliver(p, "b", (0, 0, B)) == Received(False)
    check_consistent(p)


def test_piece_failed_drops_other_peers_requests_on_it():
    p = make("0", blocks=2)
    seed(p, "a")
    seed(p, "b")
    p.raise_priority("r", [0], NOW, 1.0)
    a0 = p.pick("a", 0.0, 1)
    p.pick("b", 0.0, 1)
    deliver(p, "a", a0[0])
    p.piece_failed(0)
    assert p.outstanding("b") == 0
    check_consistent(p)


def test_suppliers_name_the_peer_of_each_block():
    p = make("0", blocks=3)
    seed(p, "a")
    seed(p, "b")
    p.raise_priority("r", [0], NOW, 1.0)
    for blk in p.pick("a", 0.0, 2):
        deliver(p, "a", blk)
    (blk,) = p.pick("b", 0.0, 2)
    deliver(p, "b", blk)
    assert p.suppliers(0) == {0: "a", B: "a", 2 * B: "b"}
    p.piece_failed(0)
    assert p.suppliers(0) == {}


def test_failed_piece_is_fetched_from_one_peer_on_parole():
    """After a hash failure a NOW piece is not split over peers: the first peer to
    pick it gets all its blocks, the others none, until it drops out."""
    p = make("00", blocks=4)
    for name in "abc":
        seed(p, name)
    p.raise_priority("r", [0], NOW, 1.0)
    assert len(p.pick("a", 0.0, 10, spread=2)) == 2  # split while not on parole
    for blk in everything(p, "b"):
        deliver(p, "b", blk)
    p.piece_failed(0)
    assert p.pick("b", 0.0, 2, spread=3) == [(0, 0, B), (0, B, B)]
    assert p.pick("c", 0.0, 10, spread=3) == []             # not for anybody else
    assert p.pick("c", 5.0, 10, spread=3) == []             # even when late
    p.remove_peer("b")  # the parole holder leaves: another takes over, all of it
    assert len(p.pick("c", 0.0, 10, spread=3)) == 4
    check_consistent(p)
    for blk in [(0, i * B, B) for i in range(4)]:
        deliver(p, "c", blk)
    p.piece_verified(0)
    p.raise_priority("r", [1], NOW, 1.0)
    assert len(p.pick("a", 0.0, 10, spread=2)) == 2  # parole is per piece


def test_parole_holder_that_drops_a_request_lets_others_in():
    p = make("0", blocks=2)
    seed(p, "a")
    seed(p, "b")
    p.raise_priority("r", [0], NOW, 1.0)
    for blk in everything(p, "a"):
        deliver(p, "a", blk)
    p.piece_failed(0)
    first = p.pick("a", 0.0, 1)
    assert p.pick("b", 0.0, 5) == []
    p.request_dropped("a", *first[0][:2])  # rejected, choked, snubbed
    assert p.pick("b", 0.0, 5) == [(0, 0, B), (0, B, B)]
    check_consistent(p)


def test_piece_verified_retires_the_piece():
    p = make("000")
    seed(p, "a")
    seed(p, "b")
    p.raise_priority("r", [1], NOW, 1.0)
    p.raise_priority("r2", [1], READAHEAD, 1.0)
    p.pick("b", 0.0, 1)
    for blk in p.pick("a", 0.0, 10):
        deliver(p, "a", blk)
    p.piece_verified(1)
    assert 1 in p.have
    assert p.waiting() == []
    assert p.outstanding("b") == 0
    assert everything(p, "a", now=100.0) == []
    assert everything(p, "b", now=100.0) == []
    assert p.contributors(1) == set()
    assert deliver(p, "b", (1, 0, B)) == Received(False)
    p.raise_priority("r3", [1], NOW, 1.0)  # raising a piece we have does nothing
    assert p.waiting() == []
    assert p.priority(1) == (NONE, math.inf)
    check_consistent(p)


def test_piece_verified_with_prefetch():
    p = make("00", prefetch=True)
    seed(p, "a")
    for blk in p.pick("a", 0.0, 2):
        deliver(p, "a", blk)
    p.piece_verified(0)
    assert p.priority(0) == (NONE, math.inf)
    assert order(everything(p, "a")) == [1]


def test_piece_lost_is_wanted_again():
    """A piece evicted from the disk cache (or found damaged) is fetched again when
    a read raises it, and the peer that has it is interesting again."""
    p = make("11")
    a = peer_with(p, "a", "11")
    assert not p.is_interesting(a)
    p.raise_priority("r", [0], NOW, 1.0)
    assert everything(p, a) == []
    p.piece_lost(0)
    assert 0 not in p.have and p.is_interesting(a)
    p.raise_priority("r", [0], NOW, 1.0)
    assert order(everything(p, a)) == [0]
    check_consistent(p)


# -- prefetch ----------------------------------------------------------------------


def test_no_prefetch_without_the_flag():
    p = make("0000")
    seed(p, "a")
    assert everything(p, "a") == []


def test_prefetch_rarest_first():
    p = make("00000", prefetch=True)
    peer_with(p, "x", "11111")
    peer_with(p, "p1", "10100")
    peer_with(p, "p2", "10010")
    peer_with(p, "p3", "10000")
    # availability: 0:4, 1:1, 2:2, 3:2, 4:1
    assert p.availability == [4, 1, 2, 2, 1]
    assert order(everything(p, "x")) == [1, 4, 2, 3, 0]


def test_prefetch_skips_pieces_we_have():
    p = make("10101", prefetch=True)
    seed(p, "x")
    assert order(everything(p, "x")) == [1, 3]


def test_prefetch_partial_pieces_first():
    p = make("0000", prefetch=True)
    peer_with(p, "x", "1111")
    peer_with(p, "y", "1000")
    peer_with(p, "z", "1000")
    # piece 0 is the most common, but once started it is finished first
    p.raise_priority("r", [0], NOW, 1.0)
    assert p.pick("y", 0.0, 1) == [(0, 0, B)]
    p.drop("r")
    assert p.priority(0) == (NORMAL, math.inf)
    picked = everything(p, "x")
    assert picked[0] == (0, B, B)
    assert order(picked) == [0, 1, 2, 3]


def test_prefetch_many_partials_in_index_order_then_rarest():
    p = make("00000", prefetch=True)
    seed(p, "x")
    seed(p, "y")
    peer_with(p, "z", "00011")
    p.raise_priority("r", [2, 0], NOW, 1.0)
    p.pick("y", 0.0, 1)  # starts piece 0
    p.raise_priority("r", [2], NOW, 0.5)
    p.pick("y", 0.0, 1)  # starts piece 2
    p.drop("r")
    # availability: 0:2 1:2 2:2 3:3 4:3 -> partials 0, 2 first, then 1, then 3, 4
    assert order(everything(p, "x")) == [0, 2, 1, 3, 4]


# -- interest ----------------------------------------------------------------------


def test_is_interesting():
    p = make("0110")
    peer_with(p, "none", "0000")
    peer_with(p, "ours", "0110")
    peer_with(p, "one", "0001")
    seed(p, "seed")
    assert not p.is_interesting("none")
    assert not p.is_interesting("ours")
    assert p.is_interesting("one")
    assert p.is_interesting("seed")
    assert not p.is_interesting("stranger")
    p.piece_verified(3)
    assert not p.is_interesting("one")
    p.piece_verified(0)
    assert not p.is_interesting("seed")  # we have everything


def test_seed_not_interesting_once_complete_from_start():
    p = make("11")
    seed(p, "s")
    assert not p.is_interesting("s")


# -- many operations ----------------------------------------------------------------

PEERS = ["a", "b", "c"]

ops = st.lists(
    st.one_of(
        st.tuples(st.just("pick"), st.sampled_from(PEERS), st.integers(0, 6)),
        st.tuples(st.just("raise"), st.sampled_from(["r1", "r2"]), st.integers(0, 3),
                  st.sampled_from([NONE, NORMAL, READAHEAD, NOW])),
        st.tuples(st.just("drop"), st.sampled_from(["r1", "r2"])),
        st.tuples(st.just("recv"), st.sampled_from(PEERS), st.integers(0, 20)),
        st.tuples(st.just("junk"), st.sampled_from(PEERS), st.integers(0, 3),
                  st.integers(-1, 3), st.integers(0, 2)),
        st.tuples(st.just("reject"), st.sampled_from(PEERS), st.integers(0, 20)),
        st.tuples(st.just("choke"), st.sampled_from(PEERS)),
        st.tuples(st.just("leave"), st.sampled_from(PEERS)),
        st.tuples(st.just("verify"), st.integers(0, 3), st.booleans()),
        st.tuples(st.just("tick")),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops=ops, prefetch=st.booleans())
def test_random_operations_keep_the_books(ops, prefetch):
    p = make("0000", blocks=3, last=B + 5, prefetch=prefetch, duplicate_after=1.0)
    now = 0.0
    given_out: dict[str, list] = {}
    for name, bf in zip(PEERS, ["1111", "1010", "0111"]):
        peer_with(p, name, bf)
        given_out[name] = []
    for op in ops:
        kind = op[0]
        if kind == "pick":
            _, peer, limit = op
            if peer not in p._peers:
                p.add_peer(peer)
                p.got_have_all(peer)
            held_before = {(i, b) for i, b in p._outstanding[peer]}
            picked = p.pick(peer, now, limit)
            assert len(picked) <= limit
            assert len(set(picked)) == len(picked)
            for index, begin, length in picked:
                assert index not in p.have
                assert p.peer_has(peer, index)
                assert p.geometry.is_valid_block(index, begin, length)
                assert (index, begin) not in held_before
                assert p.priority(index)[0] != NONE
            given_out[peer] = given_out.get(peer, []) + picked
        elif kind == "raise":
            _, owner, index, tier = op
            p.raise_priority(owner, [index], tier, now + 1)
        elif kind == "drop":
            p.drop(op[1])
        elif kind == "recv":
            _, peer, k = op
            if given_out.get(peer):
                blk = given_out[peer].pop(k % len(given_out[peer]))
                r = deliver(p, peer, blk)
                assert peer not in r.cancel
                if r.new:
                    assert p.contributors(blk[0]) >= {peer}
        elif kind == "junk":
            _, peer, index, nblock, delta = op
            if peer in p._peers:
                before = p.outstanding(peer)
                r = p.block_received(peer, index, nblock * B, B - delta if delta else B + 1)
                assert not r.new
                assert p.outstanding(peer) == before
        elif kind == "reject":
            _, peer, k = op
            if given_out.get(peer):
                blk = given_out[peer].pop(k % len(given_out[peer]))
                p.request_dropped(peer, blk[0], blk[1])
        elif kind == "choke":
            p.peer_choked(op[1])
            assert p.outstanding(op[1]) == 0
        elif kind == "leave":
            p.remove_peer(op[1])
            given_out[op[1]] = []
        elif kind == "verify":
            _, index, ok = op
            partial = p._partials.get(index)
            if partial is not None and partial.complete:
                if ok:
                    p.piece_verified(index)
                else:
                    p.piece_failed(index)
        elif kind == "tick":
            now += 0.7
        check_consistent(p)
    # availability equals the count of present peers having each piece
    for i in range(4):
        assert p.availability[i] == sum(1 for bits in p._peers.values() if i in bits)


# -- withdrawing abandoned pieces ------------------------------------------------------


def test_withdraw_gives_up_an_unwanted_piece_and_its_requests():
    p = make("00", blocks=4)
    seed(p, "a")
    p.raise_priority("h", [0], READAHEAD, 1.0)
    taken = p.pick("a", 0.0, 3)
    deliver(p, "a", taken[0])
    assert p.withdraw(0) is None  # still wanted: nothing given up
    p.drop("h")
    cancels = p.withdraw(0)
    assert sorted(cancels) == [("a", B, B), ("a", 2 * B, B)]
    assert p.outstanding("a") == 0
    assert p.contributors(0) == set()  # received blocks forgotten too
    check_consistent(p)
    # A late answer to a cancelled request changes nothing.
    assert not p.block_received("a", 0, B, B).new
    # Wanted again later: fetched from scratch.
    p.raise_priority("h2", [0], NOW, 2.0)
    assert len(p.pick("a", 3.0, 10)) == 4


def test_withdraw_leaves_a_complete_piece_alone():
    p = make("0", blocks=2)
    seed(p, "a")
    p.raise_priority("h", [0], READAHEAD, 1.0)
    for blk in p.pick("a", 0.0, 2):
        deliver(p, "a", blk)
    p.drop("h")
    assert p.withdraw(0) is None  # being verified: keep it
    assert p.contributors(0) == {"a"}


def test_now_piece_is_spread_over_peers():
    p = make("0", blocks=8)
    seed(p, "a")
    seed(p, "b")
    p.raise_priority("r", [0], NOW, 1.0)
    first = p.pick("a", 0.0, 100, spread=2)
    second = p.pick("b", 0.0, 100, spread=2)
    assert len(first) == 4 and len(second) == 4
    assert not set(first) & set(second)


def test_spread_is_limited_by_who_has_the_piece():
    p = make("0", blocks=8)
    seed(p, "a")
    p.add_peer("b")  # has nothing
    p.raise_priority("r", [0], NOW, 1.0)
    assert len(p.pick("a", 0.0, 100, spread=4)) == 8  # nobody else could help


def test_spread_applies_to_readahead_only_among_seeds():
    # Seeds only: readahead pieces complete in order, each from every seed.
    p = make("0", blocks=8)
    seed(p, "a")
    seed(p, "b")
    p.raise_priority("r", [0], READAHEAD, 1.0)
    assert len(p.pick("a", 0.0, 100, spread=2)) == 4
    # A leecher about: whole pieces (traded sooner), as before.
    p = make("0", blocks=8)
    seed(p, "a")
    seed(p, "b")
    peer_with(p, "c", "0")
    p.raise_priority("r", [0], READAHEAD, 1.0)
    assert len(p.pick("a", 0.0, 100, spread=2)) == 8


def test_spread_does_not_apply_to_prefetch():
    p = make("0", blocks=8, prefetch=True)
    seed(p, "a")
    seed(p, "b")
    assert len(p.pick("a", 0.0, 100, spread=2)) == 8


# -- sparing seeds -----------------------------------------------------------------------


def test_seed_is_spared_pieces_a_leecher_has():
    p = make("000", blocks=2)
    seed(p, "origin")
    peer_with(p, "node", "010")
    p.raise_priority("h", [0, 1, 2], READAHEAD, 1.0)
    # The origin is not asked for piece 1: the node has it.
    assert {i for i, _, _ in p.pick("origin", 0.0, 100)} == {0, 2}
    assert {i for i, _, _ in p.pick("node", 0.0, 100)} == {1}


def test_urgent_pieces_may_still_come_from_a_seed():
    p = make("00", blocks=2)
    seed(p, "origin")
    peer_with(p, "node", "10")
    p.raise_priority("r", [0], NOW, 1.0)
    assert {i for i, _, _ in p.pick("origin", 0.0, 100)} == {0}


def test_have_from_a_leecher_moves_requests_off_the_seed():
    p = make("00", blocks=4)
    seed(p, "origin")
    p.add_peer("node")
    p.raise_priority("h", [0], READAHEAD, 1.0)
    taken = p.pick("origin", 0.0, 100)
    deliver(p, "origin", taken[0])
    p.got_have("node", 0)
    cancels = p.spare_seeds(0)
    assert sorted(cancels) == [("origin", b, l) for _, b, l in taken[1:]]
    assert p.outstanding("origin") == 0
    assert [blk for blk in p.pick("node", 0.0, 100)] == taken[1:]
    check_consistent(p)


def test_an_unchoke_from_a_leecher_moves_requests_off_the_seed():
    # The node's HAVE of piece 0 came while it choked us (nothing could be asked
    # of it then, so nothing was spared); its unchoke spares the seed piece 0's
    # requests, not piece 1's, which the node does not have.
    p = make("00", blocks=2)
    seed(p, "origin")
    p.add_peer("node")
    p.raise_priority("h", [0, 1], READAHEAD, 1.0)
    taken = p.pick("origin", 0.0, 100)
    assert order(taken) == [0, 1]
    p.got_have("node", 0)
    cancels = p.spare_seeds_to("node")
    assert sorted(cancels) == [("origin", 0, b, n) for i, b, n in taken if i == 0]
    assert p.outstanding("origin") == 2
    assert order(p.pick("node", 0.0, 100)) == [0]
    assert p.spare_seeds_to("node") == []  # asked of the node now
    assert p.spare_seeds_to("origin") == []  # a seed spares no seed
    check_consistent(p)


def test_among_leechers_readahead_goes_rarest_first():
    p = make("0000", blocks=1)
    seed(p, "origin")
    peer_with(p, "node", "1100")
    p.raise_priority("h", [0, 1, 2, 3], READAHEAD, 1.0)  # same deadline
    got = [i for i, _, _ in p.pick("node2" if False else "origin", 0.0, 100)]
    assert set(got) == {2, 3}  # 0 and 1 are left to the node


# -- the backlog: what a read's blocks would queue behind ---------------------------


def test_ahead_caps_the_backlog_not_now_blocks():
    p = make("000000", blocks=4)
    seed(p, "a")
    p.raise_priority("h", [2, 3, 4, 5], READAHEAD, 1.0)
    assert len(p.pick("a", 0.0, 100, ahead=6)) == 6
    assert p.pick("a", 0.0, 100, ahead=6) == []        # the backlog is full
    p.raise_priority("r", [0], NOW, 0.5)
    now_blocks = p.pick("a", 0.0, 100, ahead=6)
    assert order(now_blocks) == [0] and len(now_blocks) == 4  # NOW: only `limit` counts
    assert len(p.pick("a", 0.0, 100, ahead=8)) == 2    # room for two more below NOW
    check_consistent(p)


def test_ahead_counts_pieces_by_their_tier_now():
    p = make("0000", blocks=4)
    seed(p, "a")
    p.raise_priority("h", [1, 2], READAHEAD, 1.0)
    p.pick("a", 0.0, 100, ahead=6)                      # 1: 4 blocks, 2: 2 blocks
    assert p.pick("a", 0.0, 100, ahead=6) == []
    p.raise_priority("r", [1], NOW, 0.5)                # a read now waits on piece 1
    assert len(p.pick("a", 0.0, 100, ahead=6)) == 2    # so 2's last blocks fit again
    assert p.pick("a", 0.0, 100, ahead=6) == []


def test_ahead_caps_prefetch_too():
    p = make("0000", blocks=4, prefetch=True)
    seed(p, "a")
    assert len(p.pick("a", 0.0, 100, ahead=3)) == 3
    assert p.pick("a", 0.0, 100, ahead=3) == []
    p.raise_priority("r", [3], NOW, 0.5)
    assert order(p.pick("a", 0.0, 100, ahead=3)) == [3]


def test_backlog_is_what_a_read_queues_behind():
    """The requests below NOW asked of a peer before its latest NOW request, in
    the order asked."""
    p = make("000000", blocks=2)
    seed(p, "a")
    p.raise_priority("h", [1, 2], READAHEAD, 1.0)
    asked = p.pick("a", 0.0, 100)
    assert order(asked) == [1, 2]
    assert p.backlog("a") == []                         # no read's block asked of it
    p.raise_priority("r", [4], NOW, 0.5)
    assert order(p.pick("a", 0.0, 100)) == [4]
    assert p.backlog("a") == asked
    p.raise_priority("r2", [2], NOW, 0.5)               # a read waits on piece 2 too
    assert p.backlog("a") == asked[:2]                  # 2 is no backlog, 1 still is
    p.raise_priority("h", [3], READAHEAD, 1.0)
    assert order(p.pick("a", 0.0, 100)) == [3]          # asked after: behind the read
    assert p.backlog("a") == asked[:2]
    p.request_dropped("a", 1, 0)
    p.request_dropped("a", 1, B)
    assert p.backlog("a") == []
    assert p.pick("a", 0.0, 100) == asked[:2]           # asked again, at the back
    assert p.backlog("a") == []
    check_consistent(p)


def test_urgent_while_a_piece_is_at_now():
    p = make("000")
    assert not p.urgent()
    p.raise_priority("h", [1], READAHEAD, 1.0)
    assert not p.urgent()
    p.raise_priority("r", [2], NOW, 1.0)
    assert p.urgent()
    p.drop("r")
    assert not p.urgent()


# -- blocks a read needs first (BEP 52 block-level reads) ------------------------------

def test_blocks_wanted_first_go_before_the_rest_of_their_piece():
    p = make("00", blocks=16)
    peer_with(p, "a", "11")
    p.raise_priority("read", [0], NOW, 1.0)
    p.want_first("read", 0, range(10, 12))
    picked = p.pick("a", 0.0, 4)
    assert picked == [(0, 10 * B, B), (0, 11 * B, B), (0, 0, B), (0, B, B)]
    # The rest of the piece still comes, none twice.
    rest = p.pick("a", 0.0, 100)
    assert sorted(b for _, b, _ in picked + rest) == [i * B for i in range(16)]


def test_blocks_wanted_first_are_undone_by_drop_and_by_the_piece_verified():
    p = make("000", blocks=8)
    peer_with(p, "a", "111")
    p.raise_priority("read", [0, 1], NOW, 1.0)
    p.want_first("read", 0, range(5, 6))
    p.drop("read", [0])
    p.raise_priority("r2", [0], NOW, 1.0)
    assert p.pick("a", 0.0, 1) == [(0, 0, B)]
    p.want_first("r2", 1, range(7, 8))
    p.piece_verified(1)
    p.want_first("r2", 1, range(3, 4))  # a piece we have: nothing to want
    assert 1 not in p._first
    p.want_first("r2", 2, range(6, 7))
    p.raise_priority("r2", [2], NOW, 1.0)
    p.drop("r2")
    p.raise_priority("r3", [2], NOW, 1.0)
    assert [b for i, b, _ in p.pick("a", 0.0, 20) if i == 2][0] == 0


def test_blocks_wanted_only_leave_the_rest_of_the_piece_alone():
    p = make("00", blocks=16, duplicate_after=1.0)
    peer_with(p, "a", "11")
    peer_with(p, "b", "11")
    p.raise_priority("read", [0], NOW, 1.0)
    p.want_first("read", 0, range(3, 5), only=True)
    assert p.pick("a", 0.0, 8) == [(0, 3 * B, B), (0, 4 * B, B)]
    assert p.pick("b", 0.5, 8) == []                  # nothing else of the piece
    assert p.pick("b", 2.0, 8) == [(0, 3 * B, B), (0, 4 * B, B)]  # late: duplicated
    p.want_first("other", 0, range(9, 10))            # an owner without ``only``
    assert [b // B for _, b, _ in p.pick("b", 2.0, 3)] == [9, 0, 1]
    p.drop("other")
    p.want_first("read", 0, range(3, 5), only=False)  # the read gives up on blocks
    assert [b // B for _, b, _ in p.pick("a", 2.0, 2)] == [2, 5]


def test_a_block_that_failed_alone_is_missing_again():
    p = make("0", blocks=4)
    peer_with(p, "a", "1")
    peer_with(p, "b", "1")
    p.raise_priority("read", [0], NOW, 1.0)
    p.pick("a", 0.0, 4)
    for b in range(3):
        p.block_received("a", 0, b * B, B)
    assert p.block_failed(0, B) == "a"
    assert p.block_failed(0, B) is None        # not received any more
    assert p.block_failed(0, 3 * B) is None    # never received
    assert p.block_failed(5, 0) is None        # no such piece in progress
    assert p.pick("b", 0.1, 4) == [(0, B, B)]
    assert not p.block_received("a", 0, 3 * B, B).piece_complete
    assert p.block_received("b", 0, B, B).piece_complete


# -- a pick that finds nothing free is remembered ---------------------------------------


def test_a_dry_pick_is_remembered_until_a_block_may_be_free():
    p = make("00", blocks=2)
    seed(p, "a")
    seed(p, "b")
    p.raise_priority("h", [0], READAHEAD, 1.0)
    taken = p.pick("a", 0.0, 10)
    assert len(taken) == 2
    assert p.pick("b", 0.0, 10) == []
    assert p._dry["b"] == p._generation  # remembered: the next pick returns at once
    assert p.dry("b") and p.dry("a")  # a took all there was: dry as well
    assert p.pick("b", 0.0, 10) == []
    p.request_dropped("a", *taken[0][:2])  # the block is free again
    assert not p.dry("b")
    assert p.pick("b", 0.0, 10) == [taken[0]]
    p.raise_priority("h", [1], READAHEAD, 2.0)  # a new piece is wanted
    assert order(p.pick("b", 0.0, 10)) == [1]


def _dry_setup():
    """Peer c has pieces 1 and 3; of the wanted pieces 0 and 1, a is asked for 0, c
    for 1: c's next pick is dry."""
    p = make("0000", blocks=3, last=B + 5)
    for name, bf in zip(PEERS, ["1110", "1010", "0101"]):
        peer_with(p, name, bf)
    p.raise_priority("r", [0, 1], READAHEAD, 1.0)
    a_blocks = p.pick("a", 0.0, 3)
    c_blocks = p.pick("c", 0.0, 10)
    assert order(a_blocks) == [0] and order(c_blocks) == [1]
    assert p.pick("c", 0.0, 10) == [] and "c" in p._dry
    return p, a_blocks, c_blocks


def test_a_leecher_leaving_ends_a_seeds_dry_spell():
    """A seed leaves a piece that a leecher has to the leecher (spare the seeds):
    once the leecher is gone, the seed takes it."""
    p = make("00", blocks=2)
    seed(p, "s")
    peer_with(p, "l", "10")
    p.raise_priority("r", [0], READAHEAD, 1.0)
    assert p.pick("s", 0.0, 10) == [] and "s" in p._dry
    p.remove_peer("l")
    assert order(p.pick("s", 0.0, 10)) == [0]


@pytest.mark.parametrize("event", ["have", "dropped", "raise", "failed", "lost",
                                   "withdrawn", "left", "choked"])
def test_each_event_that_may_free_a_block_ends_a_dry_spell(event):
    p, a_blocks, c_blocks = _dry_setup()
    if event == "have":  # c gets piece 0, a block of which is free
        p.request_dropped("a", *a_blocks[0][:2])
        p._dry["c"] = p._generation  # dry again: only the HAVE below may end it
        p.got_have("c", 0)
        assert p.pick("c", 0.0, 10) == [a_blocks[0]]
    elif event == "dropped":
        p.request_dropped("c", *c_blocks[1][:2])
        assert p.pick("c", 0.0, 10) == [c_blocks[1]]
    elif event == "raise":
        p.raise_priority("r", [3], READAHEAD, 2.0)
        assert order(p.pick("c", 0.0, 10)) == [3]
    elif event == "failed":
        for blk in c_blocks:
            p.block_received("c", *blk)
        p.piece_failed(1)
        assert order(p.pick("c", 0.0, 10)) == [1]
    elif event == "lost":  # with --prefetch every missing piece is wanted
        p.have.add(3)
        p.prefetch = True
        p._dry.clear()
        assert p.pick("c", 0.0, 10) == []
        p.piece_lost(3)
        assert order(p.pick("c", 0.0, 10)) == [3]
    elif event == "withdrawn":
        p.drop("r", [1])
        assert p.withdraw(1) is not None
        p._dry["c"] = p._generation  # only the withdrawal's effect may end it
        p.raise_priority("r2", [1], READAHEAD, 2.0)
        assert order(p.pick("c", 0.0, 10)) == [1]
    elif event == "left":  # a leaves: its blocks of piece 0 are free (c lacks 0)
        p.remove_peer("a")
        p.got_have("c", 0)
        assert order(p.pick("c", 0.0, 10)) == [0]
    elif event == "choked":
        p.peer_choked("c")
        assert order(p.pick("c", 0.0, 10)) == [1]
    check_consistent(p)


ops_twin = st.lists(
    st.one_of(
        st.tuples(st.just("pick"), st.sampled_from(PEERS), st.integers(0, 6),
                  st.integers(1, 3), st.sampled_from([None, 0, 1, 2, 4])),
        st.tuples(st.just("raise"), st.sampled_from(["r1", "r2"]), st.integers(0, 3),
                  st.sampled_from([NONE, NORMAL, READAHEAD, NOW])),
        st.tuples(st.just("drop"), st.sampled_from(["r1", "r2"])),
        st.tuples(st.just("recv"), st.sampled_from(PEERS), st.integers(0, 20)),
        st.tuples(st.just("reject"), st.sampled_from(PEERS), st.integers(0, 20)),
        st.tuples(st.just("have"), st.sampled_from(PEERS), st.integers(0, 3)),
        st.tuples(st.just("leave"), st.sampled_from(PEERS)),
        st.tuples(st.just("verify"), st.integers(0, 3), st.booleans()),
        st.tuples(st.just("lost"), st.integers(0, 3)),
        st.tuples(st.just("withdraw"), st.integers(0, 3)),
        st.tuples(st.just("tick")),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(ops=ops_twin, prefetch=st.booleans())
def test_remembering_dry_picks_changes_no_pick(ops, prefetch):
    """The same operations on two pickers, one of which forgets every dry pick: each
    pick hands out the same blocks."""
    twins = [make("0000", blocks=3, last=B + 5, prefetch=prefetch) for _ in range(2)]
    now = 0.0
    given_out: dict[str, list] = {name: [] for name in PEERS}
    for p in twins:
        for name, bf in zip(PEERS, ["1111", "1010", "0100"]):
            peer_with(p, name, bf)
    for op in ops:
        kind = op[0]
        if kind == "pick":
            _, peer, limit, spread, ahead = op
            results = []
            for k, p in enumerate(twins):
                if peer not in p._peers:
                    peer_with(p, peer, "0110")
                if k:
                    p._dry.clear()
                results.append(p.pick(peer, now, limit, spread, ahead))
            assert results[0] == results[1]
            given_out[peer] += results[0]
            continue
        for p in twins:
            if kind == "raise":
                _, owner, index, tier = op
                p.raise_priority(owner, [index], tier, now + 1)
            elif kind == "drop":
                p.drop(op[1])
            elif kind in ("recv", "reject"):
                _, peer, k = op
                if given_out[peer]:
                    blk = given_out[peer][k % len(given_out[peer])]
                    if kind == "recv":
                        p.block_received(peer, *blk)
                    else:
                        p.request_dropped(peer, blk[0], blk[1])
            elif kind == "have":
                if op[1] in p._peers:
                    p.got_have(op[1], op[2])
            elif kind == "leave":
                p.remove_peer(op[1])
            elif kind == "verify":
                _, index, ok = op
                partial = p._partials.get(index)
                if partial is not None and partial.complete:
                    if ok:
                        p.piece_verified(index)
                    else:
                        p.piece_failed(index)
            elif kind == "lost":
                if op[1] in p.have:
                    p.piece_lost(op[1])
            elif kind == "withdraw":
                p.withdraw(op[1])
            elif kind == "tick":
                now += 0.7
        if kind in ("recv", "reject") and given_out[op[1]]:
            given_out[op[1]].pop(op[2] % len(given_out[op[1]]))
        elif kind == "leave":
            given_out[op[1]] = []
    for p in twins:
        check_consistent(p)


# -- avoid (--prefer-subnet: core/topology) ---------------------------------------------

def test_avoided_pieces_are_not_picked_unless_a_read_waits_past_the_grace():
    p = make("0000")
    far = peer_with(p, "far", "1111")
    p.raise_priority("ra", [0, 1, 2], READAHEAD, 5.0)
    p.raise_priority("read", [3], NOW, 1.0)
    avoid = {1, 3}
    assert order(p.pick(far, 0.0, 100, avoid=avoid, avoid_grace=1.0)) == [0, 2]
    # The read on piece 3 is late by more than the grace: any peer may serve it.
    assert order(p.pick(far, 2.5, 100, avoid=avoid, avoid_grace=1.0)) == [3]
    check_consistent(p)


def test_avoided_pieces_are_not_prefetched():
    p = make("000", prefetch=True)
    far = peer_with(p, "far", "111")
    assert order(p.pick(far, 0.0, 100, avoid={0, 2})) == [1]
