"""The choker: regular slots by rate, one rotating optimistic slot, decisions as
changes. Pure; time is numbers (and trio's virtual clock in one test)."""

import random

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from torrentfs.core.choker import NEW_PEER_AGE, Choker, Decision, PeerView


def peer(key, down=0.0, up=0.0, interested=True, choked=True, snubbed=False,
         connected_at=0.0):
    return PeerView(key=key, interested=interested, choked=choked, down_rate=down,
                    up_rate=up, snubbed=snubbed, connected_at=connected_at)


def apply(peers, decision):
    for p in peers:
        if p.key in decision.unchoke:
            p.choked = False
        if p.key in decision.choke:
            p.choked = True


def unchoked(peers):
    return {p.key for p in peers if not p.choked}


def round_(choker, peers, now, seeding=False):
    """One round, applied; returns the decision."""
    d = choker.rechoke(peers, now, seeding)
    apply(peers, d)
    return d


def test_leeching_gives_regular_slots_to_the_best_downloaders():
    peers = [peer(k, down=d, up=1000 - d) for k, d in
             [("a", 10), ("b", 500), ("c", 300), ("d", 0), ("e", 900), ("f", 700)]]
    c = Choker(regular_slots=3)
    d = c.rechoke(peers, 0.0, seeding=False)
    assert c.regular == {"e", "f", "b"}
    assert c.optimistic in {"a", "c", "d"}
    assert d.unchoke == c.regular | {c.optimistic}
    assert d.choke == frozenset()


def test_seeding_gives_regular_slots_to_the_best_uploaders():
    peers = [peer(k, down=d, up=1000 - d) for k, d in
             [("a", 10), ("b", 500), ("c", 300), ("d", 0), ("e", 900), ("f", 700)]]
    c = Choker(regular_slots=3)
    c.rechoke(peers, 0.0, seeding=True)
    assert c.regular == {"d", "a", "c"}
    assert c.optimistic in {"b", "e", "f"}


def test_rate_ties_go_to_the_longest_connected_then_the_lowest_key():
    peers = [peer("z", down=5, connected_at=50.0), peer("y", down=5, connected_at=10.0),
             peer("b", down=5, connected_at=30.0), peer("a", down=5, connected_at=30.0),
             peer("fast", down=9, connected_at=99.0)]
    c = Choker(regular_slots=3)
    c.rechoke(peers, 100.0, seeding=False)
    assert c.regular == {"fast", "y", "a"}
    # optimistic, deterministically: all waited since they connected; "b" before "z"
    assert c.optimistic == "b"


def test_keys_that_cannot_be_compared_still_get_a_deterministic_order():
    keys = [("10.0.0.1", 6881), 7, "x", None]
    views = [peer(k) for k in keys]
    picks = {frozenset(Choker(regular_slots=2).rechoke(views, 0.0, False).unchoke)
             for _ in range(3)}
    assert len(picks) == 1


def test_uninterested_peers_get_no_slot_and_are_choked():
    peers = [peer("a", down=1000, interested=False, choked=False),
             peer("b", down=900, interested=False),
             peer("c", down=5), peer("d", down=1)]
    c = Choker(regular_slots=1)
    d = round_(c, peers, 0.0)
    assert d.choke == {"a"}
    assert unchoked(peers) == {"c", "d"}
    assert c.regular == {"c"} and c.optimistic == "d"


def test_a_peer_losing_interest_loses_its_slot_and_the_slot_is_refilled():
    peers = [peer(k, down=r) for k, r in [("a", 100), ("b", 90), ("c", 1), ("d", 0)]]
    c = Choker(regular_slots=2)
    round_(c, peers, 0.0)
    assert c.regular == {"a", "b"} and c.optimistic == "c"
    peers[0].interested = False
    d = round_(c, peers, 10.0)
    assert d.choke == {"a"} and d.unchoke == {"d"}
    assert c.regular == {"b", "c"}      # c moved up to a regular slot
    assert c.optimistic == "d"          # so the optimistic slot was refilled


