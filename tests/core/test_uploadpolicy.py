"""core/uploadpolicy.py: which queued request an uploader answers next."""

from torrentfs.core.uploadpolicy import HOLD_SECONDS, best_request
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
