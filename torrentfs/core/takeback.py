"""Requests a picker takes back: a piece no longer wanted (``withdraw``) and the
blocks asked of seeds that a peer without the whole torrent can now serve
(``spare_seeds``, ``spare_seeds_to``). A mixin of core/picker.Picker, whose state
(``_partials``, ``_peers``, ``_seeds``) it reads and whose ``request_dropped`` and
``_forget_partial`` it calls. Pure: no I/O, no clock."""

from __future__ import annotations

from typing import Hashable

from torrentfs.core.priorities import NONE

Peer = Hashable


class TakeBack:
    def withdraw(self, index: int) -> list[tuple[Peer, int, int]] | None:
        """Give up a piece in progress that is no longer wanted (its tier fell to
        NONE) and is not complete: its open requests are taken back and its received
        blocks forgotten, so abandoned pieces hold no memory. Returns ``(peer, begin,
        length)`` of each request to cancel, or None if nothing was given up."""
        partial = self._partials.get(index)
        if partial is None or partial.complete or self.priority(index)[0] != NONE:
            return None
        cancels = []
        for b, holders in enumerate(partial.requests):
            begin, length = partial.blocks[b]
            cancels.extend((peer, begin, length) for peer in holders)
        self._forget_partial(index)
        return cancels

    def spare_seeds(self, index: int) -> list[tuple[Peer, int, int]]:
        """A peer without the whole torrent now has piece ``index``: take back the
        requests for its blocks that seeds have not answered yet, so the blocks are
        asked of that peer instead. Returns ``(seed, begin, length)`` to cancel."""
        partial = self._partials.get(index)
        if partial is None or not self._seeds:
            return []
        cancels = []
        for b, holders in enumerate(partial.requests):
            begin, length = partial.blocks[b]
            for peer in [p for p in holders if self._peers[p].complete]:
                cancels.append((peer, begin, length))
                self.request_dropped(peer, index, begin)
        return cancels

    def spare_seeds_to(self, peer: Peer) -> list[tuple[Peer, int, int, int]]:
        """``spare_seeds`` of every piece in progress that ``peer``, without the whole
        torrent, has: it has just unchoked us. (Its HAVEs came while it choked us,
        when nothing could be asked of it: in a cluster reading in step, a peer
        choked for want of interest hears the HAVE that makes it interested first,
        the unchoke a round trip later.) Returns ``(seed, index, begin, length)``
        to cancel."""
        bits = self._peers.get(peer)
        if bits is None or bits.complete or not self._seeds:
            return []
        # Walk the seeds' open requests (a few per seed), not every piece in
        # progress (hundreds in a cluster, and unchokes come often there).
        peers = self._peers
        spared = [(seed, index, begin)
                  for seed, out in self._outstanding.items() if out and peers[seed].complete
                  for index, begin in out if index in bits]
        cancels = []
        for seed, index, begin in spared:
            cancels.append((seed, index, begin, self.geometry.block_length(index, begin)))
            self.request_dropped(seed, index, begin)
        return cancels