def test_optimistic_peer_losing_interest_is_replaced_at_once():
    peers = [peer(k, down=r) for k, r in [("a", 100), ("b", 1), ("c", 0)]]
    c = Choker(regular_slots=1)
    round_(c, peers, 0.0)
    assert c.optimistic == "b"
    peers[1].interested = False
    d = round_(c, peers, 5.0)
    assert d == Decision(unchoke=frozenset({"c"}), choke=frozenset({"b"}))
    assert c.optimistic == "c"


def test_disconnected_optimistic_peer_is_replaced_at_once():
    peers = [peer(k, down=r) for k, r in [("a", 100), ("b", 1), ("c", 0)]]
    c = Choker(regular_slots=1)
    round_(c, peers, 0.0)
    assert c.optimistic == "b"
    del peers[1]
    d = round_(c, peers, 5.0)
    assert d.unchoke == {"c"} and c.optimistic == "c"


def test_snubbed_peers_lose_regular_slots_while_leeching():
    peers = [peer(k, down=r) for k, r in [("a", 100), ("b", 90), ("c", 50), ("d", 0)]]
    c = Choker(regular_slots=2)
    round_(c, peers, 0.0)
    assert c.regular == {"a", "b"}
    peers[0].snubbed = True
    peers[0].down_rate = 0.0            # the shell says: it stopped sending
    round_(c, peers, 10.0)
    assert "a" not in c.regular
    assert c.regular == {"b", "c"}


def test_snubbed_peers_leave_slots_empty_rather_than_fill_them():
    peers = [peer("a", down=100, snubbed=True), peer("b", down=90, snubbed=True),
             peer("c", down=1)]
    c = Choker(regular_slots=2)
    round_(c, peers, 0.0)
    assert c.regular == {"c"}
    assert c.optimistic in {"a", "b"}   # snubbed peers may still be optimistic
    assert len(unchoked(peers)) == 2


def test_snubbing_does_not_matter_when_seeding():
    peers = [peer("a", up=100, snubbed=True), peer("b", up=90), peer("c", up=1)]
    c = Choker(regular_slots=2)
    c.rechoke(peers, 0.0, seeding=True)
    assert c.regular == {"a", "b"}


def test_optimistic_slot_rotates_only_after_its_period_and_never_duplicates():
    peers = [peer(k, down=r) for k, r in
             [("a", 100), ("b", 90), ("c", 3), ("d", 2), ("e", 1)]]
    c = Choker(regular_slots=2, optimistic_every=30.0, rechoke_every=10.0)
    history = []
    for t in range(0, 121, 5):
        round_(c, peers, float(t))
        assert c.optimistic not in c.regular
        history.append((t, c.optimistic))
    changes = [t for (t, o), (_, prev) in zip(history[1:], history) if o != prev]
    assert changes == [30, 60, 90, 120]
    # without an rng the slot is a round robin over those waiting longest
    assert [o for t, o in history if t in (0, 30, 60, 90, 120)] == ["c", "d", "e", "c", "d"]


def test_the_optimistic_peer_keeps_its_slot_however_slow():
    peers = [peer(k, down=r) for k, r in [("a", 100), ("b", 50), ("c", 10)]]
    c = Choker(regular_slots=1)
    round_(c, peers, 0.0)
    assert c.optimistic == "b"
    peers[1].down_rate = 0.0
    peers[2].down_rate = 80.0
    assert not round_(c, peers, 10.0)   # c is faster but not regular: b stays
    assert c.optimistic == "b"


