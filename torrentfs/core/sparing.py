"""An origin that sends each piece about once: ``torrentfs seed --super-seed``.
Pure: no I/O, no clock (``now`` is passed in).

A cluster's origin is the scarce uplink: every piece it sends twice is time the
whole swarm waits. BEP 16 super-seeding hides the seed's pieces and reveals them one
at a time, so each peer can only fetch what nobody else has. That does not fit
readers: a mount asks only for the pieces its reads want (engine/reads.py), in the
order it reads them, and a seed that showed it one other piece would stall it. So
this origin shows every piece (a full bitfield) and instead refuses, with a BEP 6
reject, a request for a piece it has sent before and that some other peer has
announced since: the asker fetches it there. Pieces nobody else has are served as
usual (the uploader's hold, ``core/uploadpolicy``, already keeps two peers from
getting the same fresh piece at once).

So that no peer starves (it may be connected to none of the peers that have the
piece), a peer refused a piece is served it anyway once it has kept asking for
``grace`` seconds since the first refusal. A peer without the fast extension
cannot be refused (it would wait for the block forever): the shell serves it.

Contract: ``serve(peer, index, sent, others_have, now)`` says whether to answer a
request (True) or reject it (False). ``sent``: how many times the piece went out
from us; ``others_have``: how many connected peers other than the asker announced
it. ``forget(peer)`` when a peer goes. Refusals are remembered per (peer, piece)
until served, forgotten, or ``2 * grace`` old (``prune``).
"""

from __future__ import annotations

from typing import Hashable

GRACE_SECONDS = 3.0   # a peer refused a piece this long, still asking: served


class Sparing:
    def __init__(self, grace: float = GRACE_SECONDS) -> None:
        self.grace = grace
        self._refused: dict[tuple[Hashable, int], float] = {}  # first refusal
        self.refusals = 0   # requests refused in all (for the log and status)
        self._pruned = 0.0

    def serve(self, peer: Hashable, index: int, sent: int, others_have: int,
              now: float) -> bool:
        if now - self._pruned >= self.grace:
            self.prune(now)
        key = (peer, index)
        if not sent or others_have <= 0:
            self._refused.pop(key, None)
            return True
        first = self._refused.setdefault(key, now)
        if now - first >= self.grace:
            del self._refused[key]
            return True
        self.refusals += 1
        return False

    def forget(self, peer: Hashable) -> None:
        for key in [k for k in self._refused if k[0] == peer]:
            del self._refused[key]

    def prune(self, now: float) -> None:
        """Drop refusals older than twice the grace (the peer stopped asking)."""
        self._pruned = now
        stale = [k for k, t in self._refused.items() if now - t >= 2 * self.grace]
        for k in stale:
            del self._refused[k]
