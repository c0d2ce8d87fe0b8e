"""Announce tokens (rotated every 5 min, valid 10) and the bounded peer store."""

from hypothesis import given, settings
from hypothesis import strategies as st

from torrentfs.core.dht.store import PEER_TTL, PeerStore, Tokens

IH = b"\x01" * 20


def test_token_valid_for_its_ip_through_one_rotation():
    t = Tokens(b"s1", 0.0)
    tok = t.token_for("10.0.0.1")
    assert t.valid(tok, "10.0.0.1") and not t.valid(tok, "10.0.0.2")
    assert not t.due(299.0) and t.due(300.0)
    t.rotate(b"s2", 300.0)
    assert t.valid(tok, "10.0.0.1")  # the previous secret still counts
    assert t.token_for("10.0.0.1") != tok
    t.rotate(b"s3", 600.0)
    assert not t.valid(tok, "10.0.0.1")
    assert not t.valid(b"", "10.0.0.1") and not t.valid(b"x" * 8, "10.0.0.1")
    assert t.valid(Tokens(b"s", 0).token_for("::1"), "::1") is False  # another secret
    v6 = Tokens(b"s", 0)
    assert v6.valid(v6.token_for("2001:db8::1"), "2001:db8::1")


def test_peers_newest_first_expire_and_refresh():
    s = PeerStore()
    s.announce(IH, ("1.1.1.1", 1), 0.0)
    s.announce(IH, ("2.2.2.2", 2), 10.0)
    assert s.get(IH, 20.0) == [("2.2.2.2", 2), ("1.1.1.1", 1)]
    s.announce(IH, ("1.1.1.1", 1), 30.0)  # re-announced: fresh again
    assert s.get(IH, PEER_TTL + 15.0) == [("1.1.1.1", 1)]
    assert s.get(IH, PEER_TTL + 30.0) == []
    assert s.get(b"\x02" * 20, 0.0) == []


def test_bounded():
    s = PeerStore(max_torrents=3, max_peers=4)
    for i in range(10):
        s.announce(bytes([i]) * 20, ("1.1.1.1", i), float(i))
    for p in range(10):
        s.announce(bytes([9]) * 20, ("2.2.2.2", p + 100), 20.0)
    assert s.get(bytes([0]) * 20, 21.0) == []  # the least recently announced went
    assert s.get(bytes([8]) * 20, 21.0) == [("1.1.1.1", 8)]
    assert len(s.get(bytes([9]) * 20, 21.0, n=100)) == 4
    assert s.get(bytes([9]) * 20, 21.0, n=2) == [("2.2.2.2", 109), ("2.2.2.2", 108)]


@settings(max_examples=100)
@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 50), st.floats(0, 1e4)),
                max_size=300))
def test_memory_bounded_under_any_announces(events):
    s = PeerStore(max_torrents=5, max_peers=7)
    for h, p, now in events:
        s.announce(bytes([h]) * 20, ("3.3.3.3", p), now)
    assert len(s) <= 35