def test_an_optimistic_peer_that_earns_a_regular_slot_frees_the_optimistic_one():
    peers = [peer(k, down=r) for k, r in [("a", 100), ("b", 50), ("c", 10), ("d", 0)]]
    c = Choker(regular_slots=2)
    round_(c, peers, 0.0)
    assert c.regular == {"a", "b"} and c.optimistic == "c"
    peers[2].down_rate = 200.0          # the optimistic unchoke paid off
    d = round_(c, peers, 10.0)
    assert c.regular == {"c", "a"}
    # the freed optimistic slot goes to the peer that waited choked, not to b,
    # which just fell out of the regular set and has not waited at all
    assert c.optimistic == "d"
    assert d == Decision(unchoke=frozenset({"d"}), choke=frozenset({"b"}))


def test_the_only_candidate_keeps_the_optimistic_slot_across_rotations():
    peers = [peer("a", down=9), peer("b", down=1)]
    c = Choker(regular_slots=1)
    for t in (0.0, 30.0, 60.0):
        round_(c, peers, t)
        assert c.optimistic == "b"
    peers.append(peer("x", down=0, connected_at=61.0))
    round_(c, peers, 90.0)
    assert c.optimistic == "x"


def test_decisions_list_only_changes_and_are_idempotent():
    peers = [peer(k, down=r, choked=k not in "ab") for k, r in
             [("a", 100), ("b", 1), ("c", 90), ("d", 5), ("e", 0)]]
    c = Choker(regular_slots=2)
    d = c.rechoke(peers, 0.0, False)
    assert c.regular == {"a", "c"}
    before = {p.key: p.choked for p in peers}
    assert all(before[k] for k in d.unchoke)       # only choked peers are unchoked
    assert not any(before[k] for k in d.choke)     # only unchoked peers are choked
    apply(peers, d)
    again = c.rechoke(peers, 0.0, False)
    assert again == Decision(frozenset(), frozenset()) and not again
    assert c.rechoke(peers, 1.0, False) == again


def test_the_unchoked_set_is_bounded_by_regular_slots_plus_one():
    peers = [peer(i, down=float(i % 7), connected_at=float(i)) for i in range(40)]
    c = Choker(regular_slots=4)
    for t in range(0, 300, 10):
        round_(c, peers, float(t))
        assert len(unchoked(peers)) == 5


def test_zero_regular_slots_leaves_only_the_optimistic_one():
    peers = [peer(k, down=r) for k, r in [("a", 100), ("b", 1)]]
    c = Choker(regular_slots=0)
    round_(c, peers, 0.0)
    assert c.regular == set() and unchoked(peers) == {c.optimistic}


def test_nobody_interested_means_nobody_unchoked():
    peers = [peer(k, interested=False, choked=False) for k in "abc"]
    c = Choker()
    d = round_(c, peers, 0.0)
    assert d.choke == {"a", "b", "c"} and c.optimistic is None
    assert unchoked(peers) == set()


def test_due_every_rechoke_every_seconds():
    c = Choker(rechoke_every=10.0)
    assert c.due(0.0)
    c.rechoke([], 0.0, False)
    assert not c.due(9.99)
    assert c.due(10.0)
    c.rechoke([], 4.0, False)           # an out-of-turn round restarts the count
    assert not c.due(10.0) and c.due(14.0)


@pytest.mark.parametrize("bad", [dict(regular_slots=-1), dict(optimistic_every=0),
                                 dict(rechoke_every=-1)])
def test_bad_arguments(bad):
    with pytest.raises(ValueError):
        Choker(**bad)


def test_new_peers_get_three_times_the_chance_of_the_optimistic_slot():
    rng = random.Random(4)
    picks = {"new": 0, "old": 0}
    for _ in range(4000):
        c = Choker(regular_slots=0, rng=rng)
        now = 1000.0
        peers = [peer("old", connected_at=0.0),
                 peer("new", connected_at=now - NEW_PEER_AGE / 2)]
        c.rechoke(peers, now, False)
        picks[c.optimistic] += 1
    assert 0.72 < picks["new"] / 4000 < 0.78


