"""Who sent the bad data: attributing pieces that fail their hash check. Pure.

A piece may hold blocks from several peers, so a failed piece alone does not say
who lied; banning every contributor would ban the honest peers that shared pieces
with a liar. The rules:

* A peer that was the *only* supplier of a failed piece is certainly at fault (or
  broken): it is banned at its ``sole_strikes``-th such piece.
* For every failed piece the digest of each block is kept with its supplier. When
  the piece later passes its check (re-fetched, see ``Picker.piece_failed``: on
  parole, from one peer), each kept block is compared with the good data: a peer
  that sent a block that differs is banned at once (proof), the others are cleared.
* Records of at most ``max_failed`` failed pieces are kept, oldest dropped first,
  so a flood of failures holds bounded memory (a few bytes per block).

Peers are any hashable keys (the shell uses its sessions).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Hashable

from torrentfs.core.geometry import Geometry

Peer = Hashable


def _digest(data) -> bytes:
    return hashlib.sha1(data).digest()


class Blame:
    def __init__(self, geometry: Geometry, *, sole_strikes: int = 2,
                 max_failed: int = 64) -> None:
        self.geometry = geometry
        self.sole_strikes = sole_strikes
        self.max_failed = max_failed
        self.strikes: dict[Peer, int] = {}  # failed pieces a peer alone supplied
        # piece -> [(begin, length, supplier, digest)] of each failed version's blocks
        self._failed: OrderedDict[int, list[tuple[int, int, Peer, bytes]]] = OrderedDict()

    def piece_failed(self, index: int, data, suppliers: dict[int, Peer]) -> list[Peer]:
        """Piece ``index`` failed with ``data``, whose block at each ``begin`` came
        from ``suppliers[begin]``. Returns the peers to ban now."""
        view = memoryview(data)
        kept = self._failed.pop(index, [])
        for begin, length in self.geometry.blocks(index):
            peer = suppliers.get(begin)
            if peer is not None:
                kept.append((begin, length, peer, _digest(view[begin:begin + length])))
        self._failed[index] = kept
        while len(self._failed) > self.max_failed:
            self._failed.popitem(last=False)
        who = set(suppliers.values())
        if len(who) != 1:
            return []
        (peer,) = who
        n = self.strikes[peer] = self.strikes.get(peer, 0) + 1
        return [peer] if n >= self.sole_strikes else []

    def piece_verified(self, index: int, data) -> list[Peer]:
        """Piece ``index`` passed with ``data``: returns the peers proven to have sent
        wrong blocks of it before (in the order they were found)."""
        kept = self._failed.pop(index, None)
        if not kept:
            return []
        view = memoryview(data)
        guilty: dict[Peer, None] = {}
        for begin, length, peer, digest in kept:
            if peer not in guilty and _digest(view[begin:begin + length]) != digest:
                guilty[peer] = None
        return list(guilty)

    @property
    def pending(self) -> int:
        """Failed pieces whose blocks are still kept for comparison."""
        return len(self._failed)
