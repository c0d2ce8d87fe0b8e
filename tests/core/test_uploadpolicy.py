"""core/uploadpolicy.py: which queued request an uploader answers next."""

from collections import deque

from torrentfs.core.uploadpolicy import (
    ANNOUNCED_GRACE,
    HOLD_SECONDS,
    IDLE_HOLD_SECONDS,
    Rounds,
    best_request,
    next_batch,
)
from torrentfs.core.wire import Request


def reqs(*indices):
    return [Request(i, 0, 16384) for i in indices]


def test_nothing_queued_gives_none():
    assert best_request([], "a", {}, {}, 0.0) is None


def test_the_least_uploaded_piece_goes_first_oldest_among_equals():
    sent = {1: 3, 2: 1, 3: 1}
    assert best_request(reqs(1, 2, 3), "a", sent, {}, 0.0) == (1, False)
    # a piece never sent wins at once
    assert best_request(reqs(1, 4, 2), "a", sent, {}, 0.0) == (1, False)


def test_a_piece_just_sent_to_another_peer_is_held_for_hold_seconds():
    last = {5: ("b", 10.0)}
    sent = {5: 1, 6: 4}
    # 5 was sent less often but just went to b: 6 goes first
    assert best_request(reqs(5, 6), "a", sent, last, 10.5) == (1, False)
    # to the same peer it is not held
    assert best_request(reqs(5, 6), "b", sent, last, 10.5) == (0, False)
    # after the hold it is the least uploaded again
    assert best_request(reqs(5, 6), "a", sent, last, 10.0 + HOLD_SECONDS) == (0, False)
    # only held requests: the best of them, marked held
    assert best_request(reqs(5), "a", sent, last, 10.5) == (0, True)


def test_repeated_index_runs_keep_the_oldest_request():
    sent = {7: 0}
    assert best_request(reqs(8, 8, 7, 7), "a", {8: 2, **sent}, {}, 0.0) == (2, False)


def test_a_batch_gives_one_new_piece_to_one_peer_and_others_a_different_one():
    # a, b and c all ask for piece 5 first (reading in step), b and c also for 6
    # and 7: 5 goes to a only; b gets 6 and c gets 7 in the same batch.
    asking = [("a", [R(5)], True), ("b", [R(5), R(6)], True), ("c", [R(5), R(6), R(7)], True)]
    assert next_batch(asking, {}, {}, now=10.0) == [("a", 0), ("b", 1), ("c", 2)]


def test_a_batch_with_nothing_fresh_sends_the_held_so_the_uplink_does_not_idle():
    # The rule without an idle hold (a super-seeding origin's, whose sparing then
    # refuses what another peer has: core/sparing).
    asking = [("a", [R(5)], True), ("b", [R(5)], True)]
    # 5 is fresh: it goes to a, and b's request waits (a fresh piece went out) ...
    assert next_batch(asking, {}, {}, now=10.0, idle_hold=0.0) == [("a", 0)]
    # ... but when 5 has just gone to someone else and nobody asks for anything
    # fresh, both go rather than leave the uplink idle
    assert next_batch(asking, {5: 1}, {5: ("x", 9.5)}, now=10.0,
                      idle_hold=0.0) == [("a", 0), ("b", 0)]
    # and once the hold is over nothing is held
    assert next_batch(asking, {5: 1}, {5: ("x", 0.0)}, now=10.0, idle_hold=0.0) == [("a", 0)]


def test_a_batch_holds_while_a_busy_peer_asks_for_a_fresh_piece():
    asking = [("a", [R(5)], True), ("c", [R(7)], False)]
    assert next_batch(asking, {5: 1}, {5: ("x", 9.5)}, now=10.0) == []
    assert next_batch([("a", [R(5)], True)], {5: 1}, {5: ("x", 9.5)}, now=10.0,
                      idle_hold=0.0) == [("a", 0)]
    assert next_batch([], {}, {}, now=0.0) == []


