"""The readahead window: grows on contiguous reads, restarts on a seek. Pure."""

import pytest

from torrentfs.core.readahead import Readahead

M = 1 << 20


def test_first_read_gets_the_minimum_window_after_it():
    r = Readahead(2 * M, 16 * M)
    assert r.advance(0, 4096) == (4096, 2 * M)
    assert not r.sequential


def test_a_first_read_in_the_middle_gets_none_until_a_read_continues_it():
    r = Readahead(2 * M, 16 * M)
    assert r.advance(5 * M, 4096) == (5 * M + 4096, 0)  # a random reader, maybe
    assert not r.sequential
    assert r.advance(5 * M + 4096, 4096) == (5 * M + 8192, 2 * M)  # a stream after all
    assert r.advance(5 * M + 8192, 4096) == (5 * M + 12288, 4 * M)
    r = Readahead(2 * M, 16 * M)
    r.advance(5 * M, 4096)
    assert r.advance(9 * M, 4096) == (9 * M + 4096, 2 * M)  # then a seek, as ever


def test_contiguous_reads_double_up_to_the_maximum():
    r = Readahead(2 * M, 16 * M)
    pos, windows = 0, []
    for _ in range(6):
        start, length = r.advance(pos, M)
        pos += M
        assert start == pos
        windows.append(length)
    assert windows == [2 * M, 4 * M, 8 * M, 16 * M, 16 * M, 16 * M]
    assert r.sequential


def test_a_seek_restarts_the_window_at_the_new_place():
    r = Readahead(2 * M, 16 * M)
    for i in range(4):
        r.advance(i * M, M)
    assert r.advance(100 * M, 4096) == (100 * M + 4096, 2 * M)
    assert r.advance(100 * M + 4096, 4096) == (100 * M + 8192, 4 * M)


def test_backwards_read_is_a_seek():
    r = Readahead(M, 8 * M)
    r.advance(0, M)
    r.advance(M, M)
    assert r.advance(0, M) == (M, M)


@pytest.mark.parametrize("lo, hi", [(0, 1), (2, 1), (-1, 5)])
def test_bad_bounds(lo, hi):
    with pytest.raises(ValueError):
        Readahead(lo, hi)


def test_pace_restarts_the_window_at_twice_the_last_read():
    r = Readahead(2 * M, 16 * M)
    assert r.advance(0, 65536) == (65536, 2 * M)
    assert r.pace(65536) == (65536, 131072)  # the first read came fast: its pace
    assert not r.sequential
    windows = []
    pos = 65536
    for size in (131072, 262144, 262144, 262144, 262144, 262144, 262144, 262144):
        windows.append(r.advance(pos, size)[1])
        pos += size
        assert r.sequential  # contiguous reads grow it, though under the minimum
    assert windows == [262144, 524288, M, 2 * M, 4 * M, 8 * M, 16 * M, 16 * M]
    assert r.advance(100 * M, 4096) == (100 * M + 4096, 2 * M)  # a seek: the minimum
    assert r.pace(4096) == (100 * M + 4096, 8192)
    assert r.pace(M) == (100 * M + 4096, 8192)  # never larger than it is


def test_pace_keeps_no_window_for_a_lone_read_in_the_middle():
    r = Readahead(2 * M, 16 * M)
    r.advance(5 * M, 4096)
    assert r.pace(4096) == (5 * M + 4096, 0)
    with pytest.raises(ValueError):
        Readahead(M, 2 * M).pace(4096)  # no read yet


def test_a_window_at_its_maximum_is_not_growing():
    r = Readahead(2 * M, 2 * M)
    r.advance(0, M)
    r.advance(M, M)
    assert not r.sequential  # as before: only a window that grew says so
