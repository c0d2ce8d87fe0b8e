"""A video played from a mount while other leechers fetch it too: do they make it stall?

scripts/bench's slow swarm (``benchmarks/slowswarm``) plays its 8 Mbit/s video from two
libtorrent seeders capped at 1 MB/s each, with nobody else about. In a busy swarm
others download the same file meanwhile, and with ``SPLIT_LEECHERS`` of them about
the picker asks readahead rarest first, in an order jittered per node (issue 16's
clusters). Here ``--leechers`` libtorrent leechers, each capped at ``--leecher-rate``
bytes/s (so they stay leechers), download it from the same seeders, and the mount
knows them all. ``ffmpeg -re -t PLAY`` plays the video from 0 on a fresh mount with
an empty cache, and reports its stalls as the slow swarm does (``slowswarm.play``:
progress standing still for 0.3 s or more after the first frame).

Session 14 (docs/benchmarks.md) measured 14-15 stalls, 13.8-14.5 s of them in 25 s of
play, before a video's window kept its order among leechers; 0-1 stall after.

``python -m benchmarks.leechplay [--leechers 4] [--runs 1] [--alt DIR]``: ``--alt``
runs the daemon of every other run from another build's tree (a ``git archive`` of
it, on ``PYTHONPATH``). Everything started is stopped by PID and every mount
unmounted (``benchmarks.cpuload.mount``, ``tests.harness.swarm``)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.cpuload import mount, pythonpath
from benchmarks.programs import say
from benchmarks.slowswarm import NAME, PIECE, SEEDER_RATE, TOP, make_video, play
from tests.harness.swarm import lt_create, lt_leeching, lt_seeder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--leechers", type=int, default=4, help="libtorrent leechers (4)")
    ap.add_argument("--leecher-rate", type=int, default=100_000,
                    help="each leecher's download cap, bytes/s (100000)")
    ap.add_argument("--video", type=int, default=40, help="the video's length, s (40)")
    ap.add_argument("--play", type=float, default=25.0, help="seconds played (25)")
    ap.add_argument("--runs", type=int, default=1, help="runs of each build (1)")
    ap.add_argument("--alt", metavar="DIR", help="another build's tree, alternated")
    args = ap.parse_args(argv)
    builds = [None, args.alt] if args.alt else [None]
    with tempfile.TemporaryDirectory(prefix="torrentfs-leechplay-") as d, \
            contextlib.ExitStack() as stack:
        tmp = Path(d)
        data = tmp / "data"
        say(f"leechplay: making a {args.video} s 8 Mbit/s video")
        make_video(data / TOP, args.video)
        torrent = tmp / "video.torrent"
        lt_create(data / TOP, torrent, None, PIECE)
        seeds = [stack.enter_context(lt_seeder(torrent, data, ip=f"127.0.0.{60 + n}",
                                               upload_rate=SEEDER_RATE, workdir=tmp / "lt",
                                               timeout=120))
                 for n in range(2)]
        peers = [f"{s.ip}:{s.port}" for s in seeds]
        leechers = [stack.enter_context(lt_leeching(torrent, tmp / f"leecher{n}",
                                                    f"127.0.0.{70 + n}", peers,
                                                    download_rate=args.leecher_rate,
                                                    pex=False, workdir=tmp / "lt",
                                                    timeout=60))
                    for n in range(args.leechers)]
        peers += [f"{p.ip}:{p.port}" for p in leechers]
        results = []
        for run in range(args.runs):
            for alt in builds:
                label = f"{run}-{'alt' if alt else 'this'}"
                with pythonpath(alt), mount(torrent, tmp, label, peers) as (_, mnt):
                    time.sleep(2)  # connections and bitfields settle
                    res = play(str(mnt / TOP / NAME), 0, args.play, args.play * 3 + 60)
                res = {"build": alt or "this",
                       **{k: round(v, 2) if isinstance(v, float) else v
                          for k, v in res.items()}}
                say(f"leechplay {label}: {res}")
                results.append(res)
    for build in [b or "this" for b in builds]:
        mine = [r for r in results if r["build"] == build]
        print(f"{build}: {args.leechers} leechers about, {args.play:g} s played: stalls "
              + ", ".join(f"{r['stalls']} ({r['stall_s']} s)" for r in mine)
              + "; first frame " + ", ".join(f"{r['first_frame_s']} s" for r in mine))
    return 0


if __name__ == "__main__":
    sys.exit(main())
