"""Why uplinks idle: ``scripts/simulate --why-idle S`` samples every node every S
simulated seconds, from 1 s to the ideal time (the stretch in which every uplink
must be busy for p50 to reach the ideal), and says what each was doing. It only
reads the nodes' state, so a run is the same with it as without.

Upload side, one answer per node and sample (the first that applies):

* ``busy``: its uplink is sending, or has requests queued.
* ``nobody interested``: every peer has all it has.
* ``choking every interested peer``: some want what it has, none is unchoked.
* ``unchoked: unchoke on its way`` / ``request on its way``: a message in flight.
* ``unchoked: want what it has, asked elsewhere``: its unchoked peers lack pieces
  it has and want them now (raised by a read), but have asked another peer for
  every block of them.
* ``unchoked: want what it has, not asked``: a free block it has is wanted by an
  unchoked peer that asked nothing (its pipeline full, or its pick not yet run).
* ``unchoked: want none of it yet``: they lack its pieces but no read raised them.

Download side, for each node that has not finished: ``requests out`` (it waits on
blocks asked), else ``choked by every holder`` (of a piece it wants now), ``no peer
has a wanted piece``, ``wants nothing now``, or ``unchoked by a holder, asked
nothing``.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from torrentfs.core.priorities import NONE

if TYPE_CHECKING:
    from benchmarks.sim.node import Node
    from benchmarks.sim.swarm import Swarm

START = 1.0   # s: the first sample (before it, no node has a piece to send)
QUARTERS = 4  # the report splits [START, ideal] into this many stretches

UNCHOKED = ("unchoked: unchoke on its way", "unchoked: request on its way",
            "unchoked: want what it has, not asked",
            "unchoked: want what it has, asked elsewhere",
            "unchoked: want none of it yet")


def _free(peer: Node, index: int) -> bool:
    """Whether ``peer``'s picker has a block of ``index`` nobody was asked for (the
    picker's own bookkeeping: a diagnostic reads it, nothing changes it)."""
    partial = peer.picker._partials.get(index)
    return partial is None or partial.num_free > 0


def upload_state(node: Node, now: float) -> str:
    if node.busy or node.asking or node.up.free > now:
        return "busy"
    if not node.interested:
        return "nobody interested"
    unchoked = [p for p, c in node.interested.items() if not c.view.choked]
    if not unchoked:
        return "choking every interested peer"
    found = set()
    for p in unchoked:
        c = p.conns.get(node)
        if c is None or p.done_at is not None:
            continue
        if c.peer_choking:
            found.add(UNCHOKED[0])
        elif p.picker.outstanding(node):
            found.add(UNCHOKED[1])
        else:
            wanted = [i for i in node.have
                      if i not in p.have and p.picker.priority(i)[0] != NONE]
            if not wanted:
                found.add(UNCHOKED[4])
            elif any(_free(p, i) for i in wanted):
                found.add(UNCHOKED[2])
            else:
                found.add(UNCHOKED[3])
    return next((k for k in UNCHOKED if k in found), "other")


def download_state(node: Node) -> str:
    picker = node.picker
    if any(picker.outstanding(p) for p in node.conns):
        return "requests out"
    wanted = [i for i in range(node.g.num_pieces)
              if i not in node.have and picker.priority(i)[0] != NONE]
    if not wanted:
        return "wants nothing now"
    holders = [p for p in node.conns if any(i in p.have for i in wanted)]
    if not holders:
        return "no peer has a wanted piece"
    if all(node.conns[p].peer_choking for p in holders):
        return "choked by every holder"
    return "unchoked by a holder, asked nothing"


class WhyIdle:
    """The sampler: ``start(swarm)`` schedules it; ``report()`` gives the shares."""

    def __init__(self, every: float) -> None:
        self.every = every
        self.up: list[Counter] = [Counter() for _ in range(QUARTERS)]
        self.down: list[Counter] = [Counter() for _ in range(QUARTERS)]
        self.swarm: Swarm | None = None

    def start(self, swarm: Swarm) -> None:
        self.swarm = swarm
        swarm.loop.at(START, self._sample)

    def _sample(self) -> None:
        swarm = self.swarm
        now, end = swarm.loop.now, swarm.ideal
        if now > end:
            return
        q = min(QUARTERS - 1, int((now - START) / max(1e-9, end - START) * QUARTERS))
        for n in swarm.nodes:
            if n.alive:
                self.up[q][upload_state(n, now)] += 1
                if n.done_at is None:
                    self.down[q][download_state(n)] += 1
        swarm.loop.at(now + self.every, self._sample)

    def report(self) -> dict:
        """Shares (0-1) of the samples, over the whole stretch and per quarter of it."""
        def shares(counts: list[Counter]) -> dict:
            total = sum(counts, Counter())
            n = sum(total.values()) or 1
            return {"all": {k: v / n for k, v in total.most_common()},
                    "quarters": [{k: v / (sum(c.values()) or 1) for k, v in c.most_common()}
                                 for c in counts]}
        end = self.swarm.ideal if self.swarm is not None else 0.0
        return {"every": self.every, "from": START, "to": end,
                "upload": shares(self.up), "download": shares(self.down)}


def lines(why: dict) -> list[str]:
    """The report's lines: each state's share overall and per quarter."""
    out = [f"  why uplinks idle (every node every {why['every']:g} s, "
           f"{why['from']:g}-{why['to']:.1f} s; overall, then by quarter):"]
    for side in ("upload", "download"):
        d = why[side]
        out.append(f"    {side}:")
        for k, v in d["all"].items():
            qs = " ".join(f"{q.get(k, 0.0) * 100:3.0f}" for q in d["quarters"])
            out.append(f"      {v * 100:5.1f} %  [{qs}]  {k}")
    return out
