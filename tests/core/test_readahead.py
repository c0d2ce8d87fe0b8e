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
