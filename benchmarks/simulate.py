"""scripts/simulate: a swarm of N simulated nodes (benchmarks/sim) reported like
scripts/cluster (benchmarks/cluster_report): completion percentiles over the ideal
time, p99/p50, origin copies, the share of blocks from the origin, and per rack what
crossed its uplink, in copies of the file. Deterministic from ``--seed``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from benchmarks.cluster_report import kraken_lines, summary, verdicts
from benchmarks.sim.links import BLOCK, Params
from benchmarks.sim.swarm import simulate
from benchmarks.sim.why import lines as why_lines
from torrentfs.disk.create import choose_piece_length

# The Kraken-style targets of issue 16 (as benchmarks/cluster.py's TARGETS; CPU is
# not simulated, so its row prints '-').
TARGETS = {"p50_over_ideal": 1.3, "p99_over_p50": 1.3, "origin_copies": 1.5,
           "cpu_s_per_gib": 10.0}


# A sequential reader's FUSE reads: fs/fuse.py's KERNEL_READAHEAD_KIB (the mount
# raises the kernel's readahead to it at init; tests/benchmarks checks they agree).
READ_KIB = 1024

# --sim-block auto: every real 16 KiB block is simulated while nodes x blocks stays
# under this; past it, blocks are merged (up to one per piece) to bound the run time.
BLOCK_BUDGET = 1 << 17


def sim_unit(args: argparse.Namespace, nodes: int, size: int, piece: int) -> int:
    """Real bytes per simulated block: --sim-block, or the smallest power of two from
    16 KiB to the piece size that keeps nodes x blocks within BLOCK_BUDGET."""
    if args.sim_block:
        return min(piece, args.sim_block << 10)
    unit = 16 << 10
    while unit < piece and max(1, nodes) * (size // unit) > BLOCK_BUDGET:
        unit *= 2
    return unit


def params_from(args: argparse.Namespace, nodes: int) -> Params:
    size = args.size << 20
    piece = (args.piece_size << 10) if args.piece_size else max(16 << 10,
                                                               choose_piece_length(size))
    unit = sim_unit(args, args.nodes, size, piece)
    return Params(nodes=nodes, size=size, piece_size=piece, origin_rate=args.origin_rate,
                  node_rate=args.node_rate, down_rate=args.down_rate,
                  latency=args.latency / 1000, racks=args.racks,
                  rack_uplink=args.rack_uplink, join_window=args.join_window,
                  mount_window=args.mount_window,
                  leave_fraction=args.leave_fraction, peers=args.peers,
                  read_size=args.read_size << 10, seed=args.seed,
                  prefer_rack=args.prefer_subnet, super_seed=args.super_seed, unit=unit,
                  why_idle=args.why_idle if nodes == args.nodes else 0.0,
                  have_at_once=args.have_at_once)


def report(result: dict[str, Any]) -> list[str]:
    a, size = result["args"], result["size_bytes"]
    t1, tn = result["torrentfs_1"], result["torrentfs_n"]
    n = tn["nodes"]
    lines = [f"simulated swarm: {n} nodes, {a['size']} MiB file ({result['pieces']} pieces "
             f"of {result['piece_length'] >> 10} KiB), origin upload "
             f"{a['origin_rate'] / 1e6:g} MB/s, node upload {a['node_rate'] / 1e6:g} MB/s, "
             f"download {a['down_rate'] / 1e6:g} MB/s" if a["down_rate"] else
             f"simulated swarm: {n} nodes, {a['size']} MiB file ({result['pieces']} pieces "
             f"of {result['piece_length'] >> 10} KiB), origin upload "
             f"{a['origin_rate'] / 1e6:g} MB/s, node upload {a['node_rate'] / 1e6:g} MB/s, "
             "download not capped"]
    lines.append(f"  simulated in blocks of {result['sim_unit'] >> 10} KiB"
                 + (" (every real block)" if result["sim_unit"] == 16 << 10 else
                    " (one per piece)" if result["sim_unit"] == result["piece_length"] else
                    ""))
    lines.append(f"  latency {a['latency']:g} ms, {a['racks']} rack(s)"
                 + (f", rack uplink {a['rack_uplink'] / 1e6:g} MB/s each way"
                    if a["rack_uplink"] else "")
                 + (f", mounted one after another over {a['mount_window']:g} s, then read "
                    "at once" if a.get("mount_window") else
                    f", joins over {a['join_window']:g} s")
                 + f", {a['leave_fraction']:.0%} leave "
                 f"at half their read, up to {a['peers']} peers each, seed {a['seed']}"
                 + (", subnet preferred" if a.get("prefer_subnet") else "")
                 + (", origin super-seeds" if a.get("super_seed") else "")
                 + (", haves at once after a quiet spell" if a.get("have_at_once") else ""))
    s = summary(tn, size, a["origin_rate"], a["node_rate"])
    lines += kraken_lines(s, TARGETS)
    lines.append("  " + "; ".join(v for v in verdicts(s, TARGETS) if "CPU" not in v))
    one = t1["reads"][0]["seconds"]
    if one and s["p50_s"]:
        lines.append(f"  time({n}) / time(1): p50 {s['p50_s'] / one:.2f}, max "
                     f"{s['max_s'] / one:.2f} (1 node alone: {one:.1f} s)")
    if len(tn["racks"]) > 1:
        lines.append("  per rack, bytes across its uplink (copies of the file):")
        for r in tn["racks"]:
            lines.append(f"    rack {r['rack']} ({r['nodes']} nodes{', origin' if r['rack'] == 0 else ''}):"
                         f" in {r['in_copies']:.2f}, out {r['out_copies']:.2f}")
    left = sum(1 for r in tn["reads"] if r["left"])
    stuck = sum(1 for r in tn["reads"] if not r["left"] and r["seconds"] is None)
    if left or stuck:
        lines.append(f"  {left} node(s) left mid-way; {stuck} staying node(s) did not finish")
    lines.append(f"  simulated {tn['sim_time_s']:.1f} s in {tn['sim_wall_s']:.1f} s "
                 f"({tn['sim_events']} events)")
    if "why_idle" in tn:
        lines += why_lines(tn["why_idle"])
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="scripts/simulate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=8, help="simulated nodes (8)")
    ap.add_argument("--size", type=int, default=32, help="file size in MiB (32)")
    ap.add_argument("--piece-size", type=int, default=0,
                    help="piece size in KiB (default: torrentfs create's choice)")
    ap.add_argument("--origin-rate", type=float, default=2e6, help="origin upload, B/s (2e6)")
    ap.add_argument("--node-rate", type=float, default=2e6, help="node upload, B/s (2e6)")
    ap.add_argument("--down-rate", type=float, default=0,
                    help="node download cap, B/s (0: none, as scripts/cluster)")
    ap.add_argument("--latency", type=float, default=1.0, help="one-way latency, ms (1)")
    ap.add_argument("--racks", type=int, default=1, help="racks the nodes are split into (1)")
    ap.add_argument("--rack-uplink", type=float, default=0,
                    help="each rack's link to the others, B/s each way (0: not capped)")
    ap.add_argument("--join-window", type=float, default=0,
                    help="nodes join uniformly over this many seconds (0)")
    ap.add_argument("--mount-window", type=float, default=0, metavar="S",
                    help="as scripts/cluster runs them: the nodes connect one after "
                         "another over S seconds, then all read at once (0: all at 0; "
                         "see --join-window)")
    ap.add_argument("--leave-fraction", type=float, default=0,
                    help="share of the nodes that leave at half their read (0)")
    ap.add_argument("--prefer-subnet", action="store_true",
                    help="each rack is a subnet and nodes prefer their own (as "
                         "torrentfs mount --prefer-subnet auto)")
    ap.add_argument("--super-seed", action="store_true",
                    help="the origin spares its uplink (as torrentfs seed --super-seed)")
    ap.add_argument("--sim-block", type=int, default=0, metavar="KiB",
                    help="real bytes per simulated block, KiB: 16 simulates every real "
                         "block, the piece size one block per piece (default: 16 while "
                         f"nodes x blocks <= {BLOCK_BUDGET}, else coarser)")
    ap.add_argument("--peers", type=int, default=50, help="peers per node at join (50)")
    ap.add_argument("--read-size", type=int, default=READ_KIB,
                    help=f"read size, KiB ({READ_KIB}: the FUSE reads of a sequential "
                         "reader, since the mount raises the kernel's readahead)")
    ap.add_argument("--seed", type=int, default=1, help="random seed (1)")
    ap.add_argument("--why-idle", type=float, default=0, metavar="S",
                    help="sample every node every S simulated seconds up to the ideal "
                         "time and report why uplinks idle (benchmarks/sim/why.py; 0: off)")
    ap.add_argument("--have-at-once", action="store_true",
                    help="a batch of haves after a quiet spell leaves at once, not "
                         "HAVE_DELAY later (core/havecadence's at_once; not the "
                         "daemon's default)")
    ap.add_argument("--json", metavar="FILE", help="write every raw number here")
    ap.add_argument("--plot", metavar="FILE.png",
                    help="completion CDF and origin vs peer bytes (needs matplotlib)")
    args = ap.parse_args(argv)
    bad = [name for name, v in (("--nodes", args.nodes), ("--size", args.size),
                                ("--origin-rate", args.origin_rate),
                                ("--node-rate", args.node_rate), ("--racks", args.racks),
                                ("--peers", args.peers), ("--read-size", args.read_size))
           if v <= 0]
    bad += [name for name, v in (("--latency", args.latency), ("--down-rate", args.down_rate),
                                 ("--rack-uplink", args.rack_uplink),
                                 ("--join-window", args.join_window),
                                 ("--mount-window", args.mount_window),
                                 ("--why-idle", args.why_idle)) if v < 0]
    if args.join_window and args.mount_window:
        ap.error("--join-window and --mount-window are two ways to join: give one")
    if bad:
        ap.error(f"{', '.join(bad)} out of range")
    if not 0 <= args.leave_fraction < 1:
        ap.error("--leave-fraction must be in [0, 1)")
    if args.piece_size and (args.piece_size % 16 or args.piece_size & (args.piece_size - 1)):
        ap.error("--piece-size must be a power of two, at least 16 (KiB)")
    if args.sim_block and (args.sim_block % 16 or args.sim_block & (args.sim_block - 1)):
        ap.error("--sim-block must be a power of two, at least 16 (KiB)")
    return args


def caller_path(p: str) -> Path:
    return Path(os.environ.get("TORRENTFS_CALLER_DIR", ".")) / p


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    p1, pn = params_from(args, 1), params_from(args, args.nodes)
    result: dict[str, Any] = {
        "args": vars(args), "size_bytes": pn.size, "piece_length": pn.piece_size,
        "sim_unit": pn.factor * BLOCK,
        "pieces": -(-pn.size // pn.piece_size),
        "torrentfs_1": simulate(p1), "torrentfs_n": simulate(pn)}
    print("\n".join(report(result)))
    if args.json:
        caller_path(args.json).write_text(json.dumps(result, indent=1))
    if args.plot:
        try:
            from benchmarks.cluster_report import plot
            plot(result, str(caller_path(args.plot)))
        except ImportError:
            print("simulate: --plot needs matplotlib (pip install -e '.[bench]')",
                  file=sys.stderr)
            return 1
    return 0 if result["torrentfs_n"]["ok"] or args.leave_fraction else 1


if __name__ == "__main__":
    sys.exit(main())
