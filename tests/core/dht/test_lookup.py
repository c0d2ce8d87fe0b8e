"""The iterative lookup: alpha in flight, nearest first, timeouts by ``now``, ends when
the k closest have answered; and a simulated network of nodes on which it converges."""

from hypothesis import given, settings
from hypothesis import strategies as st

from torrentfs.core.dht.krpc import NodeInfo
from torrentfs.core.dht.lookup import ANSWERED, FAILED, Lookup

TARGET = bytes(20)


def nid(n: int) -> bytes:
    return n.to_bytes(20, "big")


def node(n: int) -> NodeInfo:
    return NodeInfo(nid(n), (f"10.0.{n >> 8 & 255}.{n & 255}", 1000 + n % 1000))


def test_alpha_in_flight_nearest_first():
    lk = Lookup(TARGET, [node(n) for n in (50, 10, 40, 20, 30)], alpha=3, k=4)
    first = lk.next_queries(0.0)
    assert [c.id for c in first] == [nid(10), nid(20), nid(30)]
    assert lk.next_queries(0.1) == []  # three in flight
    lk.responded(node(10).addr, nid(10), nodes=(node(5), node(3)))
    nxt = lk.next_queries(0.2)
    assert [c.id for c in nxt] == [nid(3)]  # the nearest not yet asked


def test_seeds_of_unknown_id_go_first_and_learn_their_id():
    lk = Lookup(TARGET, [(None, ("192.0.2.1", 6881)), node(7)], alpha=1)
    (c,) = lk.next_queries(0.0)
    assert c.addr == ("192.0.2.1", 6881)
    lk.responded(("192.0.2.1", 6881), nid(99), nodes=(node(4),))
    assert lk.candidates[("192.0.2.1", 6881)].id == nid(99)
    assert [c.id for c in lk.next_queries(0.1)] == [nid(4)]


def test_timeouts_free_slots_and_fail_nodes():
    lk = Lookup(TARGET, [node(n) for n in (1, 2, 3, 4)], alpha=2, timeout=4.0)
    assert len(lk.next_queries(0.0)) == 2
    assert lk.next_timeout() == 4.0
    assert lk.next_queries(3.9) == []
    again = lk.next_queries(4.0)
    assert [c.id for c in again] == [nid(3), nid(4)]
    assert lk.candidates[node(1).addr].state == FAILED
    # A late answer still counts.
    lk.responded(node(1).addr, nid(1))
    assert lk.candidates[node(1).addr].state == ANSWERED


def test_done_when_k_closest_answered_and_tokens_for_announce():
    lk = Lookup(TARGET, [node(n) for n in (1, 2, 3, 100, 200)], k=3, alpha=3)
    lk.next_queries(0.0)
    assert not lk.done
    for n in (1, 2):
        lk.responded(node(n).addr, nid(n), token=b"t%d" % n)
    assert not lk.done
    lk.failed(node(3).addr)
    assert not lk.done  # node 100 is now among the 3 closest, not asked yet
    (c,) = lk.next_queries(0.1)
    assert c.id == nid(100)
    lk.responded(node(100).addr, nid(100), values=(("1.2.3.4", 5),), token=b"t100")
    assert lk.done  # 200 is never asked
    assert [c.id for c in lk.announce_targets()] == [nid(1), nid(2), nid(100)]
    assert lk.peers == [("1.2.3.4", 5)]


def test_values_deduplicated_answers_from_strangers_ignored():
    lk = Lookup(TARGET, [node(1)], own_id=nid(77))
    lk.next_queries(0.0)
    assert lk.responded(("6.6.6.6", 6), nid(2), values=(("9.9.9.9", 9),)) == []
    fresh = lk.responded(node(1).addr, nid(1), nodes=(node(77),),
                         values=(("1.1.1.1", 1), ("1.1.1.1", 1), ("2.2.2.2", 2)))
    assert fresh == [("1.1.1.1", 1), ("2.2.2.2", 2)]
    assert node(77).addr not in lk.candidates  # our own id is not a candidate


def test_candidates_bounded():
    lk = Lookup(TARGET, [node(1)], max_candidates=20)
    lk.next_queries(0.0)
    lk.responded(node(1).addr, nid(1), nodes=tuple(node(n) for n in range(2, 500)))
    assert len(lk.candidates) <= 21
    assert max(int.from_bytes(c.id, "big") for c in lk.candidates.values()) < 40


def simulate(n_nodes: int, target: int, seed_ids: list[int], drop: set[int],
             k: int = 8) -> Lookup:
    """A network of Kademlia nodes 1..n-1: each knows up to 8 nodes of each of its
    buckets (by the highest bit in which they differ from it) and answers with the 8
    it knows nearest the target; nodes within distance 4 of the target hold a peer.
    Nodes in ``drop`` never answer."""
    ids = range(1, n_nodes)
    knows = {}
    for i in ids:
        buckets: dict[int, list[int]] = {}
        for j in ids:
            if j != i:
                b = buckets.setdefault((i ^ j).bit_length(), [])
                if len(b) < 8:
                    b.append(j)
        knows[i] = [j for b in buckets.values() for j in b]
    lk = Lookup(nid(target), [node(i) for i in seed_ids], k=k)
    now = 0.0
    for _ in range(1000):
        if lk.done:
            break
        for c in lk.next_queries(now):
            i = int.from_bytes(c.id, "big")
            if i in drop:
                continue
            near = sorted(knows[i], key=lambda j: j ^ target)[:8]
            lk.responded(c.addr, c.id, nodes=tuple(node(j) for j in near),
                         values=(("5.5.5.5", i),) if i ^ target < 4 else (), token=b"x")
        now += 1.0
    return lk


def test_simulated_lookup_finds_the_closest_nodes():
    lk = simulate(400, 0x155, [3, 300, 77], drop={0x154, 0x150})
    assert lk.done
    want = sorted((j for j in range(1, 400) if j not in {0x154, 0x150}), key=lambda j: j ^ 0x155)
    # The dead nodes took two of the eight places in every answer: the six nearest
    # live nodes are found (as in any Kademlia lookup, the 7th and 8th may be missed).
    assert [int.from_bytes(n.id, "big") for n in lk.closest_answered()][:6] == want[:6]
    assert {p[1] for p in lk.peers} == {0x155, 0x156, 0x157}  # 0x154 never answered
    assert lk.queries_sent < 60


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 399), st.lists(st.integers(1, 399), min_size=1, max_size=5),
       st.sets(st.integers(1, 399), max_size=40))
def test_simulated_lookups_always_end(target, seeds, drop):
    lk = simulate(400, target, seeds, drop)
    assert lk.done
    alive = sorted((j for j in range(1, 400) if j not in drop), key=lambda j: j ^ target)
    reached = {int.from_bytes(c.id, "big") for c in lk.candidates.values() if c.id}
    answered = [int.from_bytes(n.id, "big") for n in lk.closest_answered()]
    assert not set(answered) & drop
    if not drop:  # from any seed, the exact k closest nodes are found
        assert answered == alive[:8]
    assert reached
