"""The upload side of a torrent: answering peers' requests.

Every request of an unchoked peer for a verified piece is queued on its session; one
task (``Uploader.run``) answers them one block per peer in turn, within the upload
rate limit. A peer whose socket is backed up (more than ``UPLOAD_BACKLOG`` unsent) is
skipped until it drains, so unsent blocks wait here, where a cancel still drops them
at no cost (the sockets keep little unsent data: ``peer.tune``). A peer choked
meanwhile gets a reject (BEP 6). Each peer's next block is the oldest request for the
pieces uploaded least so far: a seed spreads pieces over its peers instead of sending
everyone the same ones, which they can then trade among themselves.

A peer's queue is bounded (``MAX_UPLOAD_QUEUE`` requests; a repeated request is one
request); beyond it requests are refused, and a peer refused ``MAX_REFUSED`` times in
a row (a request flood, or requests while choked) is dropped.
"""

from __future__ import annotations

import logging
from collections import deque

import trio

from . import wire
from .peer import PeerSession
from .ratelimit import TokenBucket

log = logging.getLogger("torrentfs.upload")

MAX_UPLOAD_QUEUE = 256      # requests a peer may have queued with us
MAX_REFUSED = 4 * MAX_UPLOAD_QUEUE  # requests refused in a row before the peer is dropped
UPLOAD_BACKLOG = 16 << 10   # serve a peer more only while less than this awaits its socket


class Uploader:
    """Answers the requests of ``torrent``'s peers (see the module docstring)."""

    def __init__(self, torrent, limit: TokenBucket) -> None:
        self.torrent = torrent
        self.limit = limit
        self.uploaded = 0
        self._wake = trio.Event()
        self._pieces_sent: dict[int, int] = {}  # piece -> times its first block went out

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
            served = False
            for s in list(self.torrent.sessions.values()):
                if s.upload_fifo and s.backlog < UPLOAD_BACKLOG and not s.closed:
                    await self._serve_one(s, self._next_request(s))
                    served = True
            if not served:
                self._wake = trio.Event()
                await self._wake.wait()

    def _next_request(self, s: PeerSession) -> wire.Request:
        """The peer's next request to answer: the oldest of those for the pieces we
        have uploaded least. A piece already sent to someone else waits a little, and
        usually the peer gets it from that someone and cancels: seeds spread pieces
        instead of sending everyone the same ones."""
        fifo, sent = s.upload_fifo, self._pieces_sent
        best = 0
        if len(fifo) > 1:
            low = sent.get(fifo[0].index, 0)
            for n, req in enumerate(fifo):
                c = sent.get(req.index, 0)
                if c < low:
                    best, low = n, c
                    if not c:
                        break
        req = fifo[best]
        del fifo[best]
        return req

    async def _serve_one(self, s: PeerSession, req: wire.Request) -> None:
        key = (req.index, req.begin, req.length)
        if key not in s.queued or s.closed:
            return
        if s.am_choking:
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
        except OSError as e:
            log.warning("cannot read piece %d for upload: %s", req.index, e)
            return
        if key in s.queued and not s.closed and not s.am_choking:
            s.queued.discard(key)
            s.send(wire.Piece(req.index, req.begin, data))
            s.up.add(len(data), trio.current_time())
            self.uploaded += len(data)
            if req.begin == 0:
                self._pieces_sent[req.index] = self._pieces_sent.get(req.index, 0) + 1
