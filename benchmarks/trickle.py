"""CPU per byte of one torrentfs mount fed at a trickle (issue 13's trickle target),
far less noisy than a whole ``scripts/cluster`` on a shared machine.

A mount reads a file of ``--size`` MiB in 32 KiB pieces (the cluster's) with
``sha256sum`` (as the cluster's nodes do) from ``--peers`` fake peers on loopback
(``tests.harness.fakepeer``, one trio thread of this process), each serving its
requests one after another at ``--rate`` bytes/s: every 16 KiB block arrives alone,
as at the cluster's 2 MB/s caps. Each peer lacks one piece (its own), so none is a
seed and the mount picks as among leechers (reads raise their pieces one at a time,
readahead goes rarest first). Reported: the daemon's CPU seconds (utime + stime)
from the read's start to its end, per GiB received, and its user/system split.

This is the download and read half of a cluster node's work (a node also uploads as
much): the receives, picks, hashing, writes and FUSE reads. Only the daemon's CPU
counts; the fake peers' is this process's.

``--alt DIR`` runs the daemon of every other run from another build's tree (a ``git
archive`` of it: ``PYTHONPATH=DIR``), alternating, so that both builds see the same
minutes of a shared machine; ``--runs N`` runs each build N times. ``--profile OUT``
records the (first) daemon with py-spy (``benchmarks.cpuload.profiled``).

``python -m benchmarks.trickle --size 32 --peers 7 --rate 250000 --runs 3 --alt
/tmp/base``. Everything started is stopped by PID and every mount unmounted
(``benchmarks.cpuload.mount``)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.cpuload import (
    _user_sys,
    make_torrent,
    mount,
    per_gib,
    print_medians,
    profiled,
    pythonpath,
)
from benchmarks.procstats import cpu_seconds
from benchmarks.programs import say

PIECE_KIB = 32


def run_once(tmp: Path, torrent: Path, name: str, size: int, ports: list[int],
             label: str, alt: str | None, profile: str | None,
             timeout: float) -> dict:
    """One mount reading the whole file from the fake peers: CPU s per GiB."""
    peers = [f"127.0.0.1:{p}" for p in ports]
    with pythonpath(alt), mount(torrent, tmp, label, peers) as (pid, mnt):
        time.sleep(2)  # connections and bitfields settle
        with profiled(pid, profile):
            c0, u0, t0 = cpu_seconds(pid), _user_sys(pid), time.monotonic()
            subprocess.run(["sha256sum", str(mnt / name)], capture_output=True,
                           timeout=timeout, check=True)
            c1, u1, t1 = cpu_seconds(pid), _user_sys(pid), time.monotonic()
    return {"build": alt or "this", "s": round(t1 - t0, 2),
            **per_gib(c0, u0, c1, u1, size)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=32, help="MiB (32)")
    ap.add_argument("--peers", type=int, default=7, help="fake peers (7)")
    ap.add_argument("--rate", type=float, default=250_000,
                    help="each peer's upload in bytes/s (250000)")
    ap.add_argument("--runs", type=int, default=1, help="runs of each build (1)")
    ap.add_argument("--alt", metavar="DIR", help="another build's tree, alternated")
    ap.add_argument("--profile", metavar="OUT", help="py-spy raw profile of the first run")
    args = ap.parse_args(argv)
    from tests.harness.fakepeer import Behaviour, serve_fake_peers
    from torrentfs.core.metainfo import parse

    with tempfile.TemporaryDirectory(prefix="torrentfs-trickle-") as d:
        tmp = Path(d)
        torrent, data, name = make_torrent(tmp, args.size, piece_kib=PIECE_KIB)
        size = args.size << 20
        payload = (data / name).read_bytes()
        meta = parse(torrent.read_bytes())
        pieces = len(payload) // (PIECE_KIB << 10)
        behaviours = [Behaviour(rate=args.rate,
                                have=set(range(pieces)) - {n * pieces // args.peers})
                      for n in range(args.peers)]
        timeout = 120 + 3 * size / (args.rate * args.peers)
        builds = [None, args.alt] if args.alt else [None]
        results: list[dict] = []
        with serve_fake_peers(meta, payload, "127.0.0.1", behaviours,
                              lifetime=timeout * len(builds) * args.runs + 300) as ports:
            for run in range(args.runs):
                for alt in builds:
                    label = f"{run}-{'alt' if alt else 'this'}"
                    res = run_once(tmp, torrent, name, size, ports, label, alt,
                                   args.profile if not results else None, timeout)
                    say(f"trickle {label}: {res}")
                    results.append(res)
    print_medians(results, builds, "received")
    return 0


if __name__ == "__main__":
    sys.exit(main())
