"""Tests for torrentfs.geometry: piece, block and file arithmetic at every edge."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentfs.core.bitfield import Bitfield
from torrentfs.core.geometry import BLOCK_SIZE, Geometry, Span

B = BLOCK_SIZE


def brute_spans(g: Geometry, start: int, length: int) -> list[Span]:
    """Reference implementation: walk byte by byte (only for small geometries)."""
    out: list[Span] = []
    for pos in range(start, start + length):
        # the file holding byte pos: the one non-empty file whose range covers it
        for i, (off, n) in enumerate(zip(g.file_offsets, g.file_lengths)):
            if off <= pos < off + n:
                break
        else:  # pragma: no cover
            raise AssertionError("byte in no file")
        if out and out[-1].file_index == i:
            s = out[-1]
            out[-1] = Span(s.file_index, s.file_offset, s.stream_offset, s.length + 1)
        else:
            out.append(Span(i, pos - off, pos, 1))
    return out


# -- construction ------------------------------------------------------------------


def test_offsets_total_and_num_pieces():
    g = Geometry(100, (10, 0, 250, 40))
    assert g.file_offsets == (0, 10, 10, 260)
    assert g.total_length == 300
    assert g.num_pieces == 3


@pytest.mark.parametrize("piece_length", [0, -1])
def test_bad_piece_length(piece_length):
    with pytest.raises(ValueError):
        Geometry(piece_length, (10,))


def test_bad_block_size_and_negative_file():
    with pytest.raises(ValueError):
        Geometry(10, (10,), block_size=0)
    with pytest.raises(ValueError):
        Geometry(10, (10, -1))


def test_empty_stream():
    g = Geometry(B, ())
    assert g.total_length == 0 and g.num_pieces == 0
    assert g.pieces_in_range(0, 10) == range(0)
    assert list(g.spans(0, 0)) == []
    with pytest.raises(IndexError):
        g.piece_size(0)
    with pytest.raises(ValueError):
        g.piece_at(0)


def test_only_zero_length_files():
    g = Geometry(B, (0, 0))
    assert g.total_length == 0 and g.num_pieces == 0
    assert g.file_pieces(0) == range(0) and g.file_pieces(1) == range(0)


# -- pieces ------------------------------------------------------------------------


def test_short_last_piece():
    g = Geometry(4 * B, (10 * B + 5,))
    assert g.num_pieces == 3
    assert [g.piece_size(i) for i in range(3)] == [4 * B, 4 * B, 2 * B + 5]
    assert [g.piece_offset(i) for i in range(3)] == [0, 4 * B, 8 * B]


def test_total_exact_multiple_of_piece_length():
    g = Geometry(4 * B, (12 * B,))
    assert g.num_pieces == 3
    assert g.piece_size(2) == 4 * B
    assert g.piece_at(12 * B - 1) == 2
    with pytest.raises(IndexError):
        g.piece_size(3)


def test_single_piece_smaller_than_a_block():
    g = Geometry(4 * B, (1,))
    assert g.num_pieces == 1
    assert g.piece_size(0) == 1
    assert g.blocks(0) == [(0, 1)]
    assert g.num_blocks(0) == 1


@pytest.mark.parametrize("index", [-1, 3, 100])
def test_piece_out_of_range(index):
    g = Geometry(4 * B, (10 * B,))
    with pytest.raises(IndexError):
        g.piece_size(index)
    with pytest.raises(IndexError):
        g.piece_offset(index)
    with pytest.raises(IndexError):
        g.num_blocks(index)
    with pytest.raises(IndexError):
        g.blocks(index)
    with pytest.raises(IndexError):
        g.piece_spans(index)


def test_piece_at_edges():
    g = Geometry(100, (250,))
    assert g.piece_at(0) == 0
    assert g.piece_at(99) == 0
    assert g.piece_at(100) == 1
    assert g.piece_at(249) == 2
    for bad in (-1, 250, 10**9):
        with pytest.raises(ValueError):
            g.piece_at(bad)


@pytest.mark.parametrize(
    "start, length, expected",
    [
        (0, 1, range(0, 1)),
        (0, 100, range(0, 1)),
        (0, 101, range(0, 2)),
        (99, 2, range(0, 2)),
        (100, 100, range(1, 2)),
        (199, 1, range(1, 2)),
        (200, 50, range(2, 3)),
        (249, 1, range(2, 3)),
        (0, 250, range(0, 3)),
        (0, 10**9, range(0, 3)),  # clipped to the stream
        (240, 100, range(2, 3)),  # runs past the end: clipped
        (250, 1, range(0)),  # starts at the end
        (300, 10, range(0)),  # starts past the end
        (10, 0, range(0)),  # empty
        (10, -5, range(0)),  # negative length
        (-1, 5, range(0)),  # negative start
    ],
)
def test_pieces_in_range(start, length, expected):
    g = Geometry(100, (250,))
    assert g.pieces_in_range(start, length) == expected


# -- blocks ------------------------------------------------------------------------


def test_blocks_of_full_and_last_piece():
    g = Geometry(4 * B, (9 * B + 7,))
    assert g.blocks(0) == [(0, B), (B, B), (2 * B, B), (3 * B, B)]
    assert g.num_blocks(0) == 4
    assert g.blocks(2) == [(0, B), (B, 7)]
    assert g.num_blocks(2) == 2
    assert g.block_length(2, B) == 7
    assert g.block_length(2, 0) == B
    assert g.block_length(0, 3 * B) == B


def test_last_piece_of_exact_blocks():
    g = Geometry(4 * B, (6 * B,))
    assert g.blocks(1) == [(0, B), (B, B)]
    assert g.block_length(1, B) == B
    with pytest.raises(ValueError):
        g.block_length(1, 2 * B)


def test_piece_length_not_multiple_of_block():
    g = Geometry(B + 100, (3 * (B + 100),))
    assert g.blocks(1) == [(0, B), (B, 100)]
    assert g.is_valid_block(1, B, 100)
    assert not g.is_valid_block(1, B, B)


@pytest.mark.parametrize("begin", [-B, 1, B - 1, B + 1, 4 * B, 5 * B])
def test_block_length_rejects(begin):
    g = Geometry(4 * B, (8 * B,))
    with pytest.raises(ValueError):
        g.block_length(0, begin)


def test_block_length_bad_piece():
    g = Geometry(4 * B, (8 * B,))
    with pytest.raises(IndexError):
        g.block_length(2, 0)


@pytest.mark.parametrize(
    "index, begin, length, ok",
    [
        (0, 0, B, True),
        (0, 3 * B, B, True),
        (2, 0, B, True),
        (2, B, 7, True),  # the last block of the last piece
        (2, B, 8, False),
        (2, B, 6, False),
        (2, B, B, False),
        (2, 2 * B, 7, False),
        (0, 0, B - 1, False),
        (0, 0, B + 1, False),
        (0, 1, B, False),
        (0, -B, B, False),
        (0, 4 * B, B, False),
        (0, 0, 0, False),
        (3, 0, B, False),
        (-1, 0, B, False),
    ],
)
def test_is_valid_block(index, begin, length, ok):
    g = Geometry(4 * B, (9 * B + 7,))
    assert g.is_valid_block(index, begin, length) is ok


@pytest.mark.parametrize(
    "index, begin, length, ok",
    [
        (0, 0, 4 * B, True),  # a whole piece
        (0, 1, 1, True),
        (0, 4 * B - 1, 1, True),
        (0, 4 * B - 1, 2, False),
        (0, 4 * B, 1, False),
        (2, 0, B + 7, True),
        (2, B, 7, True),
        (2, B + 6, 1, True),
        (2, B + 6, 2, False),
        (2, B + 7, 1, False),
        (0, 0, 0, False),
        (0, -1, 5, False),
        (0, 0, -1, False),
        (3, 0, 1, False),
        (-1, 0, 1, False),
    ],
)
def test_is_within_piece(index, begin, length, ok):
    g = Geometry(4 * B, (9 * B + 7,))
    assert g.is_within_piece(index, begin, length) is ok


# -- files -------------------------------------------------------------------------


def test_file_spanning_many_pieces():
    g = Geometry(100, (50, 1000, 30))
    assert g.file_offset(1) == 50
    assert g.file_pieces(1) == range(0, 11)  # bytes 50..1049
    assert g.file_pieces(0) == range(0, 1)
    assert g.file_pieces(2) == range(10, 11)  # bytes 1050..1079
    spans = g.piece_spans(5)
    assert spans == [Span(1, 450, 500, 100)]


def test_several_files_in_one_piece():
    g = Geometry(100, (10, 20, 30, 40, 50))
    assert g.num_pieces == 2
    for i in range(4):
        assert g.file_pieces(i) == range(0, 1)
    assert g.file_pieces(4) == range(1, 2)  # bytes 100..149
    assert g.piece_spans(0) == [
        Span(0, 0, 0, 10), Span(1, 0, 10, 20), Span(2, 0, 30, 30), Span(3, 0, 60, 40),
    ]
    assert g.piece_spans(1) == [Span(4, 0, 100, 50)]


def test_file_straddling_piece_boundary():
    g = Geometry(100, (90, 20, 90))
    assert g.file_pieces(1) == range(0, 2)
    assert g.piece_spans(0) == [Span(0, 0, 0, 90), Span(1, 0, 90, 10)]
    assert g.piece_spans(1) == [Span(1, 10, 100, 10), Span(2, 0, 110, 90)]


def test_file_pieces_partial_ranges():
    g = Geometry(100, (50, 1000, 30))
    assert g.file_pieces(1, 0, 1) == range(0, 1)
    assert g.file_pieces(1, 50, 1) == range(1, 2)  # stream byte 100
    assert g.file_pieces(1, 49, 2) == range(0, 2)
    assert g.file_pieces(1, 999, 1) == range(10, 11)
    assert g.file_pieces(1, 500) == range(5, 11)  # to the end of the file
    # clipped to the file's end, not the stream's end
    assert g.file_pieces(1, 990, 10**6) == range(10, 11)
    assert g.file_pieces(0, 0, 10**6) == range(0, 1)
    assert g.file_pieces(1, 1000, 10) == range(0)  # at the end of the file
    assert g.file_pieces(1, 2000, 10) == range(0)  # past the end
    assert g.file_pieces(1, 10, 0) == range(0)


@pytest.mark.parametrize(
    "lengths, empty",
    [
        ((0, 100, 100), [0]),  # at the start
        ((100, 0, 100), [1]),  # in the middle
        ((100, 100, 0), [2]),  # at the end
        ((100, 0, 0, 100), [1, 2]),  # consecutive
        ((0, 0, 150, 0, 50, 0, 0), [0, 1, 3, 5, 6]),
    ],
)
def test_zero_length_files(lengths, empty):
    g = Geometry(64, lengths)
    assert g.total_length == 200
    for i in empty:
        assert g.file_pieces(i) == range(0)
        assert g.file_pieces(i, 0, 10) == range(0)
    for i in range(g.num_pieces):
        spans = g.piece_spans(i)
        assert all(s.length > 0 for s in spans)
        assert not any(s.file_index in empty for s in spans)
        assert spans == brute_spans(g, g.piece_offset(i), g.piece_size(i))
    # the whole stream
    full = list(g.spans(0, 200))
    assert [s.file_index for s in full] == [i for i, n in enumerate(lengths) if n]
    assert sum(s.length for s in full) == 200


def test_zero_length_file_at_a_piece_boundary():
    g = Geometry(100, (100, 0, 100))
    assert g.file_offset(1) == 100
    assert g.file_pieces(1) == range(0)
    assert g.piece_spans(1) == [Span(2, 0, 100, 100)]
    assert list(g.spans(99, 2)) == [Span(0, 99, 99, 1), Span(2, 0, 100, 1)]


# -- spans -------------------------------------------------------------------------


def test_spans_across_file_boundaries():
    g = Geometry(100, (10, 20, 30))
    assert list(g.spans(5, 30)) == [Span(0, 5, 5, 5), Span(1, 0, 10, 20), Span(2, 0, 30, 5)]
    assert list(g.spans(10, 20)) == [Span(1, 0, 10, 20)]  # exactly one file
    assert list(g.spans(29, 2)) == [Span(1, 19, 29, 1), Span(2, 0, 30, 1)]
    assert list(g.spans(59, 1)) == [Span(2, 29, 59, 1)]  # the last byte
    assert list(g.spans(0, 60)) == [Span(0, 0, 0, 10), Span(1, 0, 10, 20), Span(2, 0, 30, 30)]


def test_spans_empty_range():
    g = Geometry(100, (10, 20))
    assert list(g.spans(0, 0)) == []
    assert list(g.spans(15, 0)) == []
    assert list(g.spans(30, 0)) == []  # at the very end


@pytest.mark.parametrize("start, length", [(-1, 1), (0, 31), (30, 1), (31, 0), (5, -1)])
def test_spans_out_of_range(start, length):
    g = Geometry(100, (10, 20))
    with pytest.raises(ValueError):
        list(g.spans(start, length))


def test_spans_match_brute_force_everywhere():
    g = Geometry(7, (3, 0, 5, 1, 0, 0, 9, 2))
    total = g.total_length
    for start in range(total + 1):
        for length in range(total - start + 1):
            assert list(g.spans(start, length)) == brute_spans(g, start, length), (start, length)


# -- properties --------------------------------------------------------------------

file_lists = st.lists(st.integers(0, 3000), min_size=0, max_size=12)


@settings(max_examples=300, deadline=None)
@given(lengths=file_lists, piece_length=st.integers(1, 2048), block_size=st.integers(1, 700))
def test_pieces_tile_the_stream(lengths, piece_length, block_size):
    g = Geometry(piece_length, tuple(lengths), block_size)
    total = sum(lengths)
    assert g.total_length == total
    assert sum(g.piece_size(i) for i in range(g.num_pieces)) == total
    assert g.num_pieces == -(-total // piece_length)

    pos = 0
    for i in range(g.num_pieces):
        assert g.piece_offset(i) == pos
        spans = g.piece_spans(i)
        assert sum(s.length for s in spans) == g.piece_size(i)
        for s in spans:
            assert s.stream_offset == pos  # contiguous, in order
            assert s.length > 0
            assert g.file_lengths[s.file_index] > 0
            assert s.stream_offset == g.file_offsets[s.file_index] + s.file_offset
            assert 0 <= s.file_offset and s.file_offset + s.length <= lengths[s.file_index]
            pos += s.length
        # blocks tile the piece
        blocks = g.blocks(i)
        assert len(blocks) == g.num_blocks(i)
        bpos = 0
        for begin, length in blocks:
            assert begin == bpos and 0 < length <= block_size
            assert g.is_valid_block(i, begin, length)
            assert g.block_length(i, begin) == length
            bpos += length
        assert bpos == g.piece_size(i)
    assert pos == total

    # every file's bytes lie in exactly its file_pieces
    for f, n in enumerate(lengths):
        pieces = g.file_pieces(f)
        if n == 0:
            assert pieces == range(0)
            continue
        start = g.file_offsets[f]
        assert pieces == range(start // piece_length, (start + n - 1) // piece_length + 1)
        for i in pieces:
            assert any(s.file_index == f for s in g.piece_spans(i))


@settings(max_examples=300, deadline=None)
@given(data=st.data(), lengths=st.lists(st.integers(0, 500), min_size=1, max_size=8),
       piece_length=st.integers(1, 300))
def test_random_ranges(data, lengths, piece_length):
    g = Geometry(piece_length, tuple(lengths))
    total = g.total_length
    start = data.draw(st.integers(0, total))
    length = data.draw(st.integers(0, total - start))
    spans = list(g.spans(start, length))
    assert spans == brute_spans(g, start, length)
    pieces = g.pieces_in_range(start, length)
    if length == 0:
        assert pieces == range(0)
    else:
        assert pieces == range(g.piece_at(start), g.piece_at(start + length - 1) + 1)


def test_verified_bytes_match_a_byte_by_byte_count():
    """Every subset of verified pieces, over files that start and end mid-piece, an
    empty file and a short last piece: counted per byte, the same answers."""
    g = Geometry(64, (50, 0, 130, 20))  # 200 bytes: pieces of 64, 64, 64, 8
    for bits in itertools.product((False, True), repeat=g.num_pieces):
        have = Bitfield(g.num_pieces)
        for i, on in enumerate(bits):
            if on:
                have.add(i)
        in_have = [g.piece_at(b) in have for b in range(g.total_length)]
        assert g.verified_total(have) == sum(in_have)
        for f in range(4):
            start, n = g.file_offset(f), g.file_lengths[f]
            assert g.file_verified(have, f) == sum(in_have[start:start + n]), (bits, f)
        assert g.verified_in_range(have, 10, 150) == sum(in_have[10:160])
        assert g.verified_in_range(set(have), 10, 150) == sum(in_have[10:160])


def test_verified_bytes_of_a_big_file_cost_no_loop_over_its_pieces():
    """``getattr`` asks for a file's verified bytes after every piece (st_blocks): for
    a file of many pieces the count must not walk them one by one in Python."""
    g = Geometry(1 << 20, (1 << 40,))  # a TiB: a million pieces
    have = Bitfield(g.num_pieces)
    for i in (0, 5, g.num_pieces - 1):
        have.add(i)
    calls = []
    real = g.piece_offset
    object.__setattr__(g, "piece_offset", lambda i: calls.append(i) or real(i))
    assert g.file_verified(have, 0) == 3 << 20
    assert len(calls) <= 2


def test_bitfield_count_range():
    b = Bitfield(10)
    for i in (0, 3, 4, 9):
        b.add(i)
    assert b.count_range(0, 10) == 4 and b.count_range(1, 9) == 2
    assert b.count_range(-5, 100) == 4 and b.count_range(5, 5) == 0
