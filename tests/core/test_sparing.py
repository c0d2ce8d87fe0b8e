"""core/sparing: an origin refuses a piece it sent before that another peer has,
unless the asker keeps asking for the grace period."""

from torrentfs.core.sparing import GRACE_SECONDS, Sparing


def test_a_piece_nobody_else_has_is_served():
    sp = Sparing()
    assert sp.serve("a", 0, sent=0, others_have=0, now=0.0)
    assert sp.serve("b", 0, sent=1, others_have=0, now=0.1)   # sent, not announced yet
    assert sp.serve("b", 1, sent=0, others_have=3, now=0.1)   # others have it: first copy
    assert sp.refusals == 0


def test_a_piece_sent_before_that_another_peer_has_is_refused():
    sp = Sparing()
    assert not sp.serve("b", 0, sent=1, others_have=1, now=0.0)
    assert not sp.serve("b", 0, sent=1, others_have=1, now=GRACE_SECONDS - 0.1)
    assert sp.refusals == 2


def test_a_peer_still_asking_after_the_grace_is_served():
    sp = Sparing(grace=3.0)
    assert not sp.serve("b", 0, 1, 2, now=10.0)
    assert not sp.serve("b", 0, 1, 2, now=12.0)
    assert sp.serve("b", 0, 1, 2, now=13.0)        # it finds it nowhere else
    assert not sp.serve("b", 0, 1, 2, now=13.5)    # a new refusal starts afresh
    assert not sp.serve("c", 0, 1, 2, now=13.5)    # per peer


def test_forget_and_prune_drop_old_refusals():
    sp = Sparing(grace=3.0)
    sp.serve("b", 0, 1, 1, now=0.0)
    sp.serve("c", 0, 1, 1, now=0.0)
    sp.forget("b")
    assert not sp.serve("b", 0, 1, 1, now=2.9)     # refused anew: its clock restarted
    sp.prune(7.0)                                  # both older than 2 x grace... c's is
    assert ("c", 0) not in sp._refused
    assert not sp.serve("c", 0, 1, 1, now=7.0)     # so c's grace restarts too
    assert sp.serve("c", 0, 1, 1, now=10.0)
