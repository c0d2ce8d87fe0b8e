"""Per-node figures from ``benchmarks/taskcpu/sitecustomize.py``'s files: CPU by task
role, run loop and other threads, then the timed methods. Usage:
``python -m benchmarks.taskcpu.summary [DIR] [--top N]``."""

from __future__ import annotations

import argparse
import collections
import glob
import json


def load(folder: str, least: float = 0.3) -> list[dict]:
    """The files of the daemons that used at least ``least`` CPU s (not the
    1-node run's or short-lived ones)."""
    docs = []
    for path in glob.glob(f"{folder}/out.*.json"):
        with open(path) as f:
            doc = json.load(f)
        if doc.get("proc", 0) >= least:
            docs.append(doc)
    return docs


def summary(docs: list[dict], top: int = 25) -> list[str]:
    n = len(docs)
    if not n:
        return ["no daemon files"]
    sums = {k: collections.Counter() for k in ("cpu", "steps", "fcpu", "fcalls")}
    proc = main = 0.0
    for d in docs:
        for k, c in sums.items():
            c.update(d.get(k, {}))
        proc += d["proc"]
        main += d.get("main", 0.0)
    tasks = sum(sums["cpu"].values()) / 1e9
    lines = [f"{n} daemons; per node: {proc / n:.2f} CPU s, main thread {main / n:.2f}, "
             f"task steps {tasks / n:.2f}, run loop {(main - tasks) / n:.2f}, "
             f"other threads {(proc - main) / n:.2f}"]
    for title, t, c, what in (("tasks", "cpu", "steps", "steps"),
                              ("methods (inclusive)", "fcpu", "fcalls", "calls")):
        if sums[t]:
            lines.append(f"--- {title}: CPU s per node, share, {what} per node, us each")
        for key, ns in sums[t].most_common(top):
            count = sums[c][key]
            lines.append(f"{ns / 1e9 / n:7.3f} {100 * ns / 1e9 / proc:5.1f}% "
                         f"{count // n:8d} {ns / 1e3 / max(1, count):7.1f}  {key}")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.taskcpu.summary")
    ap.add_argument("folder", nargs="?", default="/tmp/tcpu")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)
    print("\n".join(summary(load(args.folder), args.top)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
