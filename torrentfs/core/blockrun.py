"""A run of whole PIECE messages (blocks) in a receive buffer, taken in one call.

Downloading, nearly every message is a block, and a receive on loopback brings a
dozen of them. ``wire.PeerConnection.take_blocks`` hands the shell all the whole
blocks next in its buffer at once, so the shell and the engine do their books per
run (one rate update, one pipeline check, one pick) instead of per block, and no
``Piece`` object is made for each. Each block is judged exactly as
``wire.PeerConnection.next_event`` judges a block it returns; the first message that
is not a whole valid block ends the run (it is left for ``next_event``, which
refuses it or returns it).
"""

from __future__ import annotations

import struct

_HEAD = struct.Struct(">IBII")  # a block's head: length prefix, id 7, index, begin
PIECE_ID = 7


def take(buf, pos: int, num_pieces: int | None,
         max_length: int) -> tuple[list[tuple[int, int, memoryview]], int]:
    """The whole blocks in ``buf`` from ``pos`` on, and the position after them:
    ``([(index, begin, data), ...], pos)``, ``data`` a read-only view of ``buf``
    (so ``buf`` must never be written again while they live). A block is whole and
    valid if its message is all there, its payload has 1 to ``max_length - 9``
    bytes and ``index < num_pieces`` (unbounded if None)."""
    out: list[tuple[int, int, memoryview]] = []
    size = len(buf)
    view = None
    unpack = _HEAD.unpack_from
    while size - pos >= 13 and buf[pos + 4] == PIECE_ID:
        length, _, index, begin = unpack(buf, pos)
        end = pos + 4 + length
        if not (9 < length <= max_length and end <= size
                and (num_pieces is None or index < num_pieces)):
            break
        if view is None:
            view = memoryview(buf).toreadonly()
        out.append((index, begin, view[pos + 13:end]))
        pos = end
    return out, pos
