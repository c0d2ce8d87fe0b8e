"""The simulator sends HAVEs as engine/haves.py does (benchmarks/sim/swarm.py's
``_flush_haves``): none of a piece the peer has, unless it sent us a block of it
(that one waits for the next message to it or the tick); ``REDUNDANT_HAVES``
sends every one to every peer at the flush, as the daemons did before session 10."""

from __future__ import annotations

import benchmarks.sim.swarm as swarm
from benchmarks.sim.node import Node
from tests.benchmarks.test_simulate import small, times


def run(monkeypatch, redundant: bool):
    monkeypatch.setattr(swarm, "REDUNDANT_HAVES", redundant)
    heard = {"all": 0, "ours": 0}
    on_have = Node.on_have

    def counting(self, peer, index):
        heard["all"] += 1
        heard["ours"] += index in self.have and not self.origin  # (a seed hears all)
        on_have(self, peer, index)

    monkeypatch.setattr(Node, "on_have", counting)
    res = swarm.simulate(small(nodes=6))
    return res, heard


def test_fewer_haves_and_no_redundant_one_but_the_sources(monkeypatch):
    old, old_heard = run(monkeypatch, True)
    new, new_heard = run(monkeypatch, False)
    assert len(times(new)) == len(times(old)) == 6  # every node finished
    assert new_heard["all"] < old_heard["all"]
    assert new_heard["ours"] < old_heard["ours"] / 2
    assert max(times(new)) < 1.2 * max(times(old))
