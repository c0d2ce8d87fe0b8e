"""Sequential read over encrypted TCP (MSE/PE, RC4) against plain TCP.

    python -m benchmarks.encryption [--size MiB] [--seeders N] [--runs N]

Makes a payload of random data, starts N libtorrent seeders on loopback (they take
plain and encrypted connections alike), and for each mode (``--encryption off``,
then ``require``) mounts the torrent with torrentfs, reads the file once from start
to end (sha256 checked), and reports MB/s and the mount daemon's CPU seconds per
GiB read. Every process it starts is stopped and the mount undone on the way out.
Run it on a quiet machine: the figures are wall-clock.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.procstats import cpu_seconds
from tests.harness.command import TORRENTFS
from tests.harness.swarm import lt_create, lt_seeder, wait_until


def make_file(path: Path, size: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            block = os.urandom(min(left, 1 << 20))
            f.write(block)
            h.update(block)
            left -= len(block)
    return h.hexdigest()


def daemon_pid(cache: Path) -> int:
    for state in cache.rglob("*.pid"):
        return int(state.read_text().split()[0])
    raise RuntimeError("no daemon PID file")


def read_once(torrent: Path, tmp: Path, mode: str, peers: list[str], size: int,
              digest: str) -> tuple[float, float]:
    mnt, cache = tmp / f"mnt-{mode}", tmp / f"cache-{mode}"
    mnt.mkdir()
    argv = [TORRENTFS, "mount", str(torrent), str(mnt), "--cache-dir", str(cache),
            "--no-dht", "--no-lsd", "--no-port-mapping", "--encryption", mode]
    for p in peers:
        argv += ["--peer", p]
    subprocess.run(argv, check=True, timeout=120, stdin=subprocess.DEVNULL)
    try:
        pid = daemon_pid(cache)
        path = mnt / "payload" / "big.bin"
        wait_until(path.exists, 30)
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while block := f.read(1 << 20):
                h.update(block)
        secs, cpu1 = time.monotonic() - t0, cpu_seconds(pid)
        if h.hexdigest() != digest:
            raise SystemExit(f"{mode}: sha256 mismatch")
        log = next(cache.rglob("torrentfs.log")).read_text()
        encrypted = log.count("encrypted connection to")
        if (mode == "require") != bool(encrypted):
            raise SystemExit(f"{mode}: {encrypted} encrypted connections")
        return size / secs / 1e6, (cpu1 - cpu0) / (size / (1 << 30))
    finally:
        subprocess.run([TORRENTFS, "unmount", str(mnt), "--cache-dir", str(cache)],
                       timeout=60, capture_output=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256, help="MiB (256)")
    ap.add_argument("--seeders", type=int, default=2)
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args(argv)
    size = args.size << 20
    with tempfile.TemporaryDirectory(prefix="torrentfs-bench-enc-") as t, \
            contextlib.ExitStack() as stack:
        tmp = Path(t)
        digest = make_file(tmp / "data" / "payload" / "big.bin", size)
        torrent = tmp / "t.torrent"
        lt_create(tmp / "data" / "payload", torrent, None, piece_size=1 << 20)
        peers = [stack.enter_context(lt_seeder(torrent, tmp / "data", ip=f"127.0.0.{60 + i}",
                                               workdir=tmp / "seeders", timeout=180)).endpoint
                 for i in range(args.seeders)]
        print(f"{args.size} MiB from {args.seeders} libtorrent seeders on loopback")
        print(f"{'mode':<10}{'MB/s':>10}{'CPU s/GiB':>12}")
        for run in range(args.runs):
            run_dir = tmp / f"run{run}"
            run_dir.mkdir()
            for mode in ("off", "require"):
                mbps, cpu = read_once(torrent, run_dir, mode, peers, size, digest)
                print(f"{'plain' if mode == 'off' else 'RC4':<10}{mbps:>10.1f}{cpu:>12.2f}",
                      flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
