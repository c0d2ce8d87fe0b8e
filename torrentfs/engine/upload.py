"""The upload side of a torrent: answering peers' requests.

Every request of an unchoked peer for a verified piece is queued on its session; one
task (``Uploader.run``) answers them in rounds, within the upload rate limit: each
round gives every peer whose socket has room as many blocks as fit in it, so a fast
peer is served many blocks per wake-up, each from memory or the page cache at once
when it can be (``Torrent.block_now``). A peer whose socket is backed up (more than
``UPLOAD_BACKLOG`` unsent) is skipped until it drains, so unsent blocks wait here,
where a cancel still drops them at no cost (the sockets keep little unsent data:
``peer.tune``). A round hands each peer's blocks to its socket itself
(``PeerSession.push``), and a socket's drain runs the next round in the draining
task when the uploader waits idle (``drained``): at a trickle a block costs one
sender step, not an uploader step and two sender steps. A request wakes the
uploader only if its peer's socket has room, and a wait sets a timer only while a
request is held (one deadline, kept until it passes). A peer choked
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
import math
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
        self._parked = False  # the task waits for ``_wake`` (``drained`` runs a round)
        self._deferred: list = []  # what a round out of the task left it to serve
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
        if s.backlog < UPLOAD_BACKLOG_MIN or s.backlog < backlog_limit(s, trio.current_time()):
            self._wake.set()  # else its socket is busy: its drain wakes the uploader

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
        """The peer's socket took everything we had for it. If the uploader waits
        idle, its round runs here and now (``_round_now``); else it is woken."""
        if not s.upload_fifo:
            return
        if self._parked and self.limit.unlimited:
            self._round_now()
        else:
            self._wake.set()

    def _round_now(self) -> None:
        """A round in the caller's task (a sender's, whose socket just drained): at
        a trickle every block went out on an uploader wake-up and task step of its
        own after the sender's, and then on a sender's step again. What must wait
        (a disk read) is left to the uploader's task, from the request on, in
        order; so is a round again (requests left with room: held, see ``run``)."""
        self._parked = False  # drains meanwhile (``push``) wake the task
        try:
            now = trio.current_time()
            asking = self._asking(now)
            batch = self.rounds.batch(asking, now) if asking else []
            rest, sent = self._serve_batch(batch, now)
            if rest:
                self._deferred.extend(rest)
                self._wake.set()
            elif self._left(asking, sent, now):
                self._wake.set()
        finally:
            self._parked = True

    def _serve_batch(self, batch: list, now: float) -> tuple[list, dict]:
        """Answer the requests of ``batch`` in order while none must wait; the rest,
        from the first that must (a disk read, the rate limit), is returned, with
        the bytes sent to each peer (counted in its rate, and pushed to its socket:
        one rate update and one send per peer)."""
        sent: dict[PeerSession, int] = {}
        rest: list = []
        for k, (s, req, prev) in enumerate(batch):
            n = self._serve_now(s, req, now)
            if n is None:
                rest = batch[k:]
                break
            if n:
                sent[s] = sent.get(s, 0) + n
            else:
                self._untaken(s, req, prev)
        for s, n in sent.items():
            s.up.add(n, now)
            self.uploaded += n
            s.push()  # its socket takes what it can now, the sender the rest
        return rest, sent

    async def _serve_rest(self, rest: list, now: float) -> None:
        """``_serve_batch``'s rest: the first awaited (``_serve_one``), and so on."""
        while rest:
            s, req, prev = rest[0]
            await self._serve_one(s, req, prev, now)
            rest, _ = self._serve_batch(rest[1:], now)

    async def run(self) -> None:
        hold_until = math.inf  # a round then at the latest: a hold may have ended
        while True:
            self._wake = trio.Event()  # what happens from here on wakes the next round
            now = trio.current_time()
            if self._deferred:  # a round in a sender's task left these
                rest, self._deferred = self._deferred, []
                await self._serve_rest(rest, now)
            asking = self._asking(now)
            batch = self.rounds.batch(asking, now) if asking else []
            rest, sent = self._serve_batch(batch, now)
            if rest:
                await self._serve_rest(rest, now)
            if self._wake.is_set():  # a drain or a request meanwhile: again, after others
                await trio.lowlevel.checkpoint()
                continue
            # A drained socket or a new request wakes us. A peer left requests with
            # room in its socket does not: they were held (the round may have taken
            # the last fresh request, after which held ones go: a round again at
            # once, as after every round that took any), or else until a hold ends
            # (a round then at the latest; the deadline is kept until it passes,
            # not set again at every wait).
            if self._left(asking, sent, now):
                if batch:
                    await trio.lowlevel.checkpoint()
                    continue
                if not now < hold_until < math.inf:
                    hold_until = now + HOLD_SECONDS / 4
                # An idle hold (nothing fresh asked) ends sooner: ``wake_at``.
                wake_at = self.rounds.wake_at
                with trio.move_on_at(hold_until if wake_at is None
                                     else min(hold_until, wake_at)):
                    await self._park()
            else:
                hold_until = math.inf
                await self._park()

    async def _park(self) -> None:
        """Wait for a wake-up; drains meanwhile run their rounds (``drained``)."""
        self._parked = True
        try:
            await self._wake.wait()
        finally:
            self._parked = False

    @staticmethod
    def _left(asking: list, sent: dict, now: float) -> bool:
        """Whether a peer of the round (``asking``) has requests left and room in
        its socket (for those sent blocks, ``sent``, worked out again)."""
        for s, fifo, _, room in asking:
            if fifo and (room if s not in sent else backlog_limit(s, now) - s.backlog) > 0:
                return True
        return False

    def _asking(self, now: float) -> list[tuple[PeerSession, deque, set, int]]:
        """Each peer with requests queued: its queue, its live keys and the room in
        its socket (``backlog_limit``), as ``Rounds.batch`` takes them."""
        return [(s, s.upload_fifo, s.queued, backlog_limit(s, now) - s.backlog)
                for s in self.torrent.sessions.values() if s.upload_fifo and not s.closed]

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
        return self.rounds.batch(self._asking(now), now)

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
        s.send_block(req.index, req.begin, data, wake=False)  # _serve_batch pushes
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
