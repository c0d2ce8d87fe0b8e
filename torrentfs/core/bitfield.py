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


_TO_ASCII = bytes.maketrans(b"\0\1", b"01")
_FROM_ASCII = bytes.maketrans(b"01", b"\0\1")


def and_flags(a: bytes | bytearray, b: bytes | bytearray) -> bytearray:
    """Byte-wise AND of two equally long 0/1 flag arrays (at C speed: a million
    pieces take milliseconds)."""
    if len(a) != len(b):
        raise ValueError("flag arrays differ in length")
    if not a:
        return bytearray()
    n = int.from_bytes(a, "big") & int.from_bytes(b, "big")
    return bytearray(n.to_bytes(len(a), "big"))


class Bitfield:
    """``size`` bits, all clear at first. ``count`` is kept up to date, so asking
    whether all pieces are present is O(1)."""

    __slots__ = ("size", "_bits", "count")

    def __init__(self, size: int, *, full: bool = False) -> None:
        if size < 0:
            raise ValueError("size must not be negative")
        self.size = size
        self._bits = bytearray(b"\x01" * size if full else size)
        self.count = size if full else 0

    @classmethod
    def from_bytes(cls, data: bytes, size: int) -> "Bitfield":
        """Decode the wire form. Raises ValueError if the length is wrong for ``size``
        or a spare bit past the end is set."""
        if len(data) != byte_length(size):
            raise ValueError(f"bitfield of {len(data)} bytes for {size} pieces")
        if data and data[-1] & spare_mask(size):
            raise ValueError("bitfield has spare bits set")
        if not size:
            return cls(0)
        # Bits to ASCII '0'/'1' via a big integer, then to 0/1 bytes: C speed.
        text = format(int.from_bytes(data, "big"), f"0{len(data) * 8}b").encode()
        return cls.from_flags(bytearray(text[:size].translate(_FROM_ASCII)), size)

    @classmethod
    def from_flags(cls, flags: bytes | bytearray, size: int) -> "Bitfield":
        """A bitfield from one byte per piece, each 0 or 1 (the form ``flags``
        gives)."""
        if len(flags) != size:
            raise ValueError(f"{len(flags)} flags for {size} pieces")
        bf = cls(0)
        bf.size = size
        bf._bits = bytearray(flags)
        bf.count = bf._bits.count(1)
        if bf.count + bf._bits.count(0) != size:
            raise ValueError("flags must be 0 or 1")
        return bf

    def flags(self) -> bytearray:
        """One byte per piece, 0 or 1 (a copy)."""
        return bytearray(self._bits)

    def flag_array(self) -> bytearray:
        """The live array of one byte per piece (0 or 1), for hot loops that test
        many indexes known to be in range: read it, never write it."""
        return self._bits

    def without(self, other: "Bitfield") -> "Bitfield":
        """The pieces of this set that are not in ``other`` (of the same size)."""
        if other.size != self.size:
            raise ValueError("bitfields differ in size")
        if not self.size:
            return Bitfield(0)
        a = int.from_bytes(self._bits, "big")
        b = int.from_bytes(other._bits, "big")
        return Bitfield.from_flags((a & ~b).to_bytes(self.size, "big"), self.size)

    def to_bytes(self) -> bytes:
        """The wire form: ceil(size/8) bytes, piece 0 in the high bit of byte 0."""
        if not self.size:
            return b""
        nbytes = byte_length(self.size)
        text = bytes(self._bits).translate(_TO_ASCII) + b"0" * (nbytes * 8 - self.size)
        return int(text, 2).to_bytes(nbytes, "big")

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
        find = self._bits.find
        i = find(1)
        while i >= 0:
            yield i
            i = find(1, i + 1)

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
