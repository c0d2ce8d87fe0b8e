"""An origin that sends each piece about once: ``torrentfs seed --super-seed``.
Pure: no I/O, no clock (``now`` is passed in).

A cluster's origin is the scarce uplink: every piece it sends twice is time the
whole swarm waits. BEP 16 super-seeding hides the seed's pieces and reveals them one
at a time, so each peer can only fetch what nobody else has. That does not fit
readers: a mount asks only for the pieces its reads want (engine/reads.py), in the
order it reads them, and a seed that showed it one other piece would stall it. So
this origin shows every piece (a full bitfield) and instead refuses, with a BEP 6
reject, a request for a piece it has already sent (some of) to another peer: the
asker fetches it from that peer once announced (a few tens of ms later on a LAN),
as the peers of a cluster reading the same file in step otherwise each take the
same piece from the origin at the same moment. The peers it sent a piece to may ask
for the rest of it (a cancelled block asked again) and are served.

So that no peer starves (the peer that got the piece may have left, or be one the
asker is not connected to), a peer refused a piece is served it anyway once it has
kept asking for ``grace`` seconds since its first refusal, and is then one of the
piece's takers (at once: ``serve`` says the same however often it is asked). A peer without the fast extension cannot be refused (it would wait
for the block forever): the shell serves it.

Contract: ``serve(peer, index, now)`` says whether to answer a request (True) or
reject it (False); ``sent(peer, index)`` when a block of the piece went to the peer;
``forget(peer)`` when a peer goes. Refusals are remembered per (peer, piece) until
served, forgotten, or ``2 * grace`` old (``prune``).
"""

from __future__ import annotations

from typing import Hashable

GRACE_SECONDS = 3.0   # a peer refused a piece this long, still asking: served


class Sparing:
    def __init__(self, grace: float = GRACE_SECONDS) -> None:
        self.grace = grace
        self._takers: dict[int, set[Hashable]] = {}            # piece -> who got it
        self._refused: dict[tuple[Hashable, int], float] = {}  # first refusal
        self.refusals = 0   # requests refused in all (for the log)
        self._pruned = 0.0

    def serve(self, peer: Hashable, index: int, now: float) -> bool:
        if now - self._pruned >= self.grace:
            self.prune(now)
        takers = self._takers.get(index)
        key = (peer, index)
        if not takers or peer in takers:
            self._refused.pop(key, None)
            return True
        first = self._refused.setdefault(key, now)
        if now - first >= self.grace:
            del self._refused[key]
            # A taker from now on, so that a second look at the same request (the
            # shell checks again after waiting for the rate limit) says the same:
            # the grace is spent, and a fresh refusal would starve it again.
            takers.add(peer)
            return True
        self.refusals += 1
        return False

    def sent(self, peer: Hashable, index: int) -> None:
        self._takers.setdefault(index, set()).add(peer)

    def forget(self, peer: Hashable) -> None:
        for key in [k for k in self._refused if k[0] == peer]:
            del self._refused[key]
        for takers in self._takers.values():
            takers.discard(peer)

    def prune(self, now: float) -> None:
        """Drop refusals older than twice the grace (the peer stopped asking)."""
        self._pruned = now
        stale = [k for k, t in self._refused.items() if now - t >= 2 * self.grace]
        for k in stale:
            del self._refused[k]
