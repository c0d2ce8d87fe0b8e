"""Which of a peer's queued requests an uploader answers next. Pure: no I/O, no clock
(``now`` is passed in).

Contract: among the requests given (a peer's queue, oldest first, as far as the
caller scans it), the next is the oldest request for the piece uploaded least so far
(``sent``: piece -> times its first block went out), preferring any that is not
*held*. A request is held while its piece last went to another peer less than
``hold`` seconds ago (``last_sent``: piece -> (to whom, when); peers compared by
identity): that peer will soon announce it, and the asker can fetch it there. The
uploader (engine/upload.py) and the swarm simulator (benchmarks/sim) both use it.

``Rounds`` is an uploader's memory of what went out (``sent``, ``last_sent``) and
its rounds: ``batch`` takes, for each peer whose socket has room, its next requests
while the room lasts (one at least), each weighed with ``best_request`` after the
ones before it were counted as sent (``taken``). So a piece chosen for one peer of
the round holds it for the peers after it, as if just sent (peers reading the same
file in step ask for the same new piece at the same moment; without this each got
its first block from the origin). Held requests wait while any peer, with room or
not, has a fresh one. With none at all, a held request still waits while its
piece is on its way to the peer that got it: ``idle_hold`` seconds after the
piece last went out, or ``announced_grace`` after a peer announced it (``announced``,
at its HAVE), whichever ends first. An asker that can fetch the piece from that
peer hears the same HAVE and cancels here meanwhile; one still asking cannot (it
is choked there), and waits no longer. ``wake_at`` says when the first such wait
ends (the caller's next round is due then, or at a HAVE of a piece ``announced``
says is ``waiting``). (Sent at once, as they were, such requests were an origin's
second and third copies whenever its readers paused asking for fresh pieces:
1.5-1.9 copies for 4 readers where 1 is the aim; docs/benchmarks.md, session 9.)
A super-seeding origin (core/sparing) refuses them instead: it holds them no
longer (``idle_hold=0``).
A piece begun for a peer is finished first: while a peer with room asks for the rest
of a piece whose first block went to it (``begun``), a round is those blocks only,
of the piece begun earliest, and starts no other piece. An uplink (the daemon's
token bucket sends a round's blocks one after another) then completes a piece at one
peer before the next begins, so that peer announces it, and the next hop starts,
sooner than if every asker's piece crept along together (the simulator at 64 nodes:
docs/benchmarks.md, session 9, "finishing a begun piece first").
engine/upload.py runs its rounds with it, and so does the swarm simulator
(benchmarks/sim, one block of room per peer); ``next_batch`` is one such round over
plain lists.
"""

from __future__ import annotations

import itertools
import math
import sys
from collections import deque
from typing import Any, Container, Hashable, Iterable, Protocol, Sequence

HOLD_SECONDS = 8.0  # how long a piece just sent to one peer waits for another (the
                   # time it takes to spread through a 64-node cluster at a trickle:
                   # benchmarks/sim, docs/benchmarks.md "session 6: cluster policy")


IDLE_HOLD_SECONDS = 0.5  # with no fresh request at all, how long a piece just sent
                         # to one peer still waits for another: the taker's HAVE
                         # comes 0.2-0.8 s after the origin sent the piece in a
                         # 4-node test cluster (its queues, HAVE_DELAY), and the
                         # asker cancels here on hearing it; 1 s let a node whose
                         # pieces all came held finish 1.3x late (a 4-node block-
                         # level simulation: docs/benchmarks.md, session 9)

ANNOUNCED_GRACE = 0.1  # ... and no longer than this after a peer announced the piece
                      # (a HAVE reaches the asker as it reaches us: an asker that may
                      # fetch it there has cancelled here by then; one still asking
                      # is choked there, or not connected, and waits for nothing)

SCAN = 64  # requests of a peer's queue weighed when choosing its next


class HasIndex(Protocol):
    index: int


class Req(Protocol):
    index: int
    begin: int
    length: int


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


