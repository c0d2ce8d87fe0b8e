"""The bench's ffprobe and seek rows alone, repeated: ``python -m benchmarks.avlatency``.

Builds scripts/bench's swarm (an 8 MiB big file and the 60 s H.264 video, 1 MiB
pieces, opentracker, 3 libtorrent seeders on 127.0.0.2-4) in a loopback-only network
namespace of its own, then times, --runs times each (medians and every run):
  - the floor: ffprobe and ``ffmpeg -ss 40`` (one frame) of the payload's own copy;
  - cold: each on a fresh mount with an empty cache, as bench.py does;
  - warm: the same again on that mount 1.5 s later (its pages in the kernel's cache).
With --keep DIR the mounts' logs stay in DIR. Run under PYTHONPATH=<another tree>
to time another torrentfs package against the same harness.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import bench as B
from benchmarks.payload import make_payload
from benchmarks.programs import run_bounded
from tests.harness.swarm import lt_create, lt_seeder, opentracker

FFPROBE = ["ffprobe", "-v", "error", "-show_format", "-show_streams"]


def ffseek(path: str) -> list[str]:
    return ["ffmpeg", "-nostdin", "-v", "error", "-ss", str(B.SEEK_TO_S), "-i", path,
            "-frames:v", "1", "-f", "null", "-"]


def timed(argv: list[str]) -> float:
    rc, secs, out = run_bounded(argv, 60)
    if rc != 0:
        raise SystemExit(f"avlatency: {argv[0]} failed ({rc}): {out[-300:]}")
    return secs


def show(label: str, times: list[float]) -> None:
    print(f"{label:<14} median {statistics.median(times):.3f} s  "
          f"{[round(t, 3) for t in times]}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=7, help="runs of each (7)")
    ap.add_argument("--keep", metavar="DIR", help="work in DIR and keep it")
    ns = ap.parse_args()
    B.isolate_network(sys.argv[1:], "benchmarks.avlatency")
    args = B.parse_args(["--size", "8", "--no-netns"])
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
        video = str(bench.payload / "video.mkv")
        show("floor ffprobe", [timed(FFPROBE + [video]) for _ in range(ns.runs)])
        show("floor seek", [timed(ffseek(video)) for _ in range(ns.runs)])
        for label, argv in (("ffprobe", lambda p: FFPROBE + [p]), ("seek", ffseek)):
            cold, warm = [], []
            for _ in range(ns.runs):
                with bench.mount("torrentfs", label, {}) as m:
                    cold.append(timed(argv(m.path("video.mkv"))))
                    time.sleep(1.5)
                    warm.append(timed(argv(m.path("video.mkv"))))
            show(f"cold {label}", cold)
            show(f"warm {label}", warm)
    return 0


if __name__ == "__main__":
    sys.exit(main())
