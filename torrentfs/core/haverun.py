"""Runs of HAVE messages, read in one pass.

A peer of a swarm reading at a trickle announces each piece it verifies to every
peer, in batches (``engine/haves.py``): a receive from a peer of a 32-node cluster
is often nothing but a few HAVEs. Parsed one message at a time, each HAVE is an
event object and a trip through the session and the torrent; ``take`` reads the
whole run behind the first at once, so that the torrent handles it as one
(issue 13: at 32 nodes ~1,100 HAVEs come in per node and second).
"""

from __future__ import annotations

import struct

HEAD = b"\x00\x00\x00\x05\x04"  # length prefix 5, id 4: a HAVE, 4 bytes of index follow
SIZE = 9
_INDEX = struct.Struct(">I")


def take(buf, pos: int, num_pieces: int) -> tuple[list[int], int]:
    """The piece indexes of the whole HAVE messages at ``buf[pos:]``, one after the
    other, and the position after the last of them. Stops at the first message that
    is not a whole HAVE of an index below ``num_pieces`` (left to the general parser,
    which judges it: a bad index is the peer's error there)."""
    out: list[int] = []
    end = len(buf)
    unpack = _INDEX.unpack_from
    while end - pos >= SIZE and buf[pos + 4] == 4 and buf[pos:pos + 5] == HEAD:
        index = unpack(buf, pos + 5)[0]
        if index >= num_pieces:
            break
        out.append(index)
        pos += SIZE
    return out, pos