class Rounds:
    """An uploader's memory of what went out, and its rounds (module docstring).

    A peer's queue is a deque of requests, oldest first, with the set of the keys
    ``(index, begin, length)`` still live (a cancelled request stays in the deque
    until it reaches the head, where it is dropped)."""

    def __init__(self, hold: float = HOLD_SECONDS, scan: int = SCAN,
                 idle_hold: float = IDLE_HOLD_SECONDS,
                 announced_grace: float = ANNOUNCED_GRACE) -> None:
        self.hold = hold
        self.scan = scan
        self.idle_hold = min(idle_hold, hold)
        self.announced_grace = announced_grace
        # When the first request a round left waiting, with nothing fresh asked,
        # may go (None: none waits so): the caller's next round is due then.
        self.wake_at: float | None = None
        self.waiting: set[int] = set()  # the pieces of the requests left so
        self.heard: dict[int, float] = {}  # piece -> when a peer first announced it
        self.sent: dict[int, int] = {}  # piece -> times its first block went out
        self.last_sent: dict[int, tuple[Hashable, float]] = {}  # piece -> to whom, when
        self.begun: dict[int, tuple[Hashable, float]] = {}  # piece -> to whom its first
                                                            # block last went, when

    def batch(self, asking: Iterable[tuple[Hashable, deque, Container, int]],
              now: float) -> list[tuple[Hashable, Any, Any]]:
        """The requests to answer now, taken off their queues, as ``(peer, request,
        what its taking replaced)``: ``asking`` gives each peer with requests, its
        queue, its live keys and its room (bytes its socket can take; <= 0: busy,
        weighed only to know whether anyone asks for a fresh piece)."""
        asking = list(asking)
        ready = [(peer, fifo, live, room, self.best(peer, fifo, live, now))
                 for peer, fifo, live, room in asking if room > 0]
        ready = [r for r in ready if r[4] is not None]
        self.wake_at = None
        self.waiting.clear()
        rest = self._begun_rest(ready, now)
        if rest is not None:
            return rest
        fresh = any(not held for *_, (_, held) in ready)
        if ready and not fresh:
            fresh = any(best is not None and not best[1]
                        for best in (self.best(peer, fifo, live, now)
                                     for peer, fifo, live, room in asking if room <= 0))
        batch = []
        for k, (peer, fifo, live, left, best) in enumerate(ready):
            if k:  # weighed again: the peers before it took requests meanwhile
                best = self.best(peer, fifo, live, now)
            while best is not None:
                n, held = best
                if held:
                    if fresh:
                        break
                    n = self._idle_best(peer, fifo, n, now)
                    if n is None:
                        break
                req = fifo[n]
                del fifo[n]
                batch.append((peer, req, self.taken(peer, req, now)))
                left -= req.length
                if left <= 0:
                    break
                best = self.next_best(peer, fifo, live, n, req, now)
        return batch

    def _begun_rest(self, ready: list, now: float) -> list | None:
        """The round that finishes a piece begun for a peer (the module docstring):
        of the ready peers' requests for the rest of a piece whose first block last
        went to them (``begun``), the piece begun earliest, its requests in the
        peer's queue order while the peer's room lasts; None if none is asked."""
        begun = self.begun
        if not begun:
            return None
        found, found_at = None, math.inf
        for peer, fifo, live, room, _ in ready:
            for req in itertools.islice(fifo, self.scan):
                if req.begin == 0:
                    continue
                b = begun.get(req.index)
                if (b is not None and b[0] is peer and b[1] < found_at
                        and (req.index, req.begin, req.length) in live):
                    found, found_at = (peer, fifo, live, room, req.index), b[1]
        if found is None:
            return None
        peer, fifo, live, left, index = found
        batch = []
        n = 0
        while n < len(fifo) and left > 0:
            req = fifo[n]
            if (req.index != index or req.begin == 0
                    or (req.index, req.begin, req.length) not in live):
                n += 1
                continue
            del fifo[n]
            batch.append((peer, req, self.taken(peer, req, now)))
            left -= req.length
        return batch

    def _idle_best(self, peer: Hashable, fifo: deque, n: int, now: float) -> int | None:
        """Nothing fresh is asked and the peer's best request (at ``n``) is held:
        where its best request is among those whose idle hold is over (the module
        docstring), or None if every one weighed is still within it (they wait;
        ``wake_at`` is moved up to the end of the first such wait, and their
        pieces are ``waiting``)."""
        if self.idle_hold <= 0:
            return n
        sent, last_sent, heard = self.sent, self.last_sent, self.heard
        best, best_count, until = None, math.inf, math.inf
        prev = -1
        for k, req in enumerate(itertools.islice(fifo, self.scan)):
            index = req.index
            if index == prev:
                continue  # same as the request before it, which is older
            prev = index
            to = last_sent.get(index)
            if to is not None and to[0] is not peer:
                end = to[1] + self.idle_hold
                h = heard.get(index)
                if h is not None and h + self.announced_grace < end:
                    end = h + self.announced_grace
                if now < end:
                    until = min(until, end)
                    self.waiting.add(index)
                    continue
            count = sent.get(index, 0)
            if count < best_count:
                best, best_count = k, count
        if best is None:
            self.wake_at = until if self.wake_at is None else min(self.wake_at, until)
        return best

    def announced(self, peer: Hashable, index: int, now: float) -> bool:
        """``peer`` announced piece ``index`` (a HAVE). Whether a request the last
        round left waiting idle is for it: that wait now ends ``announced_grace``
        from now, and the caller's next round is due then (``wake_at`` after a
        round now)."""
        if index not in self.heard:
            self.heard[index] = now
        return index in self.waiting

    def best(self, peer: Hashable, fifo: deque, live: Container,
             now: float) -> tuple[int, bool] | None:
        """Where in the peer's queue its next request is, and whether it is held:
        ``best_request`` among the first ``scan`` (a peer asks for what it wants
        most first). Cancelled requests at the head are dropped on the way."""
        while fifo and (fifo[0].index, fifo[0].begin, fifo[0].length) not in live:
            fifo.popleft()
        if not fifo:
            return None
        return best_request(itertools.islice(fifo, self.scan), peer, self.sent,
                            self.last_sent, now, self.hold)

    def next_best(self, peer: Hashable, fifo: deque, live: Container, n: int,
                  taken: Req, now: float) -> tuple[int, bool] | None:
        """``best`` right after the request at ``n`` (the best) was taken, in O(1)
        when it can be: the next request of the same piece, now at ``n``, is the
        best again unless the piece's count went up (a first block was taken) or
        the request that just entered the scanned window beats it. (Before: every
        request ahead of ``n`` weighed more than the one taken, those after it no
        less; its piece's requests weigh the same or less now that it went to
        ``peer``; only the new entrant at scan-1 is unweighed.) Else a full scan."""
        scan = self.scan
        if taken.begin != 0 and n < len(fifo):
            nxt = fifo[n]
            if nxt.index == taken.index and (nxt.index, nxt.begin, nxt.length) in live:
                if len(fifo) < scan:
                    return n, False
                sent = self.sent
                count = sent.get(taken.index, 0)
                new = fifo[scan - 1]
                if new.index == taken.index or sent.get(new.index, 0) >= count:
                    return n, False
                to = self.last_sent.get(new.index)
                if to is not None and to[0] is not peer and now - to[1] < self.hold:
                    return n, False  # held: weighs more
        return self.best(peer, fifo, live, now)

    def taken(self, peer: Hashable, req: Req, now: float) -> Any:
        """A request is about to be answered: the piece went to ``peer`` now.
        Returns what that replaced, for ``untaken``."""
        prev = self.last_sent.get(req.index)
        self.last_sent[req.index] = (peer, now)
        if req.begin == 0:
            self.sent[req.index] = self.sent.get(req.index, 0) + 1
            begun = self.begun.get(req.index)
            self.begun[req.index] = (peer, now)
            return prev, begun
        return prev

    def untaken(self, peer: Hashable, req: Req, prev: Any) -> None:
        """A request taken was not answered after all: it does not count as sent."""
        if req.begin == 0:
            n = self.sent.get(req.index, 0) - 1
            if n > 0:
                self.sent[req.index] = n
            else:
                self.sent.pop(req.index, None)
            prev, begun = prev
            _put_back(self.begun, req.index, peer, begun)  # unless begun for another since
        _put_back(self.last_sent, req.index, peer, prev)  # unless taken by another since


