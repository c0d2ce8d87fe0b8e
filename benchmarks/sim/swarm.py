"""The simulated swarm: an origin and N nodes on modelled links, and the run.

The model
---------
* One origin seeds the file; N nodes each open it and read it from start to end in
  ``read_size`` reads, as ``sha256sum`` on a mount does (engine/reads.py's readahead
  window and NOW raises; a read returns as soon as its pieces are in: disk and CPU
  take no time).
* Each node joins at a time drawn uniformly over ``join_window`` (all at 0 by
  default) and starts reading; or, as scripts/cluster runs them (``mount_window``),
  the nodes connect one after another, node i at (i - 1) x window / N, and all
  start reading at the end of the window. Each dials, like a tracker's answer, up to ``peers`` / 2 (25) peers drawn
  at random from those present (the origin among them) that have room: no node
  keeps more than ``peers`` (50) connections, incoming ones included, as
  ``--max-peers`` caps a daemon's (so past 50 nodes most never talk to the origin). With
  ``prefer_rack`` (``--prefer-subnet``) the draw is core/topology's ``choose``:
  peers of its own rack first. Connections are both ways and exchange bitfields at
  once. A ``leave_fraction`` of the nodes, drawn at
  random, stop at half their read and drop every connection: blocks on the way to or
  from them are lost, their peers' requests to them are freed (``Picker.remove_peer``)
  and their slots rechoked. They count as not finished.
* Every message (interested, choke, request, have, cancel, reject) arrives
  ``latency`` after it is sent. A block is a reservation on each link it crosses,
  in path order: the sender's upload, the sender's rack uplink and the receiver's
  rack downlink when the two are in different racks, and the receiver's download if
  capped. Each link is taken from when it is free (not before the link before it)
  for bytes / its own rate, so a busy link further on queues the block, as a
  switch's buffer would, without holding the sender's upload; the block arrives
  ``latency`` after its last byte is through. A sender answers its requests as
  engine/upload.py does, one block for each asking peer at once
  (core/uploadpolicy.next_batch); the blocks of a batch share its upload, so each
  arrives when the batch is through (``Params.shared``; with merged blocks, one
  at a time). No link ever exceeds its rate.
* Haves leave in batches, ``HAVE_DELAY`` after the first (engine/haves.py), to
  the peers that lack the piece; to one of its sources with the next message to it
  or at the tick; to a peer that has it, not at all (``REDUNDANT_HAVES`` for the
  old way: every one to every peer at the flush). With ``have_at_once``, a batch
  leaves at once after a quiet spell of ``HAVE_DELAY`` (core/havecadence).
* Per node: torrentfs's Picker (priorities as reads.py raises them), Choker (a
  regular rechoke every 10 s, out of turn on interest as engine/torrent.py does),
  Readahead, Rate, pipeline size and spread as engine/torrent.py computes them, and
  the uploader's next-request choice (core/uploadpolicy). A node that has the whole
  file stays as a seed.
* Unit (see ``links``): every real 16 KiB block, so the blocks of one piece come
  from several peers at once (the picker's spread), late ones are asked again
  (``duplicate_after``) and a piece is announced once whole; or, for big runs,
  blocks merged up to one per piece, bytes and rates divided by the same factor,
  so times are those of the real sizes (scripts/simulate picks the finest unit
  that keeps nodes x blocks within a budget).
* Not modelled: CPU, disk, TCP slow start, congestion and loss (a short queue
  behind a tbf cap drops packets of many flows at once: the real runs cap uploads
  in the daemons, ``scripts/cluster --app-caps``), the tracker's re-announces and
  PEX (a node that loses peers does not find new ones), snubbing, dropping useless
  peers, hash failures.
"""

from __future__ import annotations

import random
import time
from typing import Any

from benchmarks.cluster_report import ideal_seconds
from benchmarks.sim.links import Link, Loop, Params, reserve
from benchmarks.sim.node import Node
from benchmarks.sim.why import WhyIdle
from torrentfs.core.geometry import Geometry
from torrentfs.core.topology import choose

# Every have to every peer at each flush (the daemons before session 10), instead of
# engine/haves.py's rules: for A/B runs of the simulator.
REDUNDANT_HAVES = False


