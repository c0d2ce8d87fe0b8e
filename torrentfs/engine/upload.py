"""The upload side of a torrent: answering peers' requests.

Every request of an unchoked peer for a verified piece is queued on its session; one
task (``Uploader.run``) answers them one block per peer in turn, within the upload
rate limit. A peer whose socket is backed up (more than ``UPLOAD_BACKLOG`` unsent) is
skipped until it drains, so unsent blocks wait here, where a cancel still drops them
at no cost (the sockets keep little unsent data: ``peer.tune``). A peer choked
meanwhile gets a reject (BEP 6). Each peer's next block is the oldest request for the
pieces uploaded least so far: a seed spreads pieces over its peers instead of sending
everyone the same ones, which they can then trade among themselves.

While some peer asks for a piece nobody has had from us yet, a request for a piece
that just went to another peer waits (up to ``HOLD_SECONDS``): the peer that got it
will soon announce it, and the asker then fetches it there and cancels here. Peers
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

import itertools
import logging
from collections import deque

import trio

from torrentfs.core import wire
from torrentfs.core.piecelayers import HashServer
from torrentfs.core.ratelimit import TokenBucket
from torrentfs.core.sparing import Sparing
from torrentfs.core.uploadpolicy import HOLD_SECONDS, next_batch
from torrentfs.disk.storage import StorageError
from torrentfs.net.peer import PeerSession

log = logging.getLogger("torrentfs.upload")

MAX_UPLOAD_QUEUE = 500      # requests a peer may have queued with us (what we
                            # advertise as BEP 10 'reqq': peerext.REQQ)
MAX_REFUSED = 4 * MAX_UPLOAD_QUEUE  # requests refused in a row before the peer is dropped
UPLOAD_BACKLOG = 512 << 10  # serve a peer more only while less than this awaits its socket,
UPLOAD_BACKLOG_MIN = 16 << 10  # ... or, for a slow peer, this or BACKLOG_SECONDS of its
BACKLOG_SECONDS = 0.02      # rate: what sits in a socket can no longer be cancelled or held
SCAN = 64                   # requests of a peer's queue weighed when choosing its next


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
        self._pieces_sent: dict[int, int] = {}  # piece -> times its first block went out
        self._last_sent: dict[int, tuple[PeerSession, float]] = {}  # piece -> to whom, when
        self._hashes: HashServer | None = None  # made at the first hash request
        # seed --super-seed: a piece already sent to another peer is refused (BEP 6
        # reject; core/sparing), so the asker fetches it there.
        self.sparing = (Sparing() if getattr(getattr(torrent, "options", None), "super_seed",
                                             False) else None)

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
        """Not sent if not sent yet: a cancelled request leaves the queue. (The FIFO
        drops its stale entries when they outnumber the live ones by a queue's worth,
        so request-cancel churn holds it bounded.)"""
        s.queued.discard((msg.index, msg.begin, msg.length))
        if len(s.upload_fifo) > len(s.queued) + MAX_UPLOAD_QUEUE:
            s.upload_fifo = deque(r for r in s.upload_fifo
                                  if (r.index, r.begin, r.length) in s.queued)

    def drained(self, s: PeerSession) -> None:
        """The peer's socket took everything we had for it."""
        if s.upload_fifo:
            self._wake.set()

    async def run(self) -> None:
        while True:
            batch = self._next_batch(trio.current_time())
            for s, req in batch:
                await self._serve_one(s, req)
            if not batch:
                self._wake = trio.Event()
                if not any(s.upload_fifo for s in self.torrent.sessions.values()):
                    await self._wake.wait()  # idle: only a new request wakes us
                    continue
                # A drained socket or a new request wakes us; so does the end of a
                # hold, at the latest.
                with trio.move_on_after(HOLD_SECONDS / 4):
                    await self._wake.wait()

    def _next_batch(self, now: float) -> list[tuple[PeerSession, wire.Request]]:
        """One request to answer now for each peer whose socket has room, taken off
        its queue. Fresh pieces first: those that just went to someone else wait
        while anyone asks for one that has not (see the module docstring), even a
        peer whose socket is still busy with what we sent it; with no fresh requests
        at all the uplink would idle, so held ones go."""
        asking = []
        for s in self.torrent.sessions.values():
            fifo, queued = s.upload_fifo, s.queued
            # Cancelled requests at the head are dropped on the way.
            while fifo and (fifo[0].index, fifo[0].begin, fifo[0].length) not in queued:
                fifo.popleft()
            if fifo and not s.closed:
                # Its best request is among the first SCAN (a peer asks for what it
                # wants most first): core/uploadpolicy.next_batch.
                asking.append((s, list(itertools.islice(fifo, SCAN)),
                               s.backlog < backlog_limit(s, now)))
        batch = []
        for s, n in next_batch(asking, self._pieces_sent, self._last_sent, now):
            batch.append((s, s.upload_fifo[n]))
            del s.upload_fifo[n]
        return batch

    async def _serve_one(self, s: PeerSession, req: wire.Request) -> None:
        key = (req.index, req.begin, req.length)
        if key not in s.queued or s.closed:
            return
        if s.am_choking or (self.sparing is not None and s.fast and not self._spare(s, req)):
            s.queued.discard(key)
            if s.fast:
                s.send(wire.Reject(*key))
            return
        wait = self.limit.take(req.length, trio.current_time())
        if wait:
            await trio.sleep(wait)
            if key not in s.queued or s.closed or s.am_choking:
                return
        try:
            data = await self.torrent.block(req.index, req.begin, req.length)
        except OSError as e:  # evicted from the disk cache meanwhile, or a disk error
            (log.debug if isinstance(e, StorageError) else log.warning)(
                "cannot read piece %d for upload: %s", req.index, e)
            s.queued.discard(key)
            if s.fast:
                s.send(wire.Reject(*key))
            return
        if key in s.queued and not s.closed and not s.am_choking:
            s.queued.discard(key)
            s.send(wire.Piece(req.index, req.begin, data))
            s.up.add(len(data), trio.current_time())
            self.uploaded += len(data)
            self._last_sent[req.index] = (s, trio.current_time())
            if self.sparing is not None:
                self.sparing.sent(s, req.index)
            if req.begin == 0:
                self._pieces_sent[req.index] = self._pieces_sent.get(req.index, 0) + 1
