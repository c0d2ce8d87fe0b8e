"""The DHT routing table: buckets split around our own id, good / questionable / bad
nodes by times passed in, replacement caches, bounded memory."""

from hypothesis import given, settings
from hypothesis import strategies as st

from torrentfs.core.dht.routing import GOOD_FOR, RoutingTable, distance, random_id_in

OWN = bytes(20)


def nid(n: int) -> bytes:
    return n.to_bytes(20, "big")


def addr(i: int) -> tuple[str, int]:
    return (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 6881)


def top(i: int) -> bytes:
    """An id with its top byte set: all such ids are far from OWN (one far bucket)."""
    return bytes([0x80 | i]) + bytes(19)


def test_first_k_nodes_fill_one_bucket():
    t = RoutingTable(OWN)
    for i in range(8):
        assert t.heard_from(top(i), addr(i), 0.0, responded=True) == []
    assert len(t) == 8 and len(t.buckets) == 1


def test_bucket_with_our_id_splits_and_far_bucket_keeps_its_nodes():
    t = RoutingTable(OWN)
    for i in range(8):
        t.heard_from(top(i), addr(i), 0.0, responded=True)
    # A ninth node far from us: the bucket covering OWN splits; the far half is full.
    pings = t.heard_from(top(8), addr(8), 1.0, responded=True)
    assert len(t.buckets) == 2 and len(t) == 8
    assert pings == []  # all eight are good: nobody to ping, the newcomer waits
    far = t.buckets[1]
    assert far.lo == 1 << 159 and [n.id for n in far.replacements] == [top(8)]
    # Nodes nearer us keep splitting the bucket with our id: one bucket per distance.
    for j in range(150):
        t.heard_from(nid(1 << j), addr(100 + j), 2.0, responded=True)
    assert len(t) == 8 + 150
    assert all(b.covers(int.from_bytes(n.id, "big")) for b in t.buckets for n in b.nodes)
    assert all(len(b.nodes) <= 8 for b in t.buckets)
    spans = [(b.lo, b.hi) for b in t.buckets]
    assert spans[0][0] == 0 and spans[-1][1] == 1 << 160
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))


def test_questionable_nodes_are_pinged_and_a_bad_one_replaced():
    t = RoutingTable(OWN)
    for i in range(8):
        t.heard_from(top(i), addr(i), 0.0, responded=True)
    t.heard_from(nid(1), addr(99), 0.0, responded=True)  # splits: the far bucket is full
    later = GOOD_FOR + 1
    pings = t.heard_from(top(8), addr(8), later, responded=True)
    assert {n.id for n in pings} == {top(i) for i in range(8)}  # all questionable now
    assert t.get(top(8)) is None
    t.failed(top(3), later)
    assert t.get(top(3)) is not None  # one failure: not bad yet
    t.failed(top(3), later)
    assert t.get(top(3)) is None and t.get(top(8)) is not None  # replaced


def test_good_questionable_bad_by_time():
    t = RoutingTable(OWN)
    t.heard_from(top(1), addr(1), 100.0, responded=True)
    n = t.get(top(1))
    assert n.good(100.0 + GOOD_FOR - 1) and not n.good(100.0 + GOOD_FOR)
    assert t.questionable(100.0 + GOOD_FOR) == [n]
    t.heard_from(top(1), addr(1), 2000.0, responded=False)  # a query from it refreshes
    assert n.good(2000.0)
    t.failed(top(1), 2001.0)
    t.failed(top(1), 2002.0)
    assert n.bad and t.closest(top(1)) == []
    t.heard_from(top(1), addr(1), 2003.0, responded=True)  # it answers again
    assert not n.bad and t.closest(top(1)) == [n]


def test_a_stranger_that_queries_waits_to_be_verified():
    t = RoutingTable(OWN)
    pings = t.heard_from(top(1), addr(1), 0.0, responded=False)
    assert [p.id for p in pings] == [top(1)] and len(t) == 0
    t.heard_from(top(1), addr(1), 0.5, responded=True)
    assert len(t) == 1


def test_one_id_per_address_and_never_our_own():
    t = RoutingTable(OWN)
    t.heard_from(top(1), addr(1), 0.0, responded=True)
    t.heard_from(top(2), addr(1), 0.0, responded=True)
    t.heard_from(top(1), addr(2), 0.0, responded=True)
    t.heard_from(OWN, addr(3), 0.0, responded=True)
    assert [(n.id, n.addr) for n in t.nodes()] == [(top(1), addr(1))]


def test_closest_by_xor_and_stale_buckets():
    t = RoutingTable(OWN)
    ids = [nid(x) for x in (1, 2, 3, 0x100, 0x1000, 1 << 100, 1 << 159)]
    for i, x in enumerate(ids):
        t.heard_from(x, addr(i), 0.0, responded=True)
    target = nid(3)
    got = [n.id for n in t.closest(target, 3)]
    assert got == sorted(ids, key=lambda x: distance(x, target))[:3] == [nid(3), nid(2), nid(1)]
    assert t.stale_buckets(10.0) == []
    assert t.stale_buckets(15 * 60.0) == [(b.lo, b.hi) for b in t.buckets]
    t.touch(target, 15 * 60.0)
    assert len(t.stale_buckets(15 * 60.0)) == len(t.buckets) - 1


def test_random_id_in_range():
    assert random_id_in(16, 32, b"\xff" * 20) == nid(16 + (2 ** 160 - 1) % 16)
    assert int.from_bytes(random_id_in(0, 1 << 160, bytes(20)), "big") == 0


@settings(max_examples=60)
@given(st.binary(min_size=20, max_size=20),
       st.lists(st.tuples(st.binary(min_size=20, max_size=20), st.integers(0, 300),
                          st.sampled_from(["resp", "query", "fail"]), st.floats(0, 5000)),
                max_size=400))
def test_invariants_under_any_traffic(own, events):
    t = RoutingTable(own)
    for node_id, a, what, now in events:
        if what == "fail":
            t.failed(node_id, now)
        else:
            t.heard_from(node_id, addr(a), now, responded=what == "resp")
    spans = [(b.lo, b.hi) for b in t.buckets]
    assert spans[0][0] == 0 and spans[-1][1] == 1 << 160
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert len(t.buckets) <= 160
    seen_ids, seen_addrs = set(), set()
    for b in t.buckets:
        assert len(b.nodes) <= 8 and len(b.replacements) <= 8
        for n in b.nodes:
            assert b.covers(int.from_bytes(n.id, "big")) and n.id != own
            assert n.last_response is not None  # only verified nodes
            assert n.id not in seen_ids and n.addr not in seen_addrs
            seen_ids.add(n.id)
            seen_addrs.add(n.addr)
