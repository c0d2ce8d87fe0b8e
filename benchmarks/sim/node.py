"""One simulated node (or the origin): the real picker, choker and readahead of
torrentfs, and the uploader's choice of the next request (core/uploadpolicy), wired
the way engine/torrent.py, engine/reads.py and engine/upload.py wire them; messages
between nodes go through the swarm (``Swarm.send``), which adds the latency."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from benchmarks.sim.links import BLOCK, Link
from torrentfs.core.bitfield import Bitfield
from torrentfs.core.choker import Choker, PeerView
from torrentfs.core.geometry import Geometry
from torrentfs.core.havecadence import HaveCadence
from torrentfs.core.picker import NOW, READAHEAD, Picker
from torrentfs.core.ratelimit import Rate
from torrentfs.core.readahead import Readahead
from torrentfs.core.sparing import Sparing
from torrentfs.core.topology import AVOID_GRACE, LocalHave, RemoteGate
from torrentfs.core.uploadpolicy import Rounds
from torrentfs.engine.haves import HAVE_DELAY
from torrentfs.engine.pieces import NOT_INTERESTED_AFTER
from torrentfs.engine.reads import (
    NOW_SLACK,
    READAHEAD_DEADLINE,
    READAHEAD_MAX,
    READAHEAD_MIN,
    READAHEAD_STEP,
)
from torrentfs.engine.requests import (
    AHEAD_MIN,
    AHEAD_SECONDS,
    PIPELINE_MAX,
    PIPELINE_MIN,
    PIPELINE_SECONDS,
)
from torrentfs.engine.torrent import LEECHER_JITTER, SPREAD_MAX

if TYPE_CHECKING:
    from benchmarks.sim.swarm import Swarm


class Req:
    """A queued request for one (simulated) block."""

    __slots__ = ("index", "begin", "length")

    def __init__(self, index: int, begin: int, length: int) -> None:
        self.index = index
        self.begin = begin
        self.length = length


class Conn:
    """One node's side of a connection to a peer."""

    __slots__ = ("view", "peer_choking", "am_interested", "queue", "queued", "down", "up",
                 "remote", "cancelling")

    def __init__(self, peer: Node, now: float, remote: bool) -> None:
        # What the choker sees of the peer, kept from round to round: whether it is
        # interested in us and whether we choke it (set where they change), and the
        # rate a round ranks by, read at the round (``Node.rechoke``).
        self.view = PeerView(peer, False, True, 0.0, 0.0, False, now)
        self.remote = remote               # another rack, and we prefer our own
        self.cancelling: dict[tuple[int, int], bool] = {}  # our cancels it has not
                                           # answered, by (index, begin): held?
        self.peer_choking = True
        self.am_interested = False
        self.queue: deque[Req] = deque()   # its requests to us, oldest first
        self.queued: set[tuple[int, int, int]] = set()   # those not cancelled
        self.down = Rate()
        self.up = Rate()


