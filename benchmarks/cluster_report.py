"""What scripts/cluster reports about one swarm phase, the way Kraken reports its own:
per-node completion times (p50, p90, p99, max), each over the ideal time; the origin's
upload in copies of the file; what each node received from the origin and from its
peers; CPU seconds per GiB each node moved. Plain functions of the phase's result
dictionary (benchmarks/cluster.py ``torrentfs_phase``), so a simulated swarm can be
reported the same way; ``plot`` draws the CDF of completion times and the origin's
and the peers' bytes over time (matplotlib, from the optional ``bench`` extra);
``reference_lines`` sets torrentfs's phases against libtorrent's and btfs's."""

from __future__ import annotations

import math
from typing import Any, Sequence

GIB = 1 << 30
MIB = 1 << 20
PERCENTILES = (50, 90, 99)


def percentile(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile of ``values`` by linear interpolation between closest ranks
    (numpy's default); None for no values."""
    xs = sorted(values)
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def ideal_seconds(size: int, nodes: int, origin_rate: float, node_rate: float) -> float:
    """The least time in which ``nodes`` nodes can each hold the whole ``size`` bytes
    when the origin uploads ``origin_rate`` and every node ``node_rate`` bytes/s: one
    copy must leave the origin (size / origin_rate), and the swarm's whole upload
    (origin + nodes) must carry nodes * size bytes. For one node that is the origin's
    time; for many equal nodes it tends to size / node_rate, Kraken's "size over the
    per-host cap"."""
    return max(size / origin_rate, nodes * size / (origin_rate + nodes * node_rate))


def completion(res: dict[str, Any]) -> list[float]:
    """The nodes' completion times (s) of the reads that finished."""
    return [r["seconds"] for r in res["reads"] if r.get("seconds") is not None]


def sources(res: dict[str, Any]) -> list[tuple[int, int]]:
    """Per node (in order): (bytes of blocks from the origin, from other nodes), from
    the flow matrix the logs give."""
    out = []
    for i in range(1, res["nodes"] + 1):
        flows = res["flows"].get(f"node{i}", {})
        origin = flows.get("origin", 0)
        peers = sum(v for k, v in flows.items() if k.startswith("node"))
        out.append((origin, peers))
    return out


def cpu_per_gib(res: dict[str, Any]) -> list[float | None]:
    """Per node: CPU seconds spent during the reads per GiB moved (received + sent
    on its link); the mount's start-up is not counted."""
    out = []
    cpus = res.get("node_cpu_reads_s", res["node_cpu_s"])
    for cpu, rx, tx in zip(cpus, res["node_rx"], res["node_tx"]):
        moved = (rx or 0) + (tx or 0)
        out.append(cpu * GIB / moved if cpu is not None and moved else None)
    return out


def summary(res: dict[str, Any], size: int, origin_rate: float,
            node_rate: float) -> dict[str, Any]:
    """The figures of one phase: percentiles of completion (s and over ideal), origin
    copies, bytes by source, CPU per GiB (median and max over nodes)."""
    n = res["nodes"]
    ideal = ideal_seconds(size, n, origin_rate, node_rate)
    times = completion(res)
    out: dict[str, Any] = {"nodes": n, "ideal_s": ideal, "finished": len(times)}
    for p in PERCENTILES:
        v = percentile(times, p)
        out[f"p{p}_s"] = v
        out[f"p{p}_over_ideal"] = v / ideal if v is not None else None
    out["max_s"] = max(times) if times else None
    out["max_over_ideal"] = out["max_s"] / ideal if times else None
    p50, p99 = out["p50_s"], out["p99_s"]
    out["p99_over_p50"] = p99 / p50 if p50 and p99 is not None else None
    out["origin_copies"] = res["origin_copies"]
    src = sources(res)
    out["from_origin_bytes"] = [o for o, _ in src]
    out["from_peers_bytes"] = [p for _, p in src]
    total = sum(o + p for o, p in src)
    out["from_origin_share"] = sum(o for o, _ in src) / total if total else None
    cpus = [c for c in cpu_per_gib(res) if c is not None]
    out["cpu_s_per_gib_median"] = percentile(cpus, 50)
    out["cpu_s_per_gib_max"] = max(cpus) if cpus else None
    return out


def fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def kraken_lines(s: dict[str, Any], targets: dict[str, float]) -> list[str]:
    """The Kraken-style table of one phase's summary, with each target beside it."""
    rows = [("", "seconds", "x ideal", "target")]
    for p in PERCENTILES:
        rows.append((f"p{p} completion", fmt(s[f"p{p}_s"], ".1f"), fmt(s[f"p{p}_over_ideal"]),
                     f"<= {targets['p50_over_ideal']:g} x ideal" if p == 50 else ""))
    rows.append(("max completion", fmt(s["max_s"], ".1f"), fmt(s["max_over_ideal"]), ""))
    rows.append(("p99 / p50", "", fmt(s["p99_over_p50"]),
                 f"<= {targets['p99_over_p50']:g}"))
    rows.append(("origin upload (copies)", "", fmt(s["origin_copies"]),
                 f"<= {targets['origin_copies']:g}"))
    rows.append(("blocks from the origin (share)", "", fmt(s["from_origin_share"]), ""))
    rows.append(("CPU s per GiB moved, median node", "", fmt(s["cpu_s_per_gib_median"]),
                 f"<= {targets['cpu_s_per_gib']:g}"))
    rows.append(("CPU s per GiB moved, worst node", "", fmt(s["cpu_s_per_gib_max"]), ""))
    w = max(len(r[0]) for r in rows)
    lines = [f"{s['nodes']} nodes, {s['finished']} finished; ideal time "
             f"{s['ideal_s']:.1f} s (size over the swarm's upload, at least the origin's "
             "time for one copy)"]
    lines += [f"  {r[0]:<{w}}  {r[1]:>8}  {r[2]:>8}  {r[3]}" for r in rows]
    return lines


def verdicts(s: dict[str, Any], targets: dict[str, float]) -> list[str]:
    """One 'meets'/'misses' phrase per target."""
    def judge(name: str, value: float | None, bound: float) -> str:
        ok = value is not None and value <= bound
        return f"{name} {fmt(value)} {'meets' if ok else 'misses'} <= {bound:g}"
    return [judge("p50/ideal", s["p50_over_ideal"], targets["p50_over_ideal"]),
            judge("p99/p50", s["p99_over_p50"], targets["p99_over_p50"]),
            judge("origin copies", s["origin_copies"], targets["origin_copies"]),
            judge("CPU s/GiB (median node)", s["cpu_s_per_gib_median"],
                  targets["cpu_s_per_gib"])]


def plot(result: dict[str, Any], path: str) -> None:
    """Two panels into ``path`` (PNG): the CDF of node completion times over the ideal
    time (one line per phase), and the origin's and the peers' bytes over time in the
    N-node phase. Needs matplotlib (``pip install -e '.[bench]'``)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (cdf, flow) = plt.subplots(1, 2, figsize=(12, 4.5))
    size = result["size_bytes"]
    args = result["args"]
    for key in ("torrentfs_1", "torrentfs_n"):
        res = result.get(key)
        if not res:
            continue
        ideal = ideal_seconds(size, res["nodes"], args["origin_rate"], args["node_rate"])
        xs = sorted(t / ideal for t in completion(res))
        if xs:  # from 0 at the first finish, one step up per node done
            ys = [0.0] + [(k + 1) / len(xs) for k in range(len(xs))]
            cdf.step([xs[0]] + xs, ys, where="post", marker=".",
                     label=f"{res['nodes']} node(s)")
    cdf.axvline(1.0, color="grey", linestyle="--", label="ideal")
    cdf.set_xlabel("completion time / ideal time")
    cdf.set_ylabel("fraction of nodes done")
    cdf.set_ylim(0, 1.02)
    cdf.legend()
    cdf.set_title("node completion times")
    tl = result["torrentfs_n"].get("timeline") or []
    if tl:
        t0 = tl[0]["t"]
        ts = [p["t"] - t0 for p in tl]
        origin = [(p["origin_tx"] - tl[0]["origin_tx"]) / MIB for p in tl]
        received = [(p["nodes_rx"] - tl[0]["nodes_rx"]) / MIB for p in tl]
        peers = [max(0.0, r - o) for r, o in zip(received, origin)]
        flow.plot(ts, origin, label="sent by the origin")
        flow.plot(ts, peers, label="received from peers (all nodes)")
        flow.set_xlabel("seconds since the reads began")
        flow.set_ylabel("MiB (cumulative, link bytes)")
        flow.legend()
    flow.set_title(f"{result['torrentfs_n']['nodes']} nodes: origin vs peers")
    fig.suptitle(f"scripts/cluster: {args['size']} MiB, origin {args['origin_rate'] / 1e6:g} MB/s,"
                 f" nodes {args['node_rate'] / 1e6:g} MB/s")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def reference_lines(r: dict[str, Any], n: int) -> list[str]:
    """torrentfs's phases against libtorrent's and btfs's (those run), same caps,
    same run; each ratio is torrentfs / the other."""
    a = r["args"]
    others = [k for k in ("libtorrent", "btfs") if r.get(f"{k}_n")]
    phases = {"torrentfs": (r["torrentfs_1"], r["torrentfs_n"], r["summary_n"])}
    for k in others:
        one, many = r[f"{k}_1"], r[f"{k}_n"]
        r[f"summary_{k}"] = summary(many, r["size_bytes"], a["origin_rate"], a["node_rate"])
        phases[k] = (one, many, r[f"summary_{k}"])

    def figures(one, many, s):
        return [one["slowest_s"], many["slowest_s"], ratio(many["slowest_s"], one["slowest_s"]),
                s["p50_over_ideal"], many["origin_copies"], s["cpu_s_per_gib_median"],
                sum(x or 0 for x in many["node_cpu_reads_s"]), many.get("node_system_share"),
                sum(many.get("qdisc_drops") or [0])]

    names = ["time, 1 node (s)", f"time, {n} nodes (s)", f"time({n}) / time(1)",
             "p50 completion (x ideal)", "origin upload (copies)",
             "CPU s per GiB moved, median node", "nodes' CPU s in the reads",
             "  of which in the kernel (share)", "packets the caps' queues dropped"]
    specs = [".1f", ".1f", ".2f", ".2f", ".2f", ".2f", ".1f", ".2f", "d"]
    cols = {k: figures(*v) for k, v in phases.items()}
    w0 = max(len(x) for x in names)
    head = "".join(f"  {k:>10}" for k in cols) + "".join(f"  {'/ ' + k[:8]:>10}" for k in others)
    lines = [f"against {' and '.join(others)} (the libtorrent origin, {n} nodes, same caps; "
             "each ratio torrentfs / that one):", f"  {'':<{w0}}{head}"]
    for j, (name, spec) in enumerate(zip(names, specs)):
        row = "".join(f"  {fmt(cols[k][j], spec):>10}" for k in cols)
        row += "".join(f"  {fmt(ratio(cols['torrentfs'][j], cols[k][j]), '.2f'):>10}"
                       for k in others)
        lines.append(f"  {name:<{w0}}{row}")
    for k in others:
        lines.append(f"  {k}'s reads byte-exact: "
                     + ("yes" if r[f"{k}_1"]["ok"] and r[f"{k}_n"]["ok"] else "NO"))
    return lines