def test_with_an_rng_the_slot_still_rotates_away_from_the_current_holder():
    rng = random.Random(7)
    peers = [peer(k, down=r, connected_at=float(r)) for k, r in
             [("a", 100), ("b", 3), ("c", 2), ("d", 1)]]
    c = Choker(regular_slots=1, rng=rng)
    prev = None
    for t in range(0, 600, 30):
        round_(c, peers, float(t))
        assert c.optimistic in {"b", "c", "d"} and c.optimistic != prev
        prev = c.optimistic
        assert len(unchoked(peers)) == 2


views = st.builds(
    lambda i, interested, choked, down, up, snubbed, age: PeerView(
        key=i, interested=interested, choked=choked, down_rate=down, up_rate=up,
        snubbed=snubbed, connected_at=age),
    st.integers(0, 30), st.booleans(), st.booleans(),
    st.floats(0, 1e6, allow_nan=False), st.floats(0, 1e6, allow_nan=False),
    st.booleans(), st.floats(0, 500, allow_nan=False))


@given(rounds=st.lists(st.tuples(st.lists(views, max_size=25,
                                          unique_by=lambda p: p.key),
                                 st.floats(0, 40, allow_nan=False), st.booleans()),
                       min_size=1, max_size=6),
       slots=st.integers(0, 6), seed=st.one_of(st.none(), st.integers(0, 2**32)))
def test_unchoked_set_is_bounded_and_interested(rounds, slots, seed):
    c = Choker(regular_slots=slots, rng=None if seed is None else random.Random(seed))
    now = 0.0
    for peers, step, seeding in rounds:
        now += step
        before = {p.key: p.choked for p in peers}
        d = c.rechoke(peers, now, seeding)
        assert not d.unchoke & d.choke
        assert all(before[k] for k in d.unchoke) and not any(before[k] for k in d.choke)
        apply(peers, d)
        after = unchoked(peers)
        assert len(after) <= slots + 1
        assert all(p.interested for p in peers if not p.choked)
        assert c.optimistic is None or c.optimistic not in c.regular
        assert not c.rechoke(peers, now, seeding)   # idempotent


async def test_optimistic_rotates_at_30_second_boundaries_on_trio_time(autojump_clock):
    peers = [peer(f"p{i}", down=float(100 - i)) for i in range(8)]
    c = Choker(regular_slots=4, optimistic_every=30.0, rechoke_every=10.0)
    start = trio.current_time()
    rounds, seen = [], []
    while (elapsed := trio.current_time() - start) <= 100:
        if c.due(trio.current_time()):
            apply(peers, c.rechoke(peers, trio.current_time(), seeding=False))
            rounds.append(elapsed)
            seen.append((elapsed, c.optimistic))
            assert len(unchoked(peers)) == 5
        await trio.sleep(1)
    assert rounds == [0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
    changed_at = [t for (t, o), (_, prev) in zip(seen[1:], seen) if o != prev]
    assert changed_at == [30, 60, 90]
    assert [o for t, o in seen if t in (0, 30, 60, 90)] == ["p4", "p5", "p6", "p7"]


def test_the_optimistic_slot_goes_to_the_peer_with_the_fewest_pieces():
    """A peer with nothing to give ranks last for every regular slot: the optimistic
    one is its only way in, so it comes first there, whoever has waited longer (in
    the simulator's 250-node swarm, a node waited 11 s for any unchoke: session 16)."""
    peers = [peer("rich", down=0, connected_at=0.0),
             peer("poor", down=0, connected_at=5.0),
             peer("fast", down=100, connected_at=1.0)]
    peers[0].pieces, peers[1].pieces, peers[2].pieces = 300, 4, 200
    c = Choker(regular_slots=1)
    apply(peers, c.rechoke(peers, 10.0, seeding=False))
    assert c.regular == {"fast"}
    assert c.optimistic == "poor"
    # Alike in pieces once it has some: the slot rotates after its period.
    peers[1].pieces = 300
    c.rechoke(peers, 10.0 + c.optimistic_every, seeding=False)
    assert c.optimistic == "rich"