class Node(int):
    """A node is its number (an int): the real cores key peers by it in dicts and
    sets, which then hash and order nodes in C, and iterate in the same order in
    every process, so a run depends only on its parameters and seed, not on what
    else was imported (the origin is 0, nodes 1..N)."""

    def __new__(cls, swarm: Swarm, idx: int, *args: object, **kw: object) -> Node:
        return super().__new__(cls, idx)

    def __init__(self, swarm: Swarm, idx: int, rack: int, geometry: Geometry,
                 up_rate: float, down_rate: float, origin: bool) -> None:
        self.swarm = swarm
        self.idx = idx
        self.name = "origin" if origin else f"node{idx}"
        self.rack = rack
        self.origin = origin
        self.g = geometry
        have = Bitfield(geometry.num_pieces)
        if origin:
            for i in range(geometry.num_pieces):
                have.add(i)
        self.have = have
        self.picker = Picker(geometry, have, salt=swarm.rng.getrandbits(32),
                             jitter=LEECHER_JITTER)
        # --prefer-subnet (a rack is a subnet): core/topology's decisions.
        self.prefer = swarm.params.prefer_rack
        self.local_have = LocalHave(geometry.num_pieces)
        self.gate = RemoteGate(self.local_have)
        # --super-seed on the origin: core/sparing.
        self.sparing = Sparing() if origin and swarm.params.super_seed else None
        self.choker = Choker()
        self.up = Link(up_rate)
        self.down = Link(down_rate) if down_rate else None
        self.conns: dict[Node, Conn] = {}
        self.unchoking: set[Node] = set()      # peers not choking us
        self.interested: dict[Node, Conn] = {}  # peers interested in us
        self.dull: dict[Node, float] = {}       # nothing more for us since (engine/pieces)
        self.asking: dict[Node, None] = {}     # peers with queued requests, in turn
        self.busy = False                      # an uplink turn is scheduled
        self.have_batch: list = []             # (piece, its sources), not yet sent
        self.lazy_haves: dict[Node, list[int]] = {}  # haves for the next message
        # When they leave (engine/haves.py, core/havecadence).
        self.have_cadence = HaveCadence(HAVE_DELAY, swarm.params.have_at_once)
        # The uploader's memory and rounds; a super-seeding origin refuses what a
        # plain one holds while nothing fresh is asked (engine/upload.py).
        self.rounds = Rounds(idle_hold=0.0) if self.sparing is not None else Rounds()
        self.wake_due: float | None = None     # a turn is due then (an idle hold ends)
        self.alive = False
        self.leaves = False                    # leaves at half its read
        self.joined_at: float | None = None
        self.done_at: float | None = None
        self.rx_origin = self.rx_peers = self.tx = 0
        self.rx_blocks = 0                     # simulated blocks received
        # The reader (engine/reads.py's ReadHandle and read).
        f = swarm.factor
        self.readahead = Readahead(max(1, READAHEAD_MIN // f), max(1, READAHEAD_MAX // f))
        self.raised: set[int] = set()
        self.window: tuple[int, int] | None = None
        self.pos = 0
        self.read_len = 0
        self.waiting: set[int] = set()
        self.wait_owner: object | None = None
        self.wait_deadline = 0.0

    def __bool__(self) -> bool:   # the origin (0) too
        return True

    def __repr__(self) -> str:
        return self.name

    __str__ = __repr__

    @property
    def seeding(self) -> bool:
        return self.origin or self.have.complete

    # -- connections ----------------------------------------------------------------

    def connect(self, peer: Node, now: float) -> None:
        remote = self.prefer and peer.rack != self.rack
        self.conns[peer] = Conn(peer, now, remote)
        self.picker.add_peer(peer)
        if peer.have.count:
            self.picker.got_bitfield(peer, peer.have)
            if self.prefer and not remote:
                self.local_have.have_all(peer, peer.have)

    def drop(self, peer: Node) -> None:
        """The peer left: its requests are freed, its slot rechoked."""
        c = self.conns.pop(peer, None)
        if c is None:
            return
        self.picker.remove_peer(peer)
        if self.prefer and not c.remote:
            self.local_have.forget(peer)
        self.unchoking.discard(peer)
        self.asking.pop(peer, None)
        self.interested.pop(peer, None)
        if not c.view.choked:
            self.rechoke()
        self.schedule()

    def update_interest(self, peer: Node) -> None:
        c = self.conns[peer]
        if not self.origin and not c.am_interested and self.picker.is_interesting(peer):
            c.am_interested = True
            self.swarm.send(self, peer, peer.on_interested)

    # -- choking --------------------------------------------------------------------

    def rechoke(self) -> None:
        now = self.swarm.loop.now
        seeding = self.seeding
        # A round ranks the interested peers alone, by what they give us (while we
        # leech) or take from us (seeding): only those rates are read (pure reads).
        if seeding:
            for c in self.interested.values():
                c.view.up_rate = c.up.rate(now)
        else:
            for c in self.interested.values():
                c.view.down_rate = c.down.rate(now)
        count = self.picker.pieces_of
        for p, c in self.interested.items():
            c.view.pieces = count(p)
        decision = self.choker.rechoke([c.view for c in self.conns.values()], now, seeding)
        for p in decision.choke:
            c = self.conns[p]
            c.view.choked = True
            c.queue.clear()   # with BEP 6 each is rejected: the peer hears the choke
            c.queued.clear()
            self.asking.pop(p, None)
            self.swarm.send(self, p, p.on_choke)
        for p in decision.unchoke:
            self.conns[p].view.choked = False
            self.swarm.send(self, p, p.on_unchoke)

    def tick(self) -> None:
        """engine/torrent.py's one-second ticker: the regular rechoke when due, and
        every pipeline topped up."""
        if not self.alive:
            return
        if self.choker.due(self.swarm.loop.now):
            self.rechoke()
        self.lose_interest()
        self.swarm.lazy_haves(self)  # engine/torrent.py's tick: ``flush_all``
        self.schedule()
        self.swarm.loop.at(self.swarm.loop.now + 1.0, self.tick)

    def lose_interest(self) -> None:
        """engine/pieces.py's ``lose_interest``: NotInterested to the peers that have
        had nothing more for us for NOT_INTERESTED_AFTER seconds."""
        now = self.swarm.loop.now
        for p, since in list(self.dull.items()):
            c = self.conns.get(p)
            if c is None or not c.am_interested or self.picker.is_interesting(p):
                del self.dull[p]
            elif now - since >= NOT_INTERESTED_AFTER:
                del self.dull[p]
                c.am_interested = False
                self.swarm.send(self, p, p.on_not_interested)

    def on_interested(self, peer: Node) -> None:
        c = self.conns[peer]
        c.view.interested = True
        self.interested[peer] = c
        if self.have.count and self.choker.worth_round(self.swarm.loop.now):
            self.rechoke()

    def on_not_interested(self, peer: Node) -> None:
        c = self.conns[peer]
        c.view.interested = False
        self.interested.pop(peer, None)
        if not c.view.choked:
            self.rechoke()

    def on_choke(self, peer: Node) -> None:
        self.conns[peer].peer_choking = True
        self.conns[peer].cancelling.clear()   # every request is rejected with it
        self.unchoking.discard(peer)
        self.picker.peer_choked(peer)
        self.schedule()

    def on_unchoke(self, peer: Node) -> None:
        self.conns[peer].peer_choking = False
        self.unchoking.add(peer)
        # engine/havesin's ``unchoked``: the seeds spared the pieces it has.
        for seed, index, begin, _ in self.picker.spare_seeds_to(peer):
            self.cancel(seed, index, begin)
        self.fill(peer)

    # -- downloading ----------------------------------------------------------------

    def fill(self, peer: Node, batch: bool = False) -> None:
        c = self.conns[peer]
        if c.peer_choking or self.origin or self.done_at is not None:
            return
        picker = self.picker
        if not c.remote and picker.dry(peer):   # its pick would find nothing
            if not batch and picker.urgent():
                self._make_way(peer, c)
            return
        outstanding = picker.outstanding(peer)
        if batch and outstanding > (PIPELINE_MAX - AHEAD_MIN) // 2 // self.swarm.factor:
            return
        if c.cancelling:
            outstanding -= sum(1 for held in c.cancelling.values() if held)
        now = self.swarm.loop.now
        f = self.swarm.factor
        # engine/requests.py's Requests.sizes, in blocks of the real size, then in
        # simulated blocks (one per piece).
        blocks_per_s = c.down.rate(now) * f / BLOCK
        pipeline = max(PIPELINE_MIN, min(PIPELINE_MAX, int(blocks_per_s * PIPELINE_SECONDS)))
        ahead = max(AHEAD_MIN, min(pipeline - AHEAD_MIN, int(blocks_per_s * AHEAD_SECONDS)))
        pipeline, ahead = -(-pipeline // f), -(-ahead // f)
        if outstanding < pipeline and not (batch and outstanding > ahead // 2):
            spread = max(1, min(SPREAD_MAX, len(self.unchoking)))
            avoid = self.gate if c.remote else None
            picked = picker.pick(peer, now, pipeline - outstanding, spread, ahead,
                                 avoid, AVOID_GRACE)
            for index, begin, length in picked:
                self.swarm.send(self, peer, peer.on_request, index, begin, length)
            if picked and picker.priority(picked[0][0])[0] == NOW:
                self._make_way(peer, c)
                return
        if not batch and picker.urgent():
            self._make_way(peer, c)

    def _make_way(self, peer: Node, c: Conn) -> None:
        """engine/requests.py: cancel what a read's blocks queue behind at the peer,
        holding each until the peer answers (with the block or a reject)."""
        for index, begin, _ in self.picker.backlog(peer):
            if (index, begin) not in c.cancelling:
                self.cancel(peer, index, begin, hold=True)

    def cancel(self, peer: Node, index: int, begin: int, hold: bool = False) -> None:
        """engine/requests.py's Requests.cancel (every peer here has the fast
        extension): the cancel is remembered until the peer answers it."""
        c = self.conns.get(peer)
        if c is not None:
            c.cancelling[index, begin] = hold
            self.swarm.send(self, peer, peer.on_cancel, index, begin)

    def schedule(self, skip: Node | None = None) -> None:
        now = self.swarm.loop.now
        for p in sorted(self.unchoking, key=lambda p: (-self.conns[p].down.rate(now), p.idx)):
            if p is not skip:
                self.fill(p)

    def on_block(self, peer: Node, index: int, begin: int, nbytes: int) -> None:
        c = self.conns.get(peer)
        if c is None:
            return   # the sender left: what was on the way is lost
        if c.cancelling:
            c.cancelling.pop((index, begin), None)
        now = self.swarm.loop.now
        c.down.add(nbytes, now)
        self.rx_blocks += 1
        if peer.origin:
            self.rx_origin += nbytes
        else:
            self.rx_peers += nbytes
        got = self.picker.block_received(peer, index, begin, nbytes, now)
        if got.new:
            for other in got.cancel:
                self.cancel(other, index, begin)
            if got.piece_complete:
                sources = self.picker.contributors(index)  # (forgotten once verified)
                self.piece_arrived(index, self.picker.piece_verified(index), sources)
        if self.done_at is None and peer in self.conns:
            self.fill(peer, batch=True)

    def on_have(self, peer: Node, index: int) -> None:
        self.picker.got_have(peer, index)
        rounds = self.rounds  # engine/upload.py's ``announced``: an idle hold ends soon
        if rounds.idle_hold > 0 and rounds.announced(peer, index, self.swarm.loop.now):
            self.kick()
        c = self.conns[peer]
        if self.prefer and not c.remote:
            self.local_have.have(peer, index)
        if (not c.am_interested and index not in self.have and not self.origin
                and self.done_at is None):
            c.am_interested = True
            self.swarm.send(self, peer, peer.on_interested)
        if not c.peer_choking:
            if not self.picker.is_seed(peer):
                for seed, begin, _ in self.picker.spare_seeds(index):
                    self.cancel(seed, index, begin)
            self.fill(peer)

    def piece_arrived(self, index: int, dull: list[Node], sources=()) -> None:
        """engine/torrent.py's piece_on_disk: haves out, readers woken (a read
        still waiting raises its next piece: engine/reads.py's ``_wait_for``), a
        not-interested to the peers with nothing more for us (``dull``) and to all
        once complete, every pipeline topped up."""
        self.swarm.piece_done(self, index, sources)
        if index in self.waiting:
            self.waiting.discard(index)
            if not self.waiting:
                self.picker.drop(self.wait_owner)
                self.wait_owner = None
                self.pos += self.read_len
                self.read_on()
            else:
                rest = sorted(self.waiting)
                if self.picker.priority(rest[0])[0] != NOW:
                    self.picker.raise_read(self.wait_owner, rest, self.wait_deadline)
        if not self.have.complete:
            for p in dull:   # told once that lasts (``lose_interest``)
                c = self.conns.get(p)
                if c is not None and c.am_interested:
                    self.dull[p] = self.swarm.loop.now
        if self.have.complete:
            for p, c in self.conns.items():
                if c.am_interested:
                    c.am_interested = False
                    self.swarm.send(self, p, p.on_not_interested)
        elif self.done_at is None:
            self.schedule()

    # -- uploading ------------------------------------------------------------------

    def on_request(self, peer: Node, index: int, begin: int, length: int) -> None:
        c = self.conns[peer]
        if c.view.choked or index not in self.have:   # rejected (BEP 6)
            self.swarm.send(self, peer, peer.on_reject, index, begin)
            return
        if (index, begin, length) in c.queued:
            return
        c.queued.add((index, begin, length))
        c.queue.append(Req(index, begin, length))
        self.asking[peer] = None
        self.kick()

    def on_reject(self, peer: Node, index: int, begin: int) -> None:
        """engine/requests.py's Requests.rejected."""
        c = self.conns[peer]
        held = c.cancelling.pop((index, begin), None)
        if held is None:   # the peer's own refusal
            self.picker.request_dropped(peer, index, begin)
            self.schedule(skip=peer)
        elif held:         # it answered a cancel of ours
            self.picker.request_dropped(peer, index, begin)
            if not any(c.cancelling.values()):
                self.schedule()

    def on_cancel(self, peer: Node, index: int, begin: int) -> None:
        """A fast-extension peer answers a cancel of a request not yet served with a
        reject (one already sent arrives as the block)."""
        c = self.conns.get(peer)
        key = (index, begin, self.g.block_length(index, begin))
        if c is not None and key in c.queued:
            c.queued.discard(key)
            self.swarm.send(self, peer, peer.on_reject, index, begin)

    def kick(self) -> None:
        if not self.busy and self.asking:
            self.busy = True
            loop = self.swarm.loop
            loop.at(max(loop.now, self.up.free), self.serve)

    def serve(self) -> None:
        """The uplink is free: answer requests as engine/upload.py does, with the
        same rule (core/uploadpolicy's ``Rounds``): one block for each asking peer
        (its best request: fresh pieces first; held ones only while no peer asks
        for a fresh one). The round's blocks go out together, sharing the uplink as
        TCP flows through one qdisc do, so each arrives when the whole round is
        through (``Params.shared_uplink``; without it, one block at a time, peers in
        turn: the first fresh one, else the first held one)."""
        self.busy = False
        if not self.alive:
            return
        now = self.swarm.loop.now
        rounds = self.rounds
        while self.asking:
            asking = [(p, self.conns[p].queue, self.conns[p].queued, BLOCK)
                      for p in self.asking]
            if self.swarm.params.shared:
                batch = rounds.batch(asking, now)
            else:
                ready = [(p, q, best) for p, q, live, _ in asking
                         if (best := rounds.best(p, q, live, now)) is not None]
                pick = next(((p, q, n) for p, q, (n, held) in ready if not held),
                            (ready[0][0], ready[0][1], ready[0][2][0]) if ready else None)
                batch = []
                if pick is not None:
                    p, q, n = pick
                    req = q[n]
                    del q[n]
                    batch = [(p, req, rounds.taken(p, req, now))]
            for p, q, _, _ in asking:
                if not q:
                    del self.asking[p]
            if not batch:
                wake = rounds.wake_at if self.swarm.params.shared else None
                if wake is not None and (self.wake_due is None or wake < self.wake_due
                                         or self.wake_due < now):
                    self.wake_due = wake  # held with nothing fresh: a turn when it ends
                    self.swarm.loop.at(wake, self.kick)
                return
            sends = []
            for p, req, prev in batch:
                c = self.conns[p]
                if p in self.asking:   # its turn is over: to the back of the line
                    del self.asking[p]
                    self.asking[p] = None
                key = (req.index, req.begin, req.length)
                if key not in c.queued:
                    rounds.untaken(p, req, prev)
                    continue   # cancelled meanwhile: not sent
                c.queued.discard(key)
                if self.sparing is not None:
                    if not self.sparing.serve(p, req.index, now):
                        rounds.untaken(p, req, prev)
                        self.swarm.send(self, p, p.on_reject, req.index, req.begin)
                        continue
                    self.sparing.sent(p, req.index)
                sends.append((p, req))
            if not sends:
                continue
            total = sum(req.length for _, req in sends)
            up = self.up
            up_end = max(now, up.free) + total / up.rate
            up.free = up_end
            up.bytes += total
            for p, req in sends:
                nbytes = req.length
                self.conns[p].up.add(nbytes, now)
                self.tx += nbytes
                self.swarm.transfer(self, p, req.index, req.begin, nbytes, up_end)
            self.kick()
            return

    # -- reading --------------------------------------------------------------------

    def start_reading(self) -> None:
        """The file is opened (ReadHandle: its first and last pieces at readahead
        priority) and read from the start."""
        g = self.g
        edge = list(dict.fromkeys([*g.file_pieces(0, 0, 1),
                                   *g.file_pieces(0, g.total_length - 1, 1)]))
        self._raise(edge)
        self.read_on()

    def read_on(self) -> None:
        """Read on until a read waits for pieces (or the file ends)."""
        g, size = self.g, self.g.total_length
        rs = max(1, self.swarm.params.read_size // self.swarm.factor)
        while self.pos < size:
            if self.leaves and self.pos >= size // 2:
                self.swarm.leave(self)
                return
            n = min(rs, size - self.pos)
            missing = self.have.missing(g.pieces_in_range(self.pos, n))
            if missing:
                # engine/reads.py: a read that will wait raises its own pieces
                # first, before the window moves on (which gives up what it leaves).
                self.wait_owner = owner = object()
                self.wait_deadline = self.swarm.loop.now + NOW_SLACK
                self.picker.raise_read(owner, missing, self.wait_deadline)
            self._advance(self.pos, n)
            if missing:
                self.read_len = n
                self.waiting = set(missing)
                self.schedule()
                return
            self.pos += n
        self.swarm.finished(self)

    def _advance(self, offset: int, size: int) -> None:
        start, length = self.readahead.advance(offset, size)
        window = self.g.file_pieces(0, start, length)
        key = (window.start, window.stop)
        if key == self.window:
            return   # the same pieces: nothing to raise or drop
        self.window = key
        stale = [i for i in self.raised if i not in window]
        if stale:
            self.raised.difference_update(stale)
            self.picker.drop(self, stale)
            for i in stale:
                for peer, begin, _ in self.picker.withdraw(i) or ():
                    self.cancel(peer, i, begin)
        self._raise([i for i in window if i not in self.raised and i not in self.have])

    def _raise(self, pieces: list[int]) -> None:
        if not pieces:
            return
        now = self.swarm.loop.now
        for rank, i in enumerate(pieces):
            self.picker.raise_priority(self, (i,), READAHEAD,
                                       now + READAHEAD_DEADLINE + READAHEAD_STEP * rank)
        self.raised.update(pieces)
        self.schedule()