def test_with_nothing_fresh_a_held_request_waits_the_idle_hold_then_goes():
    """The origin's second copies: a piece that just went to x is asked for by a
    and b, and nobody asks for a fresh one. They wait IDLE_HOLD_SECONDS (x
    announces it meanwhile, and a and b cancel here to take it there); then the
    uplink would idle, so one goes, and the round holds the other for it."""
    asking = [("a", [R(5)], True), ("b", [R(5)], True)]
    assert next_batch(asking, {5: 1}, {5: ("x", 9.5)}, now=9.5 + IDLE_HOLD_SECONDS / 2) == []
    assert next_batch(asking, {5: 1}, {5: ("x", 9.5)},
                      now=9.5 + IDLE_HOLD_SECONDS) == [("a", 0)]
    # Past the idle hold but within the hold, fresh requests still come first.
    busy = [("a", [R(5)], True), ("c", [R(7)], False)]
    assert next_batch(busy, {5: 1}, {5: ("x", 9.5)}, now=9.5 + IDLE_HOLD_SECONDS) == []


def test_a_round_that_leaves_held_requests_waiting_says_when_the_first_may_go():
    rounds = Rounds()
    rounds.sent = {5: 1, 6: 1}
    rounds.last_sent = {5: ("x", 10.0 - IDLE_HOLD_SECONDS / 4),
                        6: ("y", 10.0 - IDLE_HOLD_SECONDS / 2)}
    fifo = deque([R(5), R(6)])
    assert rounds.batch([("a", fifo, _All(), 16384)], now=10.0) == []
    assert rounds.wake_at == 10.0 + IDLE_HOLD_SECONDS / 2 and list(fifo) == [R(5), R(6)]
    [(peer, req, _)] = rounds.batch([("a", fifo, _All(), 16384)], now=rounds.wake_at)
    assert (peer, req) == ("a", R(6)) and rounds.wake_at is None
    # A round that leaves nothing waiting so (here: a fresh piece asked) says None.
    rounds.batch([("a", fifo, _All(), 16384), ("c", deque([R(7)]), _All(), 0)], now=10.1)
    assert rounds.wake_at is None


def test_with_nothing_fresh_a_held_piece_past_its_idle_hold_goes_before_one_within_it():
    # 5 went out once, just now, to x; 6 twice, but longer ago: 6 goes, 5 waits.
    sent, last = {5: 1, 6: 2}, {5: ("x", 9.9), 6: ("x", 10.0 - IDLE_HOLD_SECONDS)}
    assert next_batch([("a", [R(5), R(6)], True)], sent, last, now=10.0) == [("a", 1)]


def test_without_an_idle_hold_nothing_waits_for_one():
    rounds = Rounds(idle_hold=0.0)
    rounds.sent, rounds.last_sent = {5: 1}, {5: ("x", 9.9)}
    assert len(rounds.batch([("a", deque([R(5)]), _All(), 16384)], now=10.0)) == 1
    assert rounds.wake_at is None


def test_an_announced_piece_is_held_idle_no_longer_than_the_grace():
    """x announced 5 (its HAVE reached us, and a, at once): had a been able to
    fetch it there, it would have cancelled here within the grace; it still asks,
    so it goes."""
    rounds = Rounds()
    rounds.sent, rounds.last_sent = {5: 1}, {5: ("x", 10.0)}
    fifo = deque([R(5)])
    assert rounds.batch([("a", fifo, _All(), 16384)], now=10.2) == []
    assert rounds.wake_at == 10.0 + IDLE_HOLD_SECONDS and rounds.waiting == {5}
    assert not rounds.announced("x", 6, 10.3)  # nothing waits for 6
    assert rounds.announced("x", 5, 10.3)  # a wait for 5: a round is due
    assert rounds.batch([("a", fifo, _All(), 16384)], now=10.3) == []
    assert rounds.wake_at == 10.3 + ANNOUNCED_GRACE < 10.0 + IDLE_HOLD_SECONDS
    rounds.announced("y", 5, 10.35)  # the first announcement counts
    assert rounds.heard[5] == 10.3
    assert len(rounds.batch([("a", fifo, _All(), 16384)], now=10.3 + ANNOUNCED_GRACE)) == 1


