"""scripts/bench's command line (benchmarks/bench.py runs it): every option, its
default, and the checks of their values."""

from __future__ import annotations

import argparse

from benchmarks import caller_path
from benchmarks.programs import SYSTEMS


def parse_args(argv: list[str] | None = None, description: str = "") -> argparse.Namespace:
    """scripts/bench's options from ``argv``; ``description`` heads its --help."""
    ap = argparse.ArgumentParser(description=description,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeders", type=int, default=3, help="libtorrent seeders (3)")
    ap.add_argument("--size", type=int, default=1024, help="big file size in MiB (1024)")
    ap.add_argument("--piece-size", type=int, default=1024, help="piece size in KiB (1024)")
    ap.add_argument("--rate", type=int, default=0,
                    help="upload cap of each seeder in bytes/s (0 = none)")
    ap.add_argument("--only", default=",".join(SYSTEMS),
                    help="comma-separated subset of torrentfs,btfs,libtorrent")
    ap.add_argument("--json", metavar="FILE", help="write every raw number here")
    ap.add_argument("--runs", type=int, default=1, help="repeat N times, report medians (1)")
    ap.add_argument("--big-torrent", action="store_true",
                    help="also mount a torrent of a sparse --big-size GiB file and "
                         "report RssAnon right after")
    ap.add_argument("--big-size", type=int, default=16, help="GiB for --big-torrent (16)")
    ap.add_argument("--v2-reads", action="store_true",
                    help="also time cold random 64 KiB reads of big.bin as a v1 and as a "
                         "v2 (BEP 52) torrent, both with 16 MiB pieces (benchmarks/v2reads.py)")
    ap.add_argument("--scale", action="store_true",
                    help="also mount a generated torrent of --scale-files files and one of "
                         "--scale-pieces pieces: mount time, RssAnon, find | wc -l")
    ap.add_argument("--scale-files", type=int, default=100_000, help="files (100000)")
    ap.add_argument("--scale-pieces", type=int, default=1 << 20, help="pieces (1048576)")
    ap.add_argument("--seq-budget", type=float, default=120.0,
                    help="cap on one sequential read, s; slower is reported partial (120)")
    ap.add_argument("--read-timeout", type=float, default=60.0,
                    help="bound on one 64 KiB read, s (60)")
    ap.add_argument("--mount-timeout", type=float, default=60.0,
                    help="bound on a mount becoming ready, s (60)")
    ap.add_argument("--no-resident", action="store_true",
                    help="torrentfs mounts without its resident process (by default it is "
                         "started before the first mount, as a user has it once a first "
                         "mount started it: the mount rows say so)")
    ap.add_argument("--av-runs", type=int, default=5,
                    help="cold ffprobe and seek runs (fresh mounts), median reported (5)")
    ap.add_argument("--ff-timeout", type=float, default=90.0,
                    help="bound on one ffprobe/ffmpeg run, s (90)")
    ap.add_argument("--no-upload", dest="upload", action="store_false",
                    help="skip the upload rows (a libtorrent leecher fed by torrentfs "
                         "seed, then by a libtorrent seeder)")
    ap.add_argument("--idle-peers", type=int, default=50,
                    help="connected idle peers of the idle-CPU row; 0 skips it (50)")
    ap.add_argument("--idle-seconds", type=float, default=30.0,
                    help="how long the idle CPU is measured, s (30)")
    ap.add_argument("--utp", action="store_true",
                    help="also: a sequential read over uTP from uTP-only libtorrent "
                         "seeders against libtorrent's own uTP download (benchmarks/utp.py)")
    ap.add_argument("--slow-swarm", action="store_true",
                    help="also stream an 8 Mbit/s video from two seeders capped at 1 MB/s "
                         "each with ffmpeg -re, and measure --download-rate caps")
    ap.add_argument("--slow-only", action="store_true",
                    help="only the slow-swarm section (no payload, no main runs)")
    ap.add_argument("--slow-video", type=int, default=190,
                    help="slow swarm: the video's length, s (190)")
    ap.add_argument("--slow-play", type=int, default=60,
                    help="slow swarm: seconds played by ffmpeg -re -t (60)")
    ap.add_argument("--slow-seek", type=int, default=120,
                    help="slow swarm: where the cold -ss starts, s (120)")
    ap.add_argument("--slow-caps", default="1M,2M,8M",
                    help="slow swarm: the --download-rate values measured (1M,2M,8M)")
    ap.add_argument("--slow-tick-ms", type=int, default=0,
                    help="slow swarm: the capped seeders' tick_interval, ms: how often "
                         "libtorrent hands out their upload quota (0: its default, 500)")
    ap.add_argument("--no-netns", action="store_true",
                    help="do not run in a loopback-only network namespace of its own")
    ap.add_argument("--keep", metavar="DIR",
                    help="work in DIR and keep it (logs, payload) instead of a temp dir")
    args = ap.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    args.slow_caps = [c.strip() for c in args.slow_caps.split(",") if c.strip()]
    args.slow_swarm = args.slow_swarm or args.slow_only
    if args.slow_swarm and args.slow_seek + args.slow_play > args.slow_video:
        ap.error("--slow-seek + --slow-play must fit in --slow-video")
    bad = [s for s in args.only if s not in SYSTEMS]
    if bad:
        ap.error(f"--only: unknown {', '.join(bad)}")
    if args.av_runs < 1:
        ap.error("--av-runs: at least 1")
    if not 1 <= args.seeders <= 40:
        ap.error("--seeders: 1..40")
    args.json, args.keep = caller_path(args.json), caller_path(args.keep)
    return args
