"""The bench's ffprobe and seek rows alone, repeated: ``python -m benchmarks.avlatency``.

Builds scripts/bench's swarm (an 8 MiB big file and the 60 s H.264 video, 1 MiB
pieces, opentracker, 3 libtorrent seeders on 127.0.0.2-4) in a loopback-only network
namespace of its own, then times, --runs times each (medians and every run):
  - the floor: ffprobe and ``ffmpeg -ss 40`` (one frame) of the payload's own copy;
  - cold: each on a fresh mount with an empty cache, as bench.py does;
  - warm: the same again on that mount 1.5 s later (its pages in the kernel's cache).
With --reads also 64 KiB of big.bin read as the bench reads it (its worker's pread,
on a fresh mount, the moment the file is listed): at 0 (the bench's first-byte row)
and in the middle (a cold random read). They show what a listed folder's video head
start (engine/headstart) costs a read of another file right after the listing.
With --keep DIR the mounts' logs stay in DIR. Run under PYTHONPATH=<another tree>
to time another torrentfs package against the same harness, or give --alt TREE to
alternate, run by run, between this package and TREE's (PYTHONPATH=TREE) on the same
swarm: a before/after pair measured in the same minutes on a shared machine.
--size N makes the big file N MiB (scripts/bench: 1024), which puts the video's pieces
after it, as in the bench. --resident mounts through torrentfs's resident process, as
scripts/bench does (one per tree, started before the runs); by default every daemon
starts cold.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import bench as B
from benchmarks.cpuload import pythonpath
from benchmarks.payload import make_payload
from benchmarks.procstats import tcp_received
from benchmarks.programs import resident_process, run_bounded
from tests.harness.swarm import lt_create, lt_seeder, opentracker

FFPROBE = ["ffprobe", "-v", "error", "-show_format", "-show_streams"]
CHUNK = 64 << 10  # the bench's first-byte and random reads


def ffseek(path: str) -> list[str]:
    return ["ffmpeg", "-nostdin", "-v", "error", "-ss", str(B.SEEK_TO_S), "-i", path,
            "-frames:v", "1", "-f", "null", "-"]


def timed(argv: list[str]) -> float:
    rc, secs, out = run_bounded(argv, 60)
    if rc != 0:
        raise SystemExit(f"avlatency: {argv[0]} failed ({rc}): {out[-300:]}")
    return secs


def show(label: str, times: list[float], unit: str = "s") -> None:
    print(f"{label:<20} median {statistics.median(times):.3f} {unit}  "
          f"{[round(t, 3) for t in times]}", flush=True)


def cpu_seconds(pid: int) -> float | None:
    """CPU time of every thread of ``pid`` so far, to the nanosecond (schedstat;
    /proc/PID/stat counts in 10 ms ticks)."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                    total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total / 1e9


class Cold:
    """One program's cold runs on one package: its time, the daemon's CPU while it
    ran, and the bytes the daemon had received from the seeders by its end (what the
    readahead costs beside the program)."""

    def __init__(self) -> None:
        self.secs: list[float] = []
        self.cpu: list[float] = []
        self.mib: list[float] = []

    def run(self, m, program, ips: list[str]) -> None:
        cpu0 = cpu_seconds(m.pid) if m.pid else None
        self.secs.append(program(m))
        cpu1 = cpu_seconds(m.pid) if m.pid else None
        if cpu0 is not None and cpu1 is not None:
            self.cpu.append(cpu1 - cpu0)
            self.mib.append(sum(tcp_received(m.pid, ips).values()) / (1 << 20))

    def show(self, label: str) -> None:
        show(f"cold {label}", self.secs)
        if self.cpu:
            show("  daemon CPU", self.cpu, "s")
            show("  received", self.mib, "MiB")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7, help="runs of each (7)")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it")
    ap.add_argument("--size", type=int, default=8, help="the big file, MiB (8)")
    ap.add_argument("--alt", metavar="TREE",
                    help="alternate runs with the torrentfs package under TREE")
    ap.add_argument("--only", choices=("ffprobe", "seek", "first", "middle"),
                    help="time only this one")
    ap.add_argument("--reads", action="store_true",
                    help="also time 64 KiB reads of big.bin: at 0 (first), in the middle")
    ap.add_argument("--no-floor", action="store_true", help="skip the local-copy runs")
    ap.add_argument("--resident", action="store_true",
                    help="mount through the resident process, as scripts/bench does")
    ns = ap.parse_args()
    B.isolate_network(sys.argv[1:], "benchmarks.avlatency")
    args = B.parse_args(["--size", str(ns.size), "--no-netns"])
    trees = [("", None)] + ([("alt ", str(Path(ns.alt).resolve()))] if ns.alt else [])
    with contextlib.ExitStack() as stack:
        if ns.keep:
            tmp = Path(ns.keep).resolve()
            tmp.mkdir(parents=True, exist_ok=True)
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="avlat-")))
        bench = B.Bench(args, tmp)
        bench.big_sha256 = make_payload(bench.payload, args.size)
        tracker = stack.enter_context(opentracker(workdir=tmp / "tracker"))
        ih = lt_create(bench.payload, bench.torrent, tracker.announce_url, args.piece_size << 10)
        tracker.add(ih)
        for ip in bench.seeder_ips:
            stack.enter_context(lt_seeder(bench.torrent, tmp / "data", ip=ip,
                                          workdir=tmp / "seeders", timeout=180))
        tracker.wait_peers(ih, args.seeders, timeout=30)
        if ns.resident:  # one per tree: its socket's name follows PYTHONPATH
            for _, tree in trees:
                with pythonpath(tree):
                    stack.enter_context(resident_process(tmp))
        video = str(bench.payload / "video.mkv")
        argvs = {"ffprobe": lambda p: FFPROBE + [p], "seek": ffseek}
        programs = {label: (lambda m, a=argv: timed(a(m.path("video.mkv"))))
                    for label, argv in argvs.items()}
        if ns.reads or ns.only in ("first", "middle"):
            programs["first"] = lambda m: pread(m, 0)
            programs["middle"] = lambda m: pread(m, bench.size // 2)
        if ns.only:
            programs = {ns.only: programs[ns.only]}
        if not ns.no_floor:
            for label in programs:
                if label in argvs:
                    show(f"floor {label}", [timed(argvs[label](video))
                                            for _ in range(ns.runs)])
        for label, program in programs.items():
            cold = {name: Cold() for name, _ in trees}
            warm: dict[str, list[float]] = {name: [] for name, _ in trees}
            for _ in range(ns.runs):
                for name, tree in trees:  # interleaved: the same minutes for each
                    with pythonpath(tree), bench.mount("torrentfs", label, {}) as m:
                        cold[name].run(m, program, bench.seeder_ips)
                        time.sleep(1.5)
                        warm[name].append(program(m))
            for name, _ in trees:
                cold[name].show(f"{name}{label}")
                show(f"{name}warm {label}", warm[name])
    return 0


def pread(m, offset: int) -> float:
    """64 KiB of big.bin at ``offset`` through the mount's worker, as the bench reads:
    seconds."""
    r = m.worker.call(60, op="pread", path=m.path("big.bin"), offset=offset, size=CHUNK)
    if "error" in r or r.get("n") != CHUNK:
        raise SystemExit(f"avlatency: the read at {offset} failed: {r}")
    return r["t1"] - r["t0"]


if __name__ == "__main__":
    sys.exit(main())
