"""The disk cache's books (torrentfs.cache): least recently read first, unread pieces
after read ones, pins never evicted, reservations counted. No I/O."""

import pytest

from torrentfs.core.cache import PieceCache

K = 1024


def filled(limit, pieces, size=K):
    c = PieceCache(limit)
    for i in pieces:
        c.reserve(i, size)
    return c


def test_no_limit_never_evicts():
    c = filled(None, range(100))
    assert c.used == 100 * K
    assert c.victims(10 ** 9) == []


def test_least_recently_read_goes_first():
    c = filled(4 * K, range(4))
    for i in (2, 0, 3, 1):
        c.read(i)
    c.reserve(4, K)  # over the limit by one piece
    assert c.victims() == [2]
    assert c.used == 4 * K and 2 not in c and len(c) == 4


def test_room_is_made_before_a_write():
    c = filled(4 * K, range(4))
    for i in range(4):
        c.read(i)
    assert c.victims(extra=2 * K) == [0, 1]
    assert c.used == 2 * K


def test_read_pieces_go_before_unread_ones():
    """A piece stored but not read yet (readahead) is kept over one already read,
    even one read after the unread piece was stored."""
    c = filled(3 * K, [0, 1, 2])
    c.read(2)
    c.read(0)
    assert c.victims(extra=K) == [2]
    assert c.victims(extra=2 * K) == [0]
    assert c.victims(extra=3 * K) == [1]  # then unread ones, oldest stored first


def test_reading_again_moves_to_the_back():
    c = filled(2 * K, [0, 1])
    c.read(0)
    c.read(1)
    c.read(0)
    assert c.victims(extra=K) == [1]


def test_pinned_pieces_are_never_victims():
    c = filled(2 * K, [0, 1, 2])
    for i in range(3):
        c.read(i)
    c.pin(0)
    c.pin(0)
    c.unpin(0)  # pins nest: still pinned once
    assert c.pinned(0)
    assert c.victims() == [1]
    c.pin(2)
    assert c.victims(extra=2 * K) == []  # all that is left is pinned: over the limit
    assert c.used == 2 * K
    c.unpin(0)
    assert not c.pinned(0)
    assert c.victims(extra=K) == [0]


def test_removed_and_re_reserved_count_once():
    c = filled(None, [0, 1], size=3 * K)
    c.reserve(1, 3 * K)
    assert c.used == 6 * K
    c.removed(0)
    c.removed(0)
    c.removed(7)
    assert c.used == 3 * K and 0 not in c
    c.read(7)  # not stored: nothing happens
    assert 7 not in c


def test_limit_override_frees_space_on_a_full_disk():
    c = filled(None, range(4))
    for i in range(4):
        c.read(i)
    assert c.victims(limit=c.used - 2 * K) == [0, 1]


@pytest.mark.parametrize("limit", [K, 5 * K, 16 * K])
def test_used_stays_within_the_limit_under_a_stream(limit):
    """A sequential reader through a cache smaller than the file: after each store
    and read, the books never exceed the limit and the piece just read is kept."""
    c = PieceCache(limit)
    evicted = []
    for i in range(200):
        c.pin(i)
        evicted += c.victims(extra=K)
        c.reserve(i, K)
        c.read(i)
        c.unpin(i)
        assert c.used <= limit and i in c
    assert sorted(evicted) == list(range(200 - limit // K))
