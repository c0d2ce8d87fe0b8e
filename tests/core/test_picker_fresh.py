"""A HAVE ends only its sender's dry spell, and only for the piece it names: the
sender's next pick looks at the pieces it announced since, not at every wanted
one (a cluster's peers each send a HAVE every few milliseconds at a trickle).
That such picks hand out what a full walk would is the twin property test in
test_picker.py (test_remembering_dry_picks_changes_no_pick)."""

from __future__ import annotations

from tests.core.test_picker import make, order, peer_with
from torrentfs.core.picker import NOW, READAHEAD


def _dry_pair():
    """Peers a and c; a was asked for every block of the wanted pieces it has, c
    has none of them: both picks are dry."""
    p = make("000000", blocks=2)
    peer_with(p, "a", "110000")
    peer_with(p, "c", "000000")
    p.raise_priority("r", range(4), READAHEAD, 1.0)
    assert order(p.pick("a", 0.0, 10)) == [0, 1]
    assert p.pick("a", 0.0, 10) == [] and p.pick("c", 0.0, 10) == []
    assert p.dry("a") and p.dry("c")
    return p


def test_a_have_of_a_wanted_piece_lets_its_sender_alone_pick_it():
    p = _dry_pair()
    p.got_have("c", 3)
    assert p.dry("a") and not p.dry("c")  # a's pick would find nothing new
    assert order(p.pick("c", 0.0, 1)) == [3]  # limited: the rest of 3 is still free
    assert order(p.pick("c", 0.0, 10)) == [3]
    assert p.pick("c", 0.0, 10) == [] and p.dry("c")


def test_announced_pieces_are_picked_in_order_of_urgency():
    p = _dry_pair()
    p.raise_priority("w", [2], NOW, 5.0)  # a raise: a full walk, c has nothing
    assert p.pick("c", 0.0, 10) == [] and p.dry("c")
    for i in (3, 2):
        p.got_have("c", i)
    assert order(p.pick("c", 0.0, 10)) == [2, 3]


def test_a_have_of_an_unwanted_or_had_piece_keeps_the_sender_dry():
    p = make("100000", blocks=2)
    peer_with(p, "c", "000000")
    p.raise_priority("r", [1], READAHEAD, 1.0)
    assert p.pick("c", 0.0, 10) == [] and p.dry("c")
    p.got_have("c", 0)  # had
    p.got_have("c", 4)  # not wanted
    assert p.dry("c") and p.pick("c", 0.0, 10) == []
    p.got_have("c", 1)
    assert order(p.pick("c", 0.0, 10)) == [1]


def test_a_sender_that_becomes_a_seed_ends_every_dry_spell():
    p = make("00", blocks=2)
    peer_with(p, "l", "10")
    peer_with(p, "s", "11")  # a seed spares piece 0 to the leecher
    p.raise_priority("r", [0], READAHEAD, 1.0)
    assert p.pick("s", 0.0, 10) == [] and p.dry("s")
    p.got_have("l", 1)  # l is a seed now: nobody to spare it for
    assert not p.dry("s")
    assert order(p.pick("s", 0.0, 10)) == [0]


def test_a_full_walk_with_avoid_drops_the_mark_it_cannot_keep():
    p = _dry_pair()
    p.got_have("c", 3)
    assert p.pick("c", 0.0, 10, avoid={3}) == []  # a full walk, 3 held back
    assert order(p.pick("c", 0.0, 10)) == [3]  # no longer dry: 3 is picked
