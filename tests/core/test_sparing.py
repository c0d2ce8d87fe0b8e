"""core/sparing: an origin refuses a piece it already sent to another peer, unless
the asker keeps asking for the grace period."""

from torrentfs.core.sparing import GRACE_SECONDS, Sparing


def test_a_piece_sent_to_nobody_yet_is_served():
    sp = Sparing()
    assert sp.serve("a", 0, now=0.0)
    assert sp.serve("b", 1, now=0.0)
    assert sp.refusals == 0


def test_a_piece_sent_to_another_peer_is_refused_and_its_taker_served():
    sp = Sparing()
    sp.sent("a", 0)
    assert not sp.serve("b", 0, now=0.0)
    assert not sp.serve("b", 0, now=GRACE_SECONDS - 0.1)
    assert sp.serve("a", 0, now=0.5)      # the rest of it, to the one that has some
    assert sp.refusals == 2


def test_a_peer_still_asking_after_the_grace_is_served_and_becomes_a_taker():
    sp = Sparing(grace=3.0)
    sp.sent("a", 0)
    assert not sp.serve("b", 0, now=10.0)
    assert not sp.serve("b", 0, now=12.0)
    assert sp.serve("b", 0, now=13.0)       # it finds it nowhere else
    sp.sent("b", 0)
    assert sp.serve("b", 0, now=13.5)       # the rest of the piece
    assert not sp.serve("c", 0, now=13.5)   # per peer


def test_the_grace_once_given_holds_for_a_second_look():
    """The uploader asks again after waiting for its rate limit (engine/upload.py
    checks a request when it takes it and when it sends it): the answer must not
    change. Before, the grace was spent by the first look and the second refused
    anew, so behind a rate limit a piece whose only taker was choked mid-piece was
    refused to everyone for good (a real 32-node cluster's reads timed out)."""
    sp = Sparing(grace=3.0)
    sp.sent("a", 0)
    assert not sp.serve("b", 0, now=0.0)
    assert sp.serve("b", 0, now=3.0)
    assert sp.serve("b", 0, now=3.0)        # the same request, sent after the wait
    assert sp.serve("b", 0, now=3.2)        # and the rest of the piece
    assert not sp.serve("c", 0, now=3.2)    # still per peer


def test_forget_drops_a_peers_refusals_and_takes():
    sp = Sparing(grace=3.0)
    sp.sent("a", 0)
    sp.serve("b", 0, now=0.0)
    sp.forget("b")
    assert not sp.serve("b", 0, now=2.9)    # refused anew: its clock restarted
    sp.forget("a")                          # the only taker left
    assert sp.serve("c", 0, now=3.0)


def test_prune_drops_refusals_of_peers_that_stopped_asking():
    sp = Sparing(grace=3.0)
    sp.sent("a", 0)
    sp.serve("c", 0, now=0.0)
    sp.prune(7.0)
    assert ("c", 0) not in sp._refused
    assert not sp.serve("c", 0, now=7.0)    # so c's grace restarts
    assert sp.serve("c", 0, now=10.0)
