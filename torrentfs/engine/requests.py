"""The block requests of one torrent's peers: ``Requests``, owned by a ``Torrent``
(``torrent.requests``).

Each unchoked peer is kept asked for blocks (``fill``): about PIPELINE_SECONDS of
its measured rate in all (while a read waits, at least its share of a piece: the
piece's blocks over ``spread`` peers), of which at most AHEAD_SECONDS for pieces no
read waits on (readahead, prefetch); at least ``floors`` (among leechers, two whole
pieces of readahead), and never more than the peer says it queues (BEP 10
``reqq``). So a read's blocks queue behind little at any peer; and
while a read waits, the requests its blocks queue behind at a peer (those below NOW
asked before its latest NOW request and due later: ``Picker.backlog``) are cancelled (BEP 3), so
that the peer serves the read's blocks next. The cancelled blocks are asked again,
after them, in the order they are wanted.

Every cancel the torrent sends goes through ``cancel``. A peer with the fast
extension (BEP 6) answers each: with the block (it was on its way) or with a
reject, before it answers any later request for the same block. So a reject that
answers a cancel is recognised as such (``rejected``) and never taken for the
refusal of a newer request. A block cancelled to make way for a read stays the
peer's in the picker until that answer (nobody else is asked for it, nor is the
peer again); once the peer has answered all such cancels, every peer picks, so
the blocks are asked again in one go and in order. A peer without the extension
may answer nothing: its cancelled blocks are freed at once (one that still comes
is kept if it was asked again meanwhile, else dropped as unrequested). A cancel
unanswered for CANCEL_TIMEOUT seconds is forgotten, and its block freed
(``expire``, from the ticker).

What it needs of its torrent: ``picker``, ``geometry``, ``seed_only``, ``spread``
(over how many peers a NOW piece's blocks are split), ``schedule`` (every peer
picks) and, if it has one, ``nearby`` (``--prefer-subnet``: a peer outside our subnet
is not asked for a piece a peer inside has, unless a read has waited on it
``AVOID_GRACE`` past its deadline; engine/locality).
"""

from __future__ import annotations

import trio

from torrentfs.core import wire
from torrentfs.core.picker import NOW
from torrentfs.core.priorities import SPLIT_LEECHERS
from torrentfs.core.topology import AVOID_GRACE
from torrentfs.net.peer import PeerSession

PIPELINE_MIN, PIPELINE_MAX = 16, 256  # block requests outstanding per peer ...
PIPELINE_SECONDS = 1.0      # ... sized to about this long at the peer's rate
AHEAD_MIN = 8               # of which for pieces no read waits on: at least this many ...
AHEAD_SECONDS = 0.5         # ... and at most this long at the peer's rate
AHEAD_PIECES = 2            # ... and at least this many whole pieces' blocks (floors)
CANCEL_TIMEOUT = 10.0       # a cancel of ours unanswered this long: its block is free


