"""What every scripts/cluster phase measures the same way, whichever client runs it
(torrentfs, libtorrent, btfs: benchmarks/cluster.py, benchmarks/cluster_lt.py): the
bytes through each host's link, the packets its upload cap's queue dropped, the
nodes' and the origin's CPU, and the reads' outcome."""

from __future__ import annotations

import time
from typing import Any

from benchmarks.procstats import cpu_seconds, cpu_times, system_share
from tests.harness.netns import Cluster


class Meter:
    """A phase's counters over hosts 0 (the origin) .. n: the links from when it is
    made (before the nodes start), the rest from ``begin`` (the reads start)."""

    def __init__(self, c: Cluster, n: int) -> None:
        self.c, self.n = c, n
        self.tx0 = c.tx_bytes(0)
        self.node0 = {i: (c.tx_bytes(i), c.rx_bytes(i)) for i in range(1, n + 1)}
        self.t0 = time.monotonic()
        self.drops0: list[int] = []
        self.times0: list[tuple[float, float] | None] | None = None

    def begin(self, pids: list[int | None] | None) -> float:
        """The reads begin (now, returned as ``time.monotonic()``): the nodes' CPU
        counts from here, or with ``pids`` None from their processes' start (they
        are started after this)."""
        self.drops0 = [self.c.qdisc_drops(i) for i in range(self.n + 1)]
        self.times0 = None if pids is None else [cpu_times(p) for p in pids]
        self.t0 = time.monotonic()
        return self.t0

    def end(self, res: dict[str, Any], origin_pid: int | None,
            pids: list[int | None]) -> None:
        """The reads are over: once the links are quiet (blocks asked before the
        last read ended still count), the phase's figures into ``res``."""
        c, n = self.c, self.n
        res["quiet_after_reads"] = c.wait_quiet(range(n + 1), quiet=1.0, timeout=20)
        res["origin_tx"] = c.tx_bytes(0) - self.tx0
        # Packets the upload caps' queues dropped during the reads (TCP then
        # retransmits: blocks late by a retransmission timeout, asked again).
        res["qdisc_drops"] = [c.qdisc_drops(i) - d for i, d in enumerate(self.drops0)]
        res["origin_cpu_s"] = cpu_seconds(origin_pid)
        after = [cpu_times(p) for p in pids]
        before = self.times0 if self.times0 is not None else [(0.0, 0.0)] * len(pids)
        res["node_cpu_s"] = [None if b is None else b[0] + b[1] for b in after]
        res["node_cpu_reads_s"] = [b[0] + b[1] - a[0] - a[1]
                                   if a is not None and b is not None else None
                                   for a, b in zip(before, after)]
        res["node_system_share"] = system_share(before, after)
        res["wall_s"] = time.monotonic() - self.t0
        res["node_tx"] = [c.tx_bytes(i) - self.node0[i][0] for i in range(1, n + 1)]
        res["node_rx"] = [c.rx_bytes(i) - self.node0[i][1] for i in range(1, n + 1)]


def settle(res: dict[str, Any], reads: list[dict[str, Any]], want: str, size: int) -> None:
    """The reads' outcome into ``res`` (which has ``origin_tx``): a read whose
    sha256 is not ``want`` is an error; ``ok``, the slowest read, origin copies."""
    for r in reads:
        if "sha256" in r and r["sha256"] != want:
            r["error"] = f"wrong data: sha256 {r['sha256']}"
    res["reads"] = reads
    res["ok"] = all("error" not in r for r in reads)
    secs = [r["seconds"] for r in reads]
    res["slowest_s"] = max(secs) if all(s is not None for s in secs) else None
    res["origin_copies"] = res["origin_tx"] / size
