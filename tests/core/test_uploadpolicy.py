"""core/uploadpolicy.py: which queued request an uploader answers next."""

from torrentfs.core.uploadpolicy import HOLD_SECONDS, best_request, next_batch
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
    asking = [("a", [R(5)], True), ("b", [R(5)], True)]
    # 5 is fresh: it goes to a, and b's request waits (a fresh piece went out) ...
    assert next_batch(asking, {}, {}, now=10.0) == [("a", 0)]
    # ... but when 5 has just gone to someone else and nobody asks for anything
    # fresh, both go rather than leave the uplink idle
    assert next_batch(asking, {5: 1}, {5: ("x", 9.5)}, now=10.0) == [("a", 0), ("b", 0)]
    # and once the hold is over nothing is held
    assert next_batch(asking, {5: 1}, {5: ("x", 0.0)}, now=10.0) == [("a", 0)]


def test_a_batch_holds_while_a_busy_peer_asks_for_a_fresh_piece():
    asking = [("a", [R(5)], True), ("c", [R(7)], False)]
    assert next_batch(asking, {5: 1}, {5: ("x", 9.5)}, now=10.0) == []
    assert next_batch([("a", [R(5)], True)], {5: 1}, {5: ("x", 9.5)}, now=10.0) == [("a", 0)]
    assert next_batch([], {}, {}, now=0.0) == []


def R(index):
    return Request(index, 0, 16384)
