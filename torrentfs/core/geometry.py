"""All piece, block and file arithmetic of a torrent, in one place.

A torrent's data is one byte stream: its files (padding files included) laid end to
end. The stream is cut into pieces of ``piece_length`` bytes (the last may be
shorter), and each piece into blocks of ``BLOCK_SIZE`` bytes (the last may be
shorter), the unit of a peer request. Nothing else in torrentfs multiplies a piece
index by a piece length: it asks this module.

Pure: no I/O. Every method is exact at the edges (first and last piece, a file
spanning many pieces, zero-length files, a range that ends at the stream's end).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Iterator, NamedTuple

BLOCK_SIZE = 16384


class Span(NamedTuple):
    """A run of bytes that lies inside one file: ``length`` bytes at ``file_offset``
    in file ``file_index``, which is ``stream_offset`` in the torrent's stream."""

    file_index: int
    file_offset: int
    stream_offset: int
    length: int


@dataclass(frozen=True)
class Geometry:
    """The layout of one torrent's data: piece length, total length, file lengths."""

    piece_length: int
    file_lengths: tuple[int, ...]
    block_size: int = BLOCK_SIZE
    file_offsets: tuple[int, ...] = field(init=False, repr=False)
    total_length: int = field(init=False)
    num_pieces: int = field(init=False)

    def __post_init__(self) -> None:
        if self.piece_length <= 0:
            raise ValueError("piece length must be positive")
        if self.block_size <= 0:
            raise ValueError("block size must be positive")
        offsets = []
        pos = 0
        for length in self.file_lengths:
            if length < 0:
                raise ValueError("file length must not be negative")
            offsets.append(pos)
            pos += length
        object.__setattr__(self, "file_offsets", tuple(offsets))
        object.__setattr__(self, "total_length", pos)
        object.__setattr__(self, "num_pieces", -(-pos // self.piece_length))

    # -- pieces -----------------------------------------------------------------

    def piece_offset(self, index: int) -> int:
        """Where piece ``index`` starts in the stream."""
        self._check_piece(index)
        return index * self.piece_length

    def piece_size(self, index: int) -> int:
        """How many bytes piece ``index`` holds (the last piece may be short)."""
        self._check_piece(index)
        return min(self.piece_length, self.total_length - index * self.piece_length)

    def piece_at(self, stream_offset: int) -> int:
        """The piece holding byte ``stream_offset`` of the stream."""
        if not 0 <= stream_offset < self.total_length:
            raise ValueError(f"offset {stream_offset} outside the torrent")
        return stream_offset // self.piece_length

    def pieces_in_range(self, stream_offset: int, length: int) -> range:
        """The pieces that hold any byte of ``[stream_offset, stream_offset+length)``,
        clipped to the stream. Empty for an empty or out-of-range request."""
        end = min(stream_offset + length, self.total_length)
        if length <= 0 or stream_offset >= end or stream_offset < 0:
            return range(0)
        return range(stream_offset // self.piece_length, (end - 1) // self.piece_length + 1)

    # -- blocks -----------------------------------------------------------------

    def num_blocks(self, index: int) -> int:
        """How many blocks piece ``index`` is requested in."""
        return -(-self.piece_size(index) // self.block_size)

    def block_length(self, index: int, begin: int) -> int:
        """The length of the block of piece ``index`` that starts at ``begin``."""
        size = self.piece_size(index)
        if begin % self.block_size or not 0 <= begin < size:
            raise ValueError(f"no block at {begin} in piece {index}")
        return min(self.block_size, size - begin)

    def blocks(self, index: int) -> list[tuple[int, int]]:
        """``(begin, length)`` of every block of piece ``index``, in order."""
        size = self.piece_size(index)
        return [(b, min(self.block_size, size - b)) for b in range(0, size, self.block_size)]

    def is_valid_block(self, index: int, begin: int, length: int) -> bool:
        """True when ``(index, begin, length)`` names exactly one of our blocks."""
        if not 0 <= index < self.num_pieces:
            return False
        # piece_size(index), without its check again (one call per block received)
        size = min(self.piece_length, self.total_length - index * self.piece_length)
        return (begin % self.block_size == 0 and 0 <= begin < size
                and length == min(self.block_size, size - begin))

    def is_within_piece(self, index: int, begin: int, length: int) -> bool:
        """True when the byte range lies inside piece ``index`` (what a peer may ask of us)."""
        pl = self.piece_length  # piece_size inlined: a seed asks this once a block
        return (0 <= index < self.num_pieces and begin >= 0 and length > 0
                and begin + length <= min(pl, self.total_length - index * pl))

    # -- files ------------------------------------------------------------------

    def file_offset(self, file_index: int) -> int:
        """Where file ``file_index`` starts in the stream."""
        return self.file_offsets[file_index]

    def file_pieces(self, file_index: int, offset: int = 0, length: int | None = None) -> range:
        """The pieces holding bytes ``[offset, offset+length)`` of a file (all of it by
        default), clipped to the file's end. Empty for a zero-length file."""
        size = self.file_lengths[file_index]
        if length is None:
            length = size - offset
        length = min(length, size - offset)
        return self.pieces_in_range(self.file_offsets[file_index] + offset, length)

    def spans(self, stream_offset: int, length: int) -> Iterator[Span]:
        """The runs of ``[stream_offset, stream_offset+length)`` within each file, in
        order, skipping zero-length files. The range must lie inside the stream."""
        if length < 0 or stream_offset < 0 or stream_offset + length > self.total_length:
            raise ValueError("range outside the torrent")
        end = stream_offset + length
        pos = stream_offset
        i = bisect.bisect_right(self.file_offsets, pos) - 1
        while pos < end:
            start = self.file_offsets[i]
            file_end = start + self.file_lengths[i]
            if file_end > pos:
                n = min(end, file_end) - pos
                yield Span(i, pos - start, pos, n)
                pos += n
            i += 1

    def piece_spans(self, index: int) -> list[Span]:
        """The file runs that piece ``index`` covers."""
        return list(self.spans(self.piece_offset(index), self.piece_size(index)))

    # -- verified bytes (``have``: the verified pieces, a Bitfield) ---------------

    def verified_in_range(self, have, start: int, length: int) -> int:
        """Bytes of ``[start, start+length)`` of the stream that lie in pieces of
        ``have``."""
        pieces = self.pieces_in_range(start, length)
        if not pieces:
            return 0
        total = 0
        end = start + length
        first, last = pieces[0], pieces[-1]
        for i in {first, last}:  # the edges: maybe only part of them is in range
            if i in have:
                base = self.piece_offset(i)
                total += min(end, base + self.piece_size(i)) - max(start, base)
        if last - first > 1:  # in between: whole pieces, none the short last one
            inner = range(first + 1, last)
            if hasattr(have, "count_range"):  # a Bitfield: counted in C, not per piece
                n = have.count_range(inner.start, inner.stop)
            else:
                n = sum(1 for i in inner if i in have)
            total += n * self.piece_length
        return total

    def verified_total(self, have) -> int:
        """Bytes of the whole stream in pieces of ``have``."""
        if not have.count:
            return 0
        last = self.num_pieces - 1
        short = self.piece_length - self.piece_size(last) if last in have else 0
        return have.count * self.piece_length - short

    def file_verified(self, have, file_index: int) -> int:
        """Bytes of file ``file_index`` that lie in pieces of ``have``."""
        if not have.count:
            return 0
        return self.verified_in_range(have, self.file_offset(file_index),
                                      self.file_lengths[file_index])

    def _check_piece(self, index: int) -> None:
        if not 0 <= index < self.num_pieces:
            raise IndexError(f"piece {index} out of range (0..{self.num_pieces - 1})")
