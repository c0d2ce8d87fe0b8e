"""Tests for torrentfs.bitfield: BEP 3 wire encoding and the kept-up-to-date count."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentfs.core.bitfield import Bitfield


def bits(s: str) -> Bitfield:
    """A bitfield from a compact string: '1101' = pieces 0, 1 and 3."""
    bf = Bitfield(len(s))
    for i, c in enumerate(s):
        if c == "1":
            bf.add(i)
    return bf


def as_str(bf: Bitfield) -> str:
    return "".join("1" if bf[i] else "0" for i in range(bf.size))


def test_empty_at_first():
    bf = Bitfield(9)
    assert bf.count == 0 and len(bf) == 0
    assert list(bf) == []
    assert not bf.complete
    assert bf.to_bytes() == b"\x00\x00"


def test_negative_size():
    with pytest.raises(ValueError):
        Bitfield(-1)


def test_wire_encoding_high_bit_first():
    assert bits("1").to_bytes() == b"\x80"
    assert bits("01").to_bytes() == b"\x40"
    assert bits("00000001").to_bytes() == b"\x01"
    assert bits("100000001").to_bytes() == b"\x80\x80"
    assert bits("000000001").to_bytes() == b"\x00\x80"
    assert bits("10100101" "11").to_bytes() == b"\xa5\xc0"


def test_from_bytes_high_bit_first():
    bf = Bitfield.from_bytes(b"\xa5\xc0", 10)
    assert as_str(bf) == "1010010111"
    assert list(bf) == [0, 2, 5, 7, 8, 9]
    assert bf.count == 6


@pytest.mark.parametrize("size, nbytes", [(0, 0), (1, 1), (7, 1), (8, 1), (9, 2), (16, 2), (17, 3)])
def test_sizes(size, nbytes):
    empty = Bitfield(size)
    assert empty.to_bytes() == bytes(nbytes)
    assert empty.count == 0
    assert empty.complete is (size == 0)
    full = Bitfield(size, full=True)
    assert full.count == size and len(full) == size
    assert full.complete
    assert list(full) == list(range(size))
    wire = full.to_bytes()
    assert len(wire) == nbytes
    # full wire form: all used bits set, spare bits clear
    expected = bytearray(b"\xff" * nbytes)
    if size % 8:
        expected[-1] = (0xFF << (8 - size % 8)) & 0xFF
    assert wire == bytes(expected)
    back = Bitfield.from_bytes(wire, size)
    assert back.count == size and back.complete and list(back) == list(range(size))
    assert Bitfield.from_bytes(bytes(nbytes), size).count == 0


@pytest.mark.parametrize("size", [1, 7, 9, 15])
def test_spare_bits_rejected(size):
    nbytes = (size + 7) // 8
    spare = 8 - size % 8
    for bit in range(spare):
        data = bytearray(nbytes)
        data[-1] = 1 << bit
        with pytest.raises(ValueError):
            Bitfield.from_bytes(bytes(data), size)


def test_no_spare_bits_for_multiples_of_eight():
    assert Bitfield.from_bytes(b"\x01", 8).count == 1
    assert Bitfield.from_bytes(b"\xff\xff", 16).complete


@pytest.mark.parametrize(
    "data, size",
    [(b"", 1), (b"\x00", 0), (b"\x00", 9), (b"\x00\x00", 8), (b"\x00\x00\x00", 9), (b"", 8)],
)
def test_wrong_length_rejected(data, size):
    with pytest.raises(ValueError):
        Bitfield.from_bytes(data, size)


def test_count_through_add_and_discard():
    bf = Bitfield(9)
    assert bf.add(3) is True
    assert bf.add(3) is False  # already set: count unchanged
    assert bf.count == 1
    assert bf.add(8) is True and bf.add(0) is True
    assert bf.count == 3
    assert bf.discard(3) is True
    assert bf.discard(3) is False  # already clear
    assert bf.count == 2
    assert list(bf) == [0, 8]
    assert bf.to_bytes() == b"\x80\x80"
    for i in range(9):
        bf.add(i)
    assert bf.count == 9 and bf.complete
    bf.discard(4)
    assert not bf.complete and bf.count == 8


def test_full_then_discard():
    bf = Bitfield(9, full=True)
    assert bf.discard(8) is True
    assert bf.count == 8
    assert bf.add(8) is True  # the bit was really cleared
    assert bf.count == 9
    assert bf.discard(0) and bf.discard(0) is False
    assert bf.to_bytes() == b"\x7f\x80"


def test_contains_and_getitem():
    bf = bits("0110")
    assert 1 in bf and 2 in bf
    assert 0 not in bf and 3 not in bf
    assert -1 not in bf and 4 not in bf and 100 not in bf
    assert bf[1] is True and bf[0] is False
    with pytest.raises(IndexError):
        bf[4]


@pytest.mark.parametrize("index", [-1, 4, 100])
def test_out_of_range_index_rejected(index):
    """Negative indexes must not wrap around to the end (as a bytearray would)."""
    bf = bits("0110")
    with pytest.raises(IndexError):
        bf.add(index)
    with pytest.raises(IndexError):
        bf.discard(index)
    with pytest.raises(IndexError):
        bf[index]
    assert as_str(bf) == "0110" and bf.count == 2


def test_missing():
    bf = bits("10110")
    assert bf.missing(range(5)) == [1, 4]
    assert bf.missing([4, 0, 1]) == [4, 1]
    assert bf.missing([]) == []


def test_repr_mentions_count():
    assert "2/4" in repr(bits("0110"))
    assert repr(Bitfield(100)).endswith("...)")


@given(st.lists(st.booleans(), max_size=100))
def test_round_trip(flags):
    size = len(flags)
    bf = Bitfield(size)
    for i, f in enumerate(flags):
        if f:
            bf.add(i)
    assert bf.count == sum(flags)
    wire = bf.to_bytes()
    assert len(wire) == (size + 7) // 8
    back = Bitfield.from_bytes(wire, size)
    assert [back[i] for i in range(size)] == flags
    assert back.count == sum(flags)
    assert back.to_bytes() == wire
    assert list(back) == [i for i, f in enumerate(flags) if f]


@given(st.integers(0, 40), st.lists(st.tuples(st.booleans(), st.integers(0, 39))))
def test_count_matches_bits(size, ops):
    bf = Bitfield(size)
    model: set[int] = set()
    for add, i in ops:
        if i >= size:
            continue
        if add:
            assert bf.add(i) is (i not in model)
            model.add(i)
        else:
            assert bf.discard(i) is (i in model)
            model.discard(i)
        assert bf.count == len(model)
    assert set(bf) == model
    assert bf.complete is (len(model) == size)
