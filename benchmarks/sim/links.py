"""The simulator's clock, links and parameters.

``Loop`` is a heap of timed callbacks, ties broken by the order they were scheduled,
so a run is a pure function of its parameters and seed. A ``Link`` is a rate-limited
resource (a node's upload or download, a rack's uplink in one direction) with the
time it is next free: a transfer reserves each link it crosses, in path order, for
bytes / that link's rate (see ``reserve``).

Scaling: a simulated 16 KiB block stands for ``unit`` real bytes (16 KiB: every
real block is simulated; the piece size: one block per piece, as before session 5).
Bytes (file, pieces, reads, readahead windows) and rates are divided by the same
factor (unit / 16 KiB), so every transfer takes the time the real bytes would take;
the report scales the bytes back.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from typing import Any, Callable

from torrentfs.core.havecadence import AT_ONCE

BLOCK = 16 << 10


class Loop:
    def __init__(self) -> None:
        self.now = 0.0
        self._q: list[tuple[float, int, Callable[..., Any], tuple]] = []
        self._seq = 0
        self.events = 0
        self.stopped = False

    def at(self, t: float, fn: Callable[..., Any], *args: Any) -> None:
        heapq.heappush(self._q, (t, self._seq, fn, args))
        self._seq += 1

    def run(self, until: float = math.inf) -> None:
        q = self._q
        while q and not self.stopped:
            t, _, fn, args = heapq.heappop(q)
            if t > until:
                break
            self.now = t
            self.events += 1
            fn(*args)


class Link:
    """A link of ``rate`` bytes/s (sim units); ``free`` is when it is next idle."""

    __slots__ = ("rate", "free", "bytes")

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.free = 0.0
        self.bytes = 0


def reserve(links: list[Link], nbytes: int, now: float) -> float:
    """Reserve ``links`` (in path order) for a transfer of ``nbytes``: each link is
    taken from when it is free, not before the link upstream took it, for nbytes / its
    own rate (so a slow link further on queues the block without holding the sender's
    upload). Returns when the last byte is through every link."""
    start = end = now
    for link in links:
        if link.free > start:
            start = link.free
        link.free = start + nbytes / link.rate
        link.bytes += nbytes
        if link.free > end:
            end = link.free
    return end


@dataclass
class Params:
    """One simulated run, in real units (bytes, bytes/s, seconds)."""

    nodes: int = 8
    size: int = 32 << 20
    piece_size: int = 32 << 10
    origin_rate: float = 2e6
    node_rate: float = 2e6
    down_rate: float = 0.0        # 0: a node's download is not capped
    latency: float = 0.001        # one way, per message between two nodes
    racks: int = 1
    rack_uplink: float = 0.0      # 0: not capped; else each rack's link to the others,
                                  # this many bytes/s in each direction
    join_window: float = 0.0      # nodes join uniformly over this many seconds
    mount_window: float = 0.0     # scripts/cluster's way instead: node i connects at
                                  # (i - 1) x this / nodes, in order, and all start
                                  # reading together at this (times counted from it)
    leave_fraction: float = 0.0   # this share of the nodes leaves at half its read
    peers: int = 50               # peers each node connects to as it joins
    read_size: int = 128 << 10    # the reader's read size (FUSE's usual)
    seed: int = 1
    prefer_rack: bool = False     # --prefer-subnet, each rack a subnet (core/topology)
    super_seed: bool = False      # the origin spares its uplink (core/sparing)
    max_time: float = 0.0         # 0: 50 x the ideal time, then give up
    why_idle: float = 0.0         # > 0: sample why uplinks idle this often (sim/why.py)
    have_at_once: bool = AT_ONCE  # a batch of haves after a quiet spell leaves at once
                                  # (core/havecadence's ``at_once``)
    unit: int = 0                 # real bytes per simulated block (0: the piece size)
    shared_uplink: bool | None = None  # an uploader's batch of blocks (one per asking
                                  # peer) shares its uplink; False: one block at a time;
                                  # None: shared when every real block is simulated
                                  # (a batch of merged blocks would hold the uplink
                                  # for a whole piece per peer, where the real one
                                  # turns over every 16 KiB)

    @property
    def factor(self) -> int:
        """Real bytes per simulated byte: a block of ``unit`` real bytes becomes one
        16 KiB block."""
        unit = self.unit or self.piece_size
        if self.piece_size % BLOCK or unit % BLOCK or self.piece_size % unit:
            raise ValueError("the unit must be a multiple of 16 KiB dividing the piece size")
        return unit // BLOCK

    @property
    def shared(self) -> bool:
        """Whether an uploader's batch shares its uplink (see ``shared_uplink``)."""
        return self.factor == 1 if self.shared_uplink is None else self.shared_uplink