def test_a_piece_announced_long_before_it_went_out_again_is_not_held_idle():
    # a did not fetch 5 from the peer that announced it long ago (choked there):
    # with nothing fresh asked it need not wait for x, which just got it too.
    rounds = Rounds()
    rounds.sent, rounds.last_sent, rounds.heard = {5: 2}, {5: ("x", 10.0)}, {5: 3.0}
    assert len(rounds.batch([("a", deque([R(5)]), _All(), 16384)], now=10.01)) == 1


class _All:
    def __contains__(self, key):
        return True


def R(index):
    return Request(index, 0, 16384)


def B(index, block):
    return Request(index, block * 16384, 16384)


def test_a_piece_begun_for_a_peer_is_finished_before_another_begins():
    """Under a token bucket a round's blocks go out one after another: a round that
    gave every asker a block would move each asker's piece along together, so
    none is whole (and announced, so the next hop can start) until all are."""
    rounds = Rounds()
    a = deque([B(5, 0), B(5, 1), B(5, 2)])
    b = deque([B(6, 0), B(6, 1)])
    c = deque([B(7, 0)])
    asking = [("a", a, _All(), 16384), ("b", b, _All(), 16384), ("c", c, _All(), 16384)]
    # nothing begun yet: one fresh piece for each asker, as before
    assert [(p, r.index, r.begin) for p, r, _ in rounds.batch(asking, 10.0)] == [
        ("a", 5, 0), ("b", 6, 0), ("c", 7, 0)]
    assert rounds.begun == {5: ("a", 10.0), 6: ("b", 10.0), 7: ("c", 10.0)}
    # c asks for a new piece; the pieces begun go on, the one begun first alone, in
    # its peer's queue order while its room lasts
    c.append(B(8, 0))
    asking[0] = ("a", a, _All(), 2 * 16384)
    assert [(p, r.index, r.begin) for p, r, _ in rounds.batch(asking, 10.1)] == [
        ("a", 5, 16384), ("a", 5, 32768)]
    assert [(p, r.index, r.begin) for p, r, _ in rounds.batch(asking, 10.2)] == [
        ("b", 6, 16384)]
    # nothing begun is asked for any more: the round is as before
    assert [(p, r.index, r.begin) for p, r, _ in rounds.batch(asking, 10.3)] == [
        ("c", 8, 0)]


def test_a_begun_piece_goes_on_only_for_the_peer_it_was_begun_for_and_with_room():
    rounds = Rounds()
    rounds.begun = {5: ("a", 1.0), 6: ("b", 2.0)}
    rounds.sent = {5: 1, 6: 1}
    a, b = deque([B(5, 1)]), deque([B(6, 1), B(7, 0)])
    # a's socket is full: b's begun piece goes on, and nothing else starts
    batch = rounds.batch([("a", a, _All(), 0), ("b", b, _All(), 16384)], 3.0)
    assert [(p, r.index, r.begin) for p, r, _ in batch] == [("b", 6, 16384)]
    # a block of a piece begun for another peer is no continuation: a fresh round
    c = deque([B(5, 2), B(9, 0)])
    batch = rounds.batch([("c", c, _All(), 16384)], 3.0)
    assert [(p, r.index, r.begin) for p, r, _ in batch] == [("c", 9, 0)]


def test_an_untaken_first_block_leaves_the_piece_begun_as_it_was():
    rounds = Rounds()
    rounds.begun = {5: ("x", 1.0)}
    prev = rounds.taken("a", B(5, 0), 2.0)
    assert rounds.begun[5] == ("a", 2.0)
    rounds.untaken("a", B(5, 0), prev)
    assert rounds.begun == {5: ("x", 1.0)}
    prev = rounds.taken("a", B(6, 0), 2.0)
    rounds.untaken("a", B(6, 0), prev)
    assert 6 not in rounds.begun