def _put_back(table: dict[int, tuple[Hashable, float]], index: int, peer: Hashable,
              prev: tuple[Hashable, float] | None) -> None:
    """Undo ``peer``'s entry for piece ``index`` in ``table`` (``Rounds.last_sent``
    or ``begun``): ``prev`` again, or none, unless another peer's replaced it since."""
    cur = table.get(index)
    if cur is not None and cur[0] is peer:
        if prev is None:
            del table[index]
        else:
            table[index] = prev


class _Live:
    """Every request is live (``next_batch``'s plain lists have no cancels)."""

    def __contains__(self, key: object) -> bool:
        return True


def next_batch(asking: Iterable[tuple[Hashable, Sequence[Req], bool]],
               sent: dict[int, int], last_sent: dict[int, tuple[Hashable, float]],
               now: float, hold: float = HOLD_SECONDS,
               idle_hold: float = IDLE_HOLD_SECONDS) -> list[tuple[Hashable, int]]:
    """One round of ``Rounds.batch`` with room for one request per peer, over
    plain lists (left as they are, like ``sent`` and ``last_sent``): ``(peer,
    position)`` of the requests to answer now, in ``asking``'s order. Each entry is
    a peer, the requests of its queue to weigh (oldest first), and whether its
    socket has room for another block."""
    rounds = Rounds(hold, scan=sys.maxsize, idle_hold=idle_hold)  # the caller gave what to weigh
    rounds.sent, rounds.last_sent = dict(sent), dict(last_sent)
    live = _Live()
    queues = [(peer, list(requests), deque(requests), room)
              for peer, requests, room in asking]
    taken = rounds.batch([(peer, fifo, live, 1 if room else 0)
                          for peer, _, fifo, room in queues], now)
    where = {peer: requests for peer, requests, _, _ in queues}
    return [(peer, next(n for n, r in enumerate(where[peer]) if r is req))
            for peer, req, _ in taken]