class Pool:
    """A set of nodes to draw from at random in O(k) (a list and positions)."""

    def __init__(self) -> None:
        self.items: list[Node] = []
        self.pos: dict[Node, int] = {}

    def __len__(self) -> int:
        return len(self.items)

    def add(self, n: Node) -> None:
        if n not in self.pos:
            self.pos[n] = len(self.items)
            self.items.append(n)

    def discard(self, n: Node) -> None:
        i = self.pos.pop(n, None)
        if i is not None:
            last = self.items.pop()
            if last is not n:
                self.items[i] = last
                self.pos[last] = i

    def sample(self, rng: random.Random, k: int, want=None) -> list[Node]:
        """Up to ``k`` distinct members (those ``want`` accepts, if given)."""
        if want is None:
            return rng.sample(self.items, min(k, len(self.items)))
        got: list[Node] = []
        seen: set[int] = set()
        for _ in range(8 * k):
            if len(got) >= k or len(seen) >= len(self.items):
                break
            i = rng.randrange(len(self.items))
            if i not in seen:
                seen.add(i)
                if want(self.items[i]):
                    got.append(self.items[i])
        return got


class Swarm:
    def __init__(self, params: Params) -> None:
        self.params = p = params
        self.rng = random.Random(p.seed)
        self.factor = f = p.factor
        self.geometry = Geometry(p.piece_size // f, (-(-p.size // f),))
        self.loop = Loop()
        self.latency = p.latency
        racks = max(1, p.racks)
        self.rack_out = [Link(p.rack_uplink / f) for _ in range(racks)] if p.rack_uplink else None
        self.rack_in = [Link(p.rack_uplink / f) for _ in range(racks)] if p.rack_uplink else None
        self.rack_bytes_in = [0] * racks
        self.rack_bytes_out = [0] * racks
        self.origin = Node(self, 0, 0, self.geometry, p.origin_rate / f, 0, origin=True)
        down = p.down_rate / f if p.down_rate else 0
        self.nodes = [Node(self, i, (i - 1) * racks // max(1, p.nodes), self.geometry,
                           p.node_rate / f, down, origin=False)
                      for i in range(1, p.nodes + 1)]
        for n in self.rng.sample(self.nodes, round(p.leave_fraction * p.nodes)):
            n.leaves = True
        # Present nodes with room for another connection: all, and by rack.
        self.open = Pool()
        self.open_in = [Pool() for _ in range(racks)]
        self.pending = sum(1 for n in self.nodes if not n.leaves)
        self.origin_tx = 0      # sim bytes the origin sent
        self.delivered = 0      # sim bytes that reached a node
        self.timeline: list[dict[str, float]] = []
        self.ideal = ideal_seconds(p.size, p.nodes, p.origin_rate, p.node_rate)

    # -- the network ------------------------------------------------------------------

    def send(self, src: Node, dst: Node, fn, *args: Any) -> None:
        """A message from ``src``; ``fn`` (a method of ``dst``) hears it after the
        latency, if both are still connected. The haves ``src`` holds for ``dst``
        go ahead of it (``lazy_haves``)."""
        if src.lazy_haves and dst in src.lazy_haves:
            self.lazy_haves(src, dst)
        self.loop.at(self.loop.now + self.latency, self._deliver, src, dst, fn, args)

    @staticmethod
    def _deliver(src: Node, dst: Node, fn, args: tuple) -> None:
        if src.alive and dst.alive and src in dst.conns:
            fn(src, *args)

    def transfer(self, src: Node, dst: Node, index: int, begin: int, nbytes: int,
                 up_end: float) -> None:
        """A block whose last byte leaves ``src``'s upload (already reserved) at
        ``up_end``, through the links after it. The haves ``src`` holds for
        ``dst`` go ahead of it (``lazy_haves``)."""
        if src.lazy_haves and dst in src.lazy_haves:
            self.lazy_haves(src, dst)
        links = []
        if self.rack_out is not None and src.rack != dst.rack:
            links += [self.rack_out[src.rack], self.rack_in[dst.rack]]
        if src.rack != dst.rack:
            self.rack_bytes_out[src.rack] += nbytes
            self.rack_bytes_in[dst.rack] += nbytes
        if dst.down is not None:
            links.append(dst.down)
        if src.origin:
            self.origin_tx += nbytes
        # The links after it carry the block as it leaves (a switch's buffer), from
        # the time its own bytes would take at the sender's rate before up_end.
        end = (max(up_end, reserve(links, nbytes, up_end - nbytes / src.up.rate))
               if links else up_end)
        self.loop.at(end + self.latency, self._block, src, dst, index, begin, nbytes)

    def _block(self, src: Node, dst: Node, index: int, begin: int, nbytes: int) -> None:
        if dst.alive and src in dst.conns:
            self.delivered += nbytes
            dst.on_block(src, index, begin, nbytes)

    def piece_done(self, node: Node, index: int, sources=()) -> None:
        """``node`` verified a piece (from ``sources``): a have to its peers,
        batched as engine/haves.py does (they leave together ``HAVE_DELAY`` after
        the first of a batch; with ``have_at_once``, at once after a quiet spell:
        core/havecadence)."""
        if node.have_batch:
            node.have_batch.append((index, sources))
            return
        node.have_batch.append((index, sources))
        now = self.loop.now
        self.loop.at(now + node.have_cadence.delay(now), self._flush_haves, node)

    def _flush_haves(self, node: Node) -> None:
        """engine/haves.py's flush: to each peer the haves of the pieces it lacks
        (all to a seed); none of a piece it has, unless it is a source of it
        (that one waits for the next message to that peer or the tick:
        ``lazy_haves``). With ``REDUNDANT_HAVES``, as before session 10: every have
        to every peer at the flush."""
        node.have_cadence.flushed(self.loop.now)
        batch, node.have_batch = node.have_batch, []
        has, is_seed = node.picker.peer_has, node.picker.is_seed
        now_to: dict[Node, list[int]] = {}
        for p in node.conns:
            if REDUNDANT_HAVES:
                now_to[p] = [index for index, _ in batch]
                continue
            seed = is_seed(p)
            out = []
            for index, sources in batch:
                if seed or not has(p, index):
                    out.append(index)
                elif p in sources:
                    node.lazy_haves.setdefault(p, []).append(index)
            if out:
                now_to[p] = out
        self.loop.at(self.loop.now + self.latency, self._haves, node, now_to)

    def lazy_haves(self, node: Node, peer: Node | None = None) -> None:
        """The haves ``node`` holds for ``peer`` (for all its peers: the tick) go."""
        if not node.lazy_haves:
            return
        if peer is None:
            now_to, node.lazy_haves = node.lazy_haves, {}
        elif peer in node.lazy_haves:
            now_to = {peer: node.lazy_haves.pop(peer)}
        else:
            return
        self.loop.at(self.loop.now + self.latency, self._haves, node, now_to)

    @staticmethod
    def _haves(node: Node, now_to: dict) -> None:
        if not node.alive:
            return
        for p, batch in now_to.items():
            if p.alive and node in p.conns:
                for index in batch:
                    p.on_have(node, index)

    # -- nodes coming and going -----------------------------------------------------------

    def join_group(self, nodes: list[Node]) -> None:
        """Nodes that join at the same moment (all of them, with no join window):
        each is present before any dials, so each draws from the whole group, as a
        tracker that heard all of them answers, not only from those before it in
        the list (which would chain the swarm: each node linked to the few before
        it with room, pieces passed down hundreds of hops)."""
        for n in nodes:
            n.alive = True
            self._room(n)
        for n in nodes:
            self.join(n)

    def join(self, node: Node, read: bool = True) -> None:
        """The node dials, like a tracker's answer, up to half of ``peers`` nodes
        drawn at random among those present with room; each keeps at most ``peers``
        connections, as ``--max-peers`` caps a torrentfs daemon's, incoming ones
        included. (Dialing all ``peers`` would fill the first nodes' slots with each
        other, leaving later nodes to connect only among themselves, with nothing.)"""
        now = self.loop.now
        node.alive = True
        node.joined_at = now
        self.open.discard(node)   # not a candidate for itself
        self.open_in[node.rack].discard(node)
        k = min(max(1, self.params.peers // 2), self.params.peers - len(node.conns))
        if k <= 0:
            chosen = []
        elif self.params.prefer_rack:   # core/topology: local peers first
            local = self.open_in[node.rack].sample(self.rng, k)
            remote = self.open.sample(self.rng, k, lambda p: p.rack != node.rack)
            chosen = choose(local + remote, lambda p: p.rack == node.rack, k)
        else:
            chosen = self.open.sample(self.rng, k)
        for p in chosen:
            if p in node.conns:
                continue
            node.connect(p, now)
            p.connect(node, now)
            self._room(p)
        for p in list(node.conns):
            node.update_interest(p)
            p.update_interest(node)
        self._room(node)
        self.loop.at(now + 1.0, node.tick)
        if not node.origin and read:
            node.start_reading()

    def mount(self, node: Node) -> None:
        """``mount_window``: the node connects now (as ``join``) and reads later."""
        self.join(node, read=False)

    def read_all(self) -> None:
        """``mount_window``: every node starts reading at once."""
        for n in self.nodes:
            if n.alive:
                n.joined_at = self.loop.now
                n.start_reading()

    def _room(self, node: Node) -> None:
        """Keep ``open`` (present nodes with room for a connection) up to date."""
        has_room = node.alive and len(node.conns) < self.params.peers
        for s in (self.open, self.open_in[node.rack]):
            if has_room:
                s.add(node)
            else:
                s.discard(node)

    def leave(self, node: Node) -> None:
        node.alive = False
        self._room(node)
        peers = list(node.conns)
        for p in peers:
            p.drop(node)
        node.conns.clear()
        node.unchoking.clear()
        node.interested.clear()
        node.asking.clear()
        for p in peers:
            self._room(p)

    def finished(self, node: Node) -> None:
        node.done_at = self.loop.now
        self.pending -= 1
        if not self.pending:
            self.loop.stopped = True

    def _sample(self, every: float) -> None:
        f = self.factor
        self.timeline.append({"t": self.loop.now, "origin_tx": self.origin_tx * f,
                              "nodes_rx": self.delivered * f})
        self.loop.at(self.loop.now + every, self._sample, every)

    # -- the run ----------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run to the end (every staying node has read the file, or the time limit)
        and return the figures in the shape of benchmarks/cluster.py's phase."""
        p, f = self.params, self.factor
        wall = time.monotonic()
        self.join(self.origin)
        if p.mount_window:
            for k, n in enumerate(self.nodes):
                self.loop.at(k * p.mount_window / len(self.nodes), self.mount, n)
            self.loop.at(p.mount_window, self.read_all)
        else:
            joins = sorted(self.rng.uniform(0, p.join_window) if p.join_window else 0.0
                           for _ in self.nodes)
            groups: dict[float, list[Node]] = {}
            for t, n in zip(joins, self.nodes):
                groups.setdefault(t, []).append(n)
            for t, group in groups.items():
                self.loop.at(t, self.join_group, group)
        self.loop.at(0.0, self._sample, max(0.05, self.ideal / 200))
        why = WhyIdle(p.why_idle) if p.why_idle > 0 else None
        if why is not None:
            why.start(self)
        limit = p.max_time or 50 * self.ideal + p.join_window + p.mount_window
        self.loop.run(until=limit)
        self._sample(0)  # the last point
        reads = [{"node": n.name, "rack": n.rack, "left": n.leaves,
                  "seconds": (n.done_at - n.joined_at) if n.done_at is not None else None}
                 for n in self.nodes]
        size = p.size
        return {
            "nodes": p.nodes,
            "reads": reads,
            "ok": self.pending == 0,
            "origin_tx": self.origin_tx * f,
            "origin_copies": self.origin_tx * f / size,
            "flows": {n.name: {"origin": n.rx_origin * f, "nodes": n.rx_peers * f}
                      for n in self.nodes},
            "node_cpu_s": [None] * p.nodes,
            "node_rx": [(n.rx_origin + n.rx_peers) * f for n in self.nodes],
            "node_tx": [n.tx * f for n in self.nodes],
            "timeline": self.timeline,
            "racks": [{"rack": r, "in_copies": self.rack_bytes_in[r] * f / size,
                       "out_copies": self.rack_bytes_out[r] * f / size,
                       "nodes": sum(1 for n in self.nodes if n.rack == r)}
                      for r in range(len(self.rack_bytes_in))],
            **({"why_idle": why.report()} if why is not None else {}),
            "sim_time_s": self.loop.now,
            "sim_events": self.loop.events,
            "sim_blocks": sum(n.rx_blocks for n in self.nodes),  # simulated blocks received
            "sim_wall_s": time.monotonic() - wall,
        }


def simulate(params: Params) -> dict[str, Any]:
    return Swarm(params).run()
