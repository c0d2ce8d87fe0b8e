"""core/runhash: a piece's SHA-1 taken as its blocks come, in any order."""

from __future__ import annotations

import hashlib
import os
import random

import pytest

from torrentfs.core.runhash import RunningHash

B = 16384


def _blocks(size: int) -> list[tuple[int, int]]:
    return [(b, min(B, size - b)) for b in range(0, size, B)]


@pytest.mark.parametrize("size", [1, B, 3 * B + 5, 64 * B])
@pytest.mark.parametrize("order", ["in order", "reversed", "shuffled"])
def test_the_digest_is_the_pieces_whatever_the_order(size, order):
    piece = memoryview(bytearray(os.urandom(size)))
    blocks = _blocks(size)
    if order == "reversed":
        blocks.reverse()
    elif order == "shuffled":
        random.Random(size).shuffle(blocks)
    h = RunningHash()
    buf = memoryview(bytearray(size))
    for begin, length in blocks:
        assert h.digest(size) is None  # not all in yet
        buf[begin:begin + length] = piece[begin:begin + length]
        h.add(buf, begin, length)
    assert h.upto == size
    assert h.digest(size) == hashlib.sha1(piece).digest()


def test_blocks_past_a_gap_wait_for_it_and_are_read_from_the_buffer_then():
    size = 4 * B
    piece = os.urandom(size)
    buf = memoryview(bytearray(piece))
    h = RunningHash()
    h.add(buf, 0, B)
    h.add(buf, 2 * B, B)
    h.add(buf, 3 * B, B)
    assert h.upto == B and h.digest(size) is None  # block 1 is missing
    h.add(buf, B, B)  # closes the gap: 2 and 3 follow
    assert h.upto == size and h.digest(size) == hashlib.sha1(piece).digest()


def test_a_piece_with_a_block_never_in_has_no_digest():
    buf = memoryview(bytearray(3 * B))
    h = RunningHash()
    h.add(buf, 0, B)
    h.add(buf, 2 * B, B)
    assert h.digest(3 * B) is None and h.upto == B