class Requests:
    """The request pipelines of a torrent's peers (see the module docstring)."""

    def __init__(self, torrent) -> None:
        self.torrent = torrent
        # Cancels sent to fast-extension peers and not answered yet: session ->
        # {(index, begin): (when sent, whether the picker still holds the block)}.
        self._cancelling: dict[PeerSession, dict[tuple[int, int], tuple[float, bool]]] = {}
        self.soon = False  # a schedule_soon is on its way
        # What it is for: the pieces whose blocks answered cancels freed (it stops
        # once they are all asked again), or None: every peer picks.
        self._freed: set[int] | None = None
        self._unasked: set[int] = set()  # freed by answered cancels, not scheduled yet
        self._skip: set[PeerSession] = set()  # peers that rejected, not asked by it

    def schedule_soon(self, nursery: trio.Nursery | None,
                      freed: set[int] | None = None,
                      skip: PeerSession | None = None) -> None:
        """The torrent's ``schedule`` once the running task yields, once however
        often asked: a read that raised its readahead (and waits for none of it) is
        answered before the peers pick, and the reader's next read waits for that
        answer. Until then a block arriving does not make its sender pick (the
        torrent checks ``soon``): every peer picks at once, fastest first, as if
        scheduled at once (else whichever peer's blocks came first took the lot)."""
        if skip is not None:
            self._skip.add(skip)
        if self.soon:
            if freed is None:
                self._freed = None
            elif self._freed is not None:
                self._freed |= freed
            return
        try:
            if nursery is None:
                raise RuntimeError("the torrent is not running")
            nursery.start_soon(self._scheduled)
        except RuntimeError:  # not running (yet, or any more): at once then
            skip, self._skip = self._skip, set()
            self.torrent.schedule(skip=skip, freed=freed)
        else:
            self.soon = True
            self._freed = None if freed is None else set(freed)

    async def _scheduled(self) -> None:
        freed, self._freed = self._freed, None
        skip, self._skip = self._skip, set()
        self.soon = False
        self.torrent.schedule(skip=skip, freed=freed)

    def floors(self) -> tuple[int, int]:
        """``(pipeline, ahead)`` at the least, whatever the peer's rate. Among
        other leechers (``SPLIT_LEECHERS`` of them or more: a cluster reading the
        same data) the readahead asked of a peer is AHEAD_PIECES whole pieces at
        least (at most half of PIPELINE_MAX), and the pipeline twice that; else
        PIPELINE_MIN and AHEAD_MIN.

        A peer's measured rate is often low or not known (it unchoked us a moment
        ago), so the floors decide what it is asked for. Below a piece's blocks a
        piece is split over several peers (the origin among them): each piece
        waits for its slowest part before it can be passed on, and the origin
        serves parts of many. 32 nodes at 2 MB/s in 256 KiB pieces (16 blocks,
        8 asked at most): 1.6-1.8 origin copies and 2.1-2.2 x the time of one
        node; with 2 pieces' worth, 1.0-1.2 and 1.7-1.8, and a fifth less CPU
        (docs/benchmarks.md, session 12). Pieces of up to 4 blocks keep the old
        floors; so does a read from seeds alone (scripts/bench: its reads are a
        piece or two of readahead at a time, and a deeper start measured slower)."""
        if self.torrent.picker.leechers() < SPLIT_LEECHERS:
            return PIPELINE_MIN, AHEAD_MIN
        g = self.torrent.geometry
        per_piece = -(-g.piece_length // g.block_size)
        ahead = min(max(AHEAD_MIN, AHEAD_PIECES * per_piece), PIPELINE_MAX // 2)
        return max(PIPELINE_MIN, 2 * ahead), ahead

    def sizes(self, s: PeerSession, now: float) -> tuple[int, int]:
        """``(pipeline, ahead)``: how many requests to keep outstanding with a peer,
        and how many of them at most for pieces no read waits on (``floors`` at
        the least)."""
        blocks_per_s = s.down.rate(now) / self.torrent.geometry.block_size
        pipeline_min, ahead_min = self.floors()
        pipeline = max(pipeline_min, min(PIPELINE_MAX, int(blocks_per_s * PIPELINE_SECONDS)))
        ahead = max(ahead_min, min(pipeline - AHEAD_MIN, int(blocks_per_s * AHEAD_SECONDS)))
        return pipeline, ahead

    def fill(self, s: PeerSession, batch: bool = False) -> None:
        """Top up the peer's requests with the most urgent blocks it has, and while
        a read waits, cancel what its blocks queue behind there (``Picker.backlog``)
        so that they come next. With ``batch`` (a block just came), only once the
        peer has drained to half its backlog: fewer, larger picks."""
        t = self.torrent
        if s.peer_choking or s.closed or not s.registered or t.seed_only:
            return
        outstanding = t.picker.outstanding(s)
        if batch and (outstanding > (PIPELINE_MAX - AHEAD_MIN) // 2 or t.picker.dry(s)):
            return  # drained to half of no backlog yet, or nothing to pick: skip the sizes
        held = self._held(s)
        outstanding -= held
        now = trio.current_time()
        pipeline, ahead = self.sizes(s, now)
        urgent = not batch and t.picker.urgent()
        below = None  # (counted once, for the pick too)
        if urgent:  # a read waits: what it would queue behind here is cancelled below
            below = t.picker.below_now(s)
            outstanding -= below - held
            # ... and the peer may take its share of a whole piece in one go, though
            # its rate is not known yet (a new connection: PIPELINE_MIN among seeds;
            # among leechers the floors cover it): a 1 MiB piece is 64 blocks, split
            # over ``spread`` peers; what does not fit waits a round trip. The
            # readahead stays capped by ``ahead``.
            g = t.geometry
            share = -(-(g.piece_length // g.block_size) // max(1, t.spread))
            pipeline = max(pipeline, min(PIPELINE_MAX, share))
        if s.reqq:  # what the peer says it queues (BEP 10)
            pipeline = min(pipeline, s.reqq)
            ahead = min(ahead, s.reqq)
        if outstanding < pipeline and not (batch and outstanding > ahead // 2):
            nearby = getattr(t, "nearby", None)  # --prefer-subnet (core/topology)
            picked = t.picker.pick(s, now, pipeline - outstanding, t.spread, ahead,
                                   nearby.avoid(s) if nearby else None, AVOID_GRACE, below)
            s.send_requests(picked)
            if picked and t.picker.priority(picked[0][0])[0] == NOW:  # NOW comes first
                self._make_way(s)
                return
        if urgent:
            self._make_way(s)

    def _held(self, s: PeerSession) -> int:
        """How many of the peer's outstanding requests are cancelled, awaiting its
        answer."""
        pending = self._cancelling.get(s)
        return sum(1 for _, held in pending.values() if held) if pending else 0

    def _make_way(self, s: PeerSession) -> None:
        """Cancel what a read's blocks queue behind at the peer."""
        pending = self._cancelling.get(s, {})
        for index, begin, length in self.torrent.picker.backlog(s):
            if (index, begin) not in pending:
                self.cancel(s, index, begin, length, hold=True)

    def cancel(self, s, index: int, begin: int, length: int, hold: bool = False) -> None:
        """Send a cancel to a peer (or a web seed). With ``hold``, the picker keeps
        the block the peer's until the peer answers (a fast-extension peer) or
        frees it now (any other); without, the caller has already let it go."""
        s.send(wire.Cancel(index, begin, length))
        if getattr(s, "fast", False):
            self._cancelling.setdefault(s, {})[(index, begin)] = (trio.current_time(), hold)
        elif hold:
            self.torrent.picker.request_dropped(s, index, begin)

    def rejected(self, s: PeerSession, index: int, begin: int) -> None:
        """The peer rejected a request. If that answered a cancel of ours, its block
        is freed if we held it, and once every cancel is answered every peer picks.
        A reject of the peer's own frees the block for other peers once the
        running task yields (a choke's run of rejects: one schedule, until the
        freed blocks are asked again); the peer is not asked again right away (it
        would be asked the same; the ticker refills it)."""
        t = self.torrent
        pending = self._cancelling.get(s)
        answered = pending.pop((index, begin), None) if pending else None
        if answered is None:
            t.picker.request_dropped(s, index, begin)
            t.schedule_soon({index}, skip=s)
            return
        if not pending:
            del self._cancelling[s]
        if answered[1]:
            t.picker.request_dropped(s, index, begin)
            self._unasked.add(index)
            if not any(held for _, held in pending.values()):
                # Once the running task yields: the peers whose answers came in
                # the same receive round pick once, together, until the freed
                # blocks are all asked again (``schedule_soon``).
                t.schedule_soon(self._unasked)
                self._unasked = set()

    def answered(self, s: PeerSession, index: int, begin: int) -> None:
        """A block came from the peer: a cancel of it, if any, is answered."""
        pending = self._cancelling.get(s)
        if pending:
            pending.pop((index, begin), None)

    def forget(self, s: PeerSession) -> None:
        """The peer dropped all our requests (closed, choked without the fast
        extension, or snubbed us)."""
        self._cancelling.pop(s, None)

    def expire(self, now: float) -> None:
        """Forget cancels unanswered for CANCEL_TIMEOUT seconds, freeing the blocks
        held for them."""
        picker = self.torrent.picker
        for s, pending in list(self._cancelling.items()):
            for key, (since, held) in list(pending.items()):
                if now - since >= CANCEL_TIMEOUT:
                    del pending[key]
                    if held:
                        picker.request_dropped(s, *key)
            if not pending:
                del self._cancelling[s]
