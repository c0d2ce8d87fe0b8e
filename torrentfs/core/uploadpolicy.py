"""Which of a peer's queued requests an uploader answers next. Pure: no I/O, no clock
(``now`` is passed in).

Contract: among the requests given (a peer's queue, oldest first, as far as the
caller scans it), the next is the oldest request for the piece uploaded least so far
(``sent``: piece -> times its first block went out), preferring any that is not
*held*. A request is held while its piece last went to another peer less than
``hold`` seconds ago (``last_sent``: piece -> (to whom, when); peers compared by
identity): that peer will soon announce it, and the asker can fetch it there. The
uploader (engine/upload.py) and the swarm simulator (benchmarks/sim) both use it.
"""

from __future__ import annotations

import math
from typing import Hashable, Iterable, Protocol

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
