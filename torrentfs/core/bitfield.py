"""A fixed-size set of piece indexes, with the BEP 3 wire encoding (high bit first).

Pure. Used for what we have, what each peer has, and the resume file.
"""

from __future__ import annotations

from typing import Iterable, Iterator


def byte_length(size: int) -> int:
    """How many bytes the wire form of ``size`` bits takes: ceil(size / 8)."""
    return (size + 7) // 8


def spare_mask(size: int) -> int:
    """The bits of the wire form's last byte that lie past bit ``size - 1``: they
    must be clear."""
    used = size % 8
    return 0 if used == 0 else (1 << (8 - used)) - 1


class Bitfield:
    """``size`` bits, all clear at first. ``count`` is kept up to date, so asking
    whether all pieces are present is O(1)."""

    __slots__ = ("size", "_bits", "count")

    def __init__(self, size: int, *, full: bool = False) -> None:
        if size < 0:
            raise ValueError("size must not be negative")
        self.size = size
        self._bits = bytearray(b"\xff" * size if full else size)
        self.count = size if full else 0

    @classmethod
    def from_bytes(cls, data: bytes, size: int) -> "Bitfield":
        """Decode the wire form. Raises ValueError if the length is wrong for ``size``
        or a spare bit past the end is set."""
        if len(data) != byte_length(size):
            raise ValueError(f"bitfield of {len(data)} bytes for {size} pieces")
        if data and data[-1] & spare_mask(size):
            raise ValueError("bitfield has spare bits set")
        bf = cls(size)
        for i in range(size):
            if data[i >> 3] & (0x80 >> (i & 7)):
                bf._bits[i] = 1
        bf.count = sum(bf._bits)
        return bf

    def to_bytes(self) -> bytes:
        """The wire form: ceil(size/8) bytes, piece 0 in the high bit of byte 0."""
        out = bytearray(byte_length(self.size))
        for i, bit in enumerate(self._bits):
            if bit:
                out[i >> 3] |= 0x80 >> (i & 7)
        return bytes(out)

    def _check(self, index: int) -> None:
        # A bytearray would take -1 as the last bit; a piece index never counts back.
        if index < 0:
            raise IndexError(f"piece {index} out of range (0..{self.size - 1})")

    def __getitem__(self, index: int) -> bool:
        self._check(index)
        return bool(self._bits[index])

    def __contains__(self, index: int) -> bool:
        return 0 <= index < self.size and bool(self._bits[index])

    def add(self, index: int) -> bool:
        """Set bit ``index``; True if it was clear before."""
        self._check(index)
        if self._bits[index]:
            return False
        self._bits[index] = 1
        self.count += 1
        return True

    def discard(self, index: int) -> bool:
        """Clear bit ``index``; True if it was set before."""
        self._check(index)
        if not self._bits[index]:
            return False
        self._bits[index] = 0
        self.count -= 1
        return True

    def __iter__(self) -> Iterator[int]:
        """The set indexes, ascending."""
        return (i for i, bit in enumerate(self._bits) if bit)

    def __len__(self) -> int:
        return self.count

    def count_range(self, start: int, stop: int) -> int:
        """How many of the indexes ``start..stop-1`` are set (clamped to the size)."""
        return self._bits.count(1, max(0, start), max(0, min(stop, self.size)))

    @property
    def complete(self) -> bool:
        return self.count == self.size

    def missing(self, indexes: Iterable[int]) -> list[int]:
        """Those of ``indexes`` that are not set."""
        bits = self._bits
        return [i for i in indexes if not bits[i]]

    def __repr__(self) -> str:
        shown = "".join("1" if b else "0" for b in self._bits[:64])
        return f"Bitfield({self.count}/{self.size} {shown}{'...' if self.size > 64 else ''})"
