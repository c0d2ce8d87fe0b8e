"""Which of a peer's queued requests an uploader answers next. Pure: no I/O, no clock
(``now`` is passed in).

Contract: among the requests given (a peer's queue, oldest first, as far as the
caller scans it), the next is the oldest request for the piece uploaded least so far
(``sent``: piece -> times its first block went out), preferring any that is not
*held*. A request is held while its piece last went to another peer less than
``hold`` seconds ago (``last_sent``: piece -> (to whom, when); peers compared by
identity): that peer will soon announce it, and the asker can fetch it there. The
uploader (engine/upload.py) and the swarm simulator (benchmarks/sim) both use it.

``next_batch`` chooses one request for each peer whose socket has room, as the
simulator's uploader sends them together (engine/upload.py's ``_next_batch`` takes
as many per peer as its socket has room for, weighing each with ``best_request``
after the ones before it were counted as sent: the same rule, block by block): a piece chosen for one peer of the batch holds it
for the peers after it, as if just sent (peers reading the same file in step ask
for the same new piece at the same moment; without this each got its first block
from the origin). Held requests wait while any peer, with room or not, has a fresh
one; with none at all they go, so the uplink does not idle.
"""

from __future__ import annotations

import math
from collections import ChainMap
from typing import Hashable, Iterable, Protocol, Sequence

HOLD_SECONDS = 2.0  # how long a piece just sent to one peer waits for another


class HasIndex(Protocol):
    index: int


def best_request(requests: Iterable[HasIndex], peer: Hashable, sent: dict[int, int],
                 last_sent: dict[int, tuple[Hashable, float]], now: float,
                 hold: float = HOLD_SECONDS) -> tuple[int, bool] | None:
    """``(position, held)`` of the request to answer next among ``requests``, or None
    if there are none."""
    best, best_key = -1, (True, math.inf)
    prev = -1
    for n, req in enumerate(requests):
        if req.index == prev:
            continue  # same key as the request before it, which is older: not better
        prev = req.index
        to = last_sent.get(req.index)
        held = to is not None and to[0] is not peer and now - to[1] < hold
        key = (held, sent.get(req.index, 0))
        if key < best_key:
            best, best_key = n, key
            if key == (False, 0):
                break
    return None if best < 0 else (best, best_key[0])


def next_batch(asking: Iterable[tuple[Hashable, Sequence[HasIndex], bool]],
               sent: dict[int, int], last_sent: dict[int, tuple[Hashable, float]],
               now: float, hold: float = HOLD_SECONDS) -> list[tuple[Hashable, int]]:
    """``(peer, position)`` of the requests to answer now, in ``asking``'s order:
    each entry is a peer, the requests of its queue to weigh (oldest first), and
    whether its socket has room for another block. See the module docstring."""
    taken: dict[int, tuple[Hashable, float]] = {}
    seen = ChainMap(taken, last_sent)
    ready: list[tuple[Hashable, int, bool]] = []
    busy: list[tuple[Hashable, Sequence[HasIndex]]] = []
    fresh = False
    for peer, requests, room in asking:
        if not room:
            busy.append((peer, requests))
            continue
        best = best_request(requests, peer, sent, seen, now, hold)
        if best is None:
            continue
        n, held = best
        if not held:
            fresh = True
            taken[requests[n].index] = (peer, now)
        ready.append((peer, n, held))
    if ready and not fresh:
        fresh = any(best is not None and not best[1]
                    for best in (best_request(r, peer, sent, seen, now, hold)
                                 for peer, r in busy))
    return [(peer, n) for peer, n, held in ready if not (held and fresh)]
