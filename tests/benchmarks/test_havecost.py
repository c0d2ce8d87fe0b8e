"""benchmarks/havecost: it runs, and a peer that has a piece is not told of it (a
HAVE to each of half the peers costs less than to all of them)."""

from __future__ import annotations

from benchmarks import havecost


def test_it_measures_both_paths():
    r = havecost.measure(pieces=64, peers=4)
    assert r["announce_us_per_piece"] > 0 and r["got_haves_us_per_have"] > 0


def test_peers_that_have_the_piece_are_not_told():
    t = havecost._Torrent(8, 3)
    lacking, having, _ = t.sessions.values()
    t.picker.got_have(having, 0)
    havecost.HaveBatcher(t).announce(0)
    assert len(lacking.out) == 1 and having.out == []
