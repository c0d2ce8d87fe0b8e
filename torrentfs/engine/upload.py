"""The upload side of a torrent: answering peers' requests.

Every request of an unchoked peer for a verified piece is queued on its session; one
task (``Uploader.run``) answers them in rounds, within the upload rate limit: each
round gives every peer whose socket has room as many blocks as fit in it, so a fast
peer is served many blocks per wake-up, each from memory or the page cache at once
when it can be (``Torrent.block_now``). A peer whose socket is backed up (more than
``UPLOAD_BACKLOG`` unsent) is skipped until it drains, so unsent blocks wait here,
where a cancel still drops them at no cost (the sockets keep little unsent data:
``peer.tune``). A peer choked
meanwhile gets a reject (BEP 6). Each peer's next block is the oldest request for the
pieces uploaded least so far: a seed spreads pieces over its peers instead of sending
everyone the same ones, which they can then trade among themselves.

While some peer asks for a piece nobody has had from us yet, a request for a piece
that just went to another peer waits (up to ``HOLD_SECONDS``): the peer that got it
will soon announce it, and the asker then fetches it there and cancels here. While
nobody does, it still waits ``IDLE_HOLD_SECONDS``, or ``ANNOUNCED_GRACE`` after a
peer's HAVE of the piece (``announced``; the rounds wake when the wait ends:
``Rounds.wake_at``), so the uplink sends no second copy the asker could have had
from that peer a moment later. Peers
reading the same file at once ask for the same pieces at once; without this a
scarce uplink (an origin's) sends the same pieces again and again instead of new
ones, and the whole swarm waits for it.

A peer's queue is bounded (``MAX_UPLOAD_QUEUE`` requests; a repeated request is one
request); beyond it requests are refused, and a peer refused ``MAX_REFUSED`` times in
a row (a request flood, or requests while choked) is dropped.

BEP 52 hash requests are answered at once from the torrent's piece layers
(``piecelayers.HashServer``), or rejected (a v1 torrent, block hashes we do not
keep); hashes nobody asked for drop the peer.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import trio

from torrentfs.core import wire
from torrentfs.core.piecelayers import HashServer
from torrentfs.core.ratelimit import TokenBucket
from torrentfs.core.sparing import Sparing
from torrentfs.core.uploadpolicy import HOLD_SECONDS, IDLE_HOLD_SECONDS, Rounds
from torrentfs.disk.storage import StorageError
from torrentfs.net.peer import PeerSession

log = logging.getLogger("torrentfs.upload")

MAX_UPLOAD_QUEUE = 500      # requests a peer may have queued with us (what we
                            # advertise as BEP 10 'reqq': peerext.REQQ)
MAX_REFUSED = 4 * MAX_UPLOAD_QUEUE  # requests refused in a row before the peer is dropped
UPLOAD_BACKLOG = 512 << 10  # serve a peer more only while less than this awaits its socket,
UPLOAD_BACKLOG_MIN = 16 << 10  # ... or, for a slow peer, this or BACKLOG_SECONDS of its
BACKLOG_SECONDS = 0.02      # rate: what sits in a socket can no longer be cancelled or held


def backlog_limit(s: PeerSession, now: float) -> int:
    """How much may wait in ``s``'s socket before we serve it more: enough to keep a
    fast peer's link busy between two turns (up to ``UPLOAD_BACKLOG``), little for a
    slow one, so that a request for a piece another peer has just been sent still
    waits here, where the hold can keep it and a cancel drops it at no cost (an
    origin's scarce uplink must not send the same piece twice)."""
    return min(UPLOAD_BACKLOG, max(UPLOAD_BACKLOG_MIN, int(s.up.rate(now) * BACKLOG_SECONDS)))


class Uploader:
    """Answers the requests of ``torrent``'s peers (see the module docstring)."""

    def __init__(self, torrent, limit: TokenBucket) -> None:
        self.torrent = torrent
        self.limit = limit
        self.uploaded = 0
        self._wake = trio.Event()
        self._hashes: HashServer | None = None  # made at the first hash request
        # seed --super-seed: a piece already sent to another peer is refused (BEP 6
        # reject; core/sparing), so the asker fetches it there.
        self.sparing = (Sparing() if getattr(getattr(torrent, "options", None), "super_seed",
                                             False) else None)
        # What went out, to whom, when; each round's choice. A super-seeding origin
        # refuses what a plain one holds while nothing fresh is asked: no idle hold.
        self.rounds = Rounds(idle_hold=0.0 if self.sparing is not None else IDLE_HOLD_SECONDS)

    def closed(self, s: PeerSession) -> None:
        """The peer is gone."""
        if self.sparing is not None:
            self.sparing.forget(s)

    def _spare(self, s: PeerSession, req: wire.Request) -> bool:
        """--super-seed: whether to serve this request (core/sparing)."""
        return self.sparing.serve(s, req.index, trio.current_time())

    def hash_message(self, s: PeerSession, msg: wire.Message) -> None:
        """A BEP 52 hash request (answered or rejected), or hashes or a reject we
        never asked for (the download side of a torrent asks for none)."""
        if isinstance(msg, wire.HashRequest):
            v2 = self.torrent.meta.v2
            if self._hashes is None and v2 is not None:
                self._hashes = HashServer(v2)
            answer = self._hashes.answer(msg) if self._hashes is not None else wire.HashReject(
                msg.pieces_root, msg.base_layer, msg.index, msg.length, msg.proof_layers)
            log.info("%r: hash request for %d hashes at layer %d from %d: %s", s,
                     msg.length, msg.base_layer, msg.index,
                     "answered" if isinstance(answer, wire.Hashes) else "rejected")
            s.send(answer)
        elif isinstance(msg, wire.Hashes):
            s.close("sent hashes we never asked for")

    def request(self, s: PeerSession, msg: wire.Request) -> None:
        """A peer asked for a block: queue it, or reject it (BEP 6) if we may not or
        cannot serve it."""
        t = self.torrent
        ok = (not s.am_choking and msg.index in t.have
              and t.geometry.is_within_piece(msg.index, msg.begin, msg.length)
              and len(s.queued) < MAX_UPLOAD_QUEUE)
        if not ok:
            if not self._refuse(s) and s.fast:
                s.send(wire.Reject(msg.index, msg.begin, msg.length))
            return
        key = (msg.index, msg.begin, msg.length)
        if key in s.queued:  # asked twice: answered once
            self._refuse(s)
            return
        s.refused = 0
        s.queued.add(key)
        s.upload_fifo.append(msg)
        self._wake.set()

    def _refuse(self, s: PeerSession) -> bool:
        """Count a refused request; past MAX_REFUSED in a row, drop the peer (True)."""
        s.refused += 1
        if s.refused > MAX_REFUSED:
            s.close(f"{s.refused} requests refused in a row")
            return True
        return False

    def cancel(self, s: PeerSession, msg: wire.Cancel) -> None:
        """Not sent if not sent yet: a cancelled request leaves the queue, and a
        fast-extension peer hears a reject for it (BEP 6: a cancel is answered with
        the block or a reject; engine/requests.py keeps a cancelled block the peer's
        until that answer, CANCEL_TIMEOUT at most, so without it two torrentfs
        daemons held a read's block 10 s). (The FIFO drops its stale entries when
        they outnumber the live ones by a queue's worth, so request-cancel churn
        holds it bounded.)"""
        key = (msg.index, msg.begin, msg.length)
        if key in s.queued:
            s.queued.discard(key)
            if s.fast:
                s.send(wire.Reject(*key))
        if len(s.upload_fifo) > len(s.queued) + MAX_UPLOAD_QUEUE:
            s.upload_fifo = deque(r for r in s.upload_fifo
                                  if (r.index, r.begin, r.length) in s.queued)

    def announced(self, s: PeerSession, indexes) -> None:
        """The peer announced these pieces (HAVEs): a request left waiting for one
        of them (core/uploadpolicy's idle hold) waits a moment more at most, so
        the rounds run again to time that."""
        rounds = self.rounds
        if rounds.idle_hold <= 0:
            return
        now = trio.current_time()
        if any([rounds.announced(s, i, now) for i in indexes]):
            self._wake.set()

    def drained(self, s: PeerSession) -> None:
        """The peer's socket took everything we had for it."""
        if s.upload_fifo:
            self._wake.set()

    async def run(self) -> None:
        while True:
            now = trio.current_time()
            batch = self._next_batch(now)
            sent: dict[PeerSession, int] = {}
            for s, req, prev in batch:
                n = self._serve_now(s, req, now)
                if n is None:  # it must wait (a disk read, the rate limit)
                    await self._serve_one(s, req, prev, now)
                elif n:
                    sent[s] = sent.get(s, 0) + n
                else:
                    self._untaken(s, req, prev)
            for s, n in sent.items():  # one rate update per peer and round
                s.up.add(n, now)
                self.uploaded += n
            if not batch:
                self._wake = trio.Event()
                if not any(s.upload_fifo for s in self.torrent.sessions.values()):
                    await self._wake.wait()  # idle: only a new request wakes us
                    continue
                # A drained socket or a new request wakes us; so does the end of a
                # hold, at the latest (of an idle one, when it ends: ``wake_at``).
                until = now + HOLD_SECONDS / 4
                if self.rounds.wake_at is not None:
                    until = min(until, self.rounds.wake_at)
                with trio.move_on_at(until):
                    await self._wake.wait()
            else:
                # Many blocks went out at once: let the senders and receivers run
                # (their sockets take what we queued) before the next round.
                await trio.lowlevel.checkpoint()

    def _next_batch(self, now: float) -> list[tuple[PeerSession, wire.Request, Any]]:
        """The requests to answer now, taken off their queues: for each peer whose
        socket has room, its next ones while the room lasts (one at least). Fresh
        pieces first: those that just went to someone else wait while anyone asks
        for one that has not (see the module docstring), even a peer whose socket is
        still busy with what we sent it; with no fresh requests at all, held ones
        go once their piece went out ``IDLE_HOLD_SECONDS`` ago, or a peer announced
        it ``ANNOUNCED_GRACE`` ago (the asker may take it from the peer that got
        it meanwhile). The rule is core/uploadpolicy's ``Rounds``,
        which the swarm simulator runs too; each request comes with what its taking
        replaced (``_serve_one`` puts that back if the request is not served)."""
        return self.rounds.batch(
            [(s, s.upload_fifo, s.queued, backlog_limit(s, now) - s.backlog)
             for s in self.torrent.sessions.values() if s.upload_fifo and not s.closed],
            now)

    def _untaken(self, s: PeerSession, req: wire.Request, prev: Any) -> None:
        """A request taken was not answered after all: it does not count as sent."""
        self.rounds.untaken(s, req, prev)

    @property
    def _pieces_sent(self) -> dict[int, int]:  # piece -> times its first block went out
        return self.rounds.sent

    @property
    def _last_sent(self) -> dict[int, tuple[PeerSession, float]]:  # piece -> to whom, when
        return self.rounds.last_sent

    def _serve_now(self, s: PeerSession, req: wire.Request, now: float) -> int | None:
        """``_serve_one`` when it need not wait, the common case: the bytes sent
        (0 if it was not served), or None if it must wait (``_serve_one`` then);
        the caller counts the bytes in the peer's rate."""
        key = (req.index, req.begin, req.length)
        queued = s.queued
        if key not in queued or s.closed:
            return 0
        if s.am_choking or (self.sparing is not None and s.fast and not self._spare(s, req)):
            queued.discard(key)
            if s.fast:
                s.send(wire.Reject(*key))
            return 0
        if not self.limit.unlimited:
            return None
        data = self.torrent.block_now(req.index, req.begin, req.length)
        if data is None:
            return None
        queued.discard(key)
        s.send_block(req.index, req.begin, data)
        if self.sparing is not None:
            self.sparing.sent(s, req.index)
        return len(data)

    async def _serve_one(self, s: PeerSession, req: wire.Request, prev: Any = None,
                         now: float | None = None) -> None:
        """Answer a request taken by ``_next_batch`` (``prev``: what its taking
        replaced): its block from memory or the page cache at once
        (``block_now``), else read in a worker thread; or a reject if it may no
        longer be served."""
        if not await self._answer(s, req, now):
            self._untaken(s, req, prev)

    async def _answer(self, s: PeerSession, req: wire.Request, now: float | None) -> bool:
        """``_serve_one``: whether the block was sent."""
        key = (req.index, req.begin, req.length)
        if key not in s.queued or s.closed:
            return False
        if s.am_choking or (self.sparing is not None and s.fast and not self._spare(s, req)):
            s.queued.discard(key)
            if s.fast:
                s.send(wire.Reject(*key))
            return False
        if now is None:
            now = trio.current_time()
        if not self.limit.unlimited:
            wait = self.limit.take(req.length, now)
            if wait:
                await trio.sleep(wait)
                if key not in s.queued or s.closed or s.am_choking:
                    return False
                now = trio.current_time()
        data = self.torrent.block_now(req.index, req.begin, req.length)
        if data is None:
            try:
                data = await self.torrent.block(req.index, req.begin, req.length)
            except OSError as e:  # evicted from the disk cache meanwhile, or a disk error
                (log.debug if isinstance(e, StorageError) else log.warning)(
                    "cannot read piece %d for upload: %s", req.index, e)
                s.queued.discard(key)
                if s.fast:
                    s.send(wire.Reject(*key))
                return False
            if key not in s.queued or s.closed or s.am_choking:
                return False
            now = trio.current_time()
        s.queued.discard(key)
        s.send_block(req.index, req.begin, data)
        s.up.add(len(data), now)
        self.uploaded += len(data)
        if self.sparing is not None:
            self.sparing.sent(s, req.index)
        return True
