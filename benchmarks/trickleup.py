"""CPU per byte *sent* of one ``torrentfs seed`` serving leechers at a trickle: the
upload half of a cluster node's work (issue 13's trickle target), beside
``benchmarks/trickle.py``, which measures the download and read half.

A ``torrentfs seed`` of ``--size`` MiB in 32 KiB pieces (the cluster's) serves
``--leechers`` fake leechers on loopback (trio tasks of this process). Each asks for
its own share of the pieces (its own stretch, in order: no piece goes to two of them,
so the uploader's holds never apply and its choice is the oldest request), keeps
``--depth`` block requests outstanding (a torrentfs mount keeps at least 16 with a
peer) and reads its socket at ``--rate`` bytes/s through a small receive buffer, so
the seed's sockets fill and drain as behind a cluster's tbf caps: every 16 KiB block
goes out alone, on the seed's wake-up after the socket took the one before. As many
leechers as the seed unchokes (4 + 1 optimistic) by default, at 250 kB/s: a cluster
node's uplink of 2 MB/s shared by its peers is that order.

Reported: the seed's CPU seconds (utime + stime) from the first request to the last
block, per GiB sent (what the leechers received), and its user/system split. Only the
seed's CPU counts; the leechers' is this process's.

``--alt DIR`` runs the seed of every other run from another build's tree (a ``git
archive`` of it: ``PYTHONPATH=DIR``), alternating, so both builds see the same
minutes of a shared machine; ``--runs N`` runs each build N times. ``--profile OUT``
records the first run's seed of each build (the other build's in OUT.alt) with
``benchmarks.cpuload.profiled`` (py-spy; ``all:OUT`` every busy thread, ``calls:OUT``
the main system calls counted).

``python -m benchmarks.trickleup --size 32 --leechers 5 --rate 250000 --runs 3 --alt
/tmp/base``. The seed is stopped by PID (``benchmarks.cpuload.torrentfs_seed``)."""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import trio

from benchmarks.cpuload import (
    _user_sys,
    make_torrent,
    per_gib,
    print_medians,
    profiled,
    pythonpath,
    torrentfs_seed,
)
from benchmarks.procstats import cpu_seconds
from benchmarks.programs import say

PIECE_KIB = 32
BLOCK = 16 << 10
RCVBUF = 16 << 10  # the leecher's receive buffer (the kernel doubles it)
READ = 16 << 10    # bytes a leecher reads at a time


async def leecher(port: int, meta, pieces: list[int], rate: float, depth: int,
                  n: int, got: list[int]) -> None:
    """Download ``pieces`` from the seed at ``port``: ``depth`` requests outstanding,
    the socket read at ``rate`` bytes/s. ``got[n]`` counts the block bytes received."""
    from torrentfs.core import wire

    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)
    await sock.connect(("127.0.0.1", port))
    stream = trio.SocketStream(sock)
    conn = wire.PeerConnection(meta.info_hash, b"-FL0001-%012d" % n,
                               num_pieces=meta.num_pieces, fast=True)
    plen, total = meta.piece_length, meta.total_length
    todo = deque((i, b, min(BLOCK, min(plen, total - i * plen) - b))
                 for i in pieces for b in range(0, min(plen, total - i * plen), BLOCK))
    outstanding: set[tuple[int, int, int]] = set()
    unchoked = False
    await stream.send_all(conn.handshake())
    resume = trio.current_time()
    try:
        while todo or outstanding:
            event = conn.next_event()
            if event is wire.NEED_DATA:
                if resume > trio.current_time():
                    await trio.sleep_until(resume)
                start = trio.current_time()
                data = await stream.receive_some(READ)
                if not data:
                    raise RuntimeError(f"leecher {n}: the seed hung up")
                resume = max(resume, start) + len(data) / rate
                conn.receive_data(data)
                continue
            out = []
            if isinstance(event, wire.Handshake):
                out.append(conn.send(wire.Interested()))
            elif isinstance(event, wire.Unchoke):
                unchoked = True
            elif isinstance(event, wire.Choke):
                unchoked = False
            elif isinstance(event, wire.Piece):
                key = (event.index, event.begin, len(event.data))
                if key in outstanding:
                    outstanding.discard(key)
                    got[n] += len(event.data)
            elif isinstance(event, wire.Reject):
                key = (event.index, event.begin, event.length)
                if key in outstanding:
                    outstanding.discard(key)
                    todo.appendleft(key)
            elif isinstance(event, wire.ConnectionClosed):
                raise RuntimeError(f"leecher {n}: the seed closed the connection")
            while unchoked and todo and len(outstanding) < depth:
                key = todo.popleft()
                outstanding.add(key)
                out.append(conn.send(wire.Request(*key)))
            if out:
                await stream.send_all(b"".join(out))
    finally:
        await stream.aclose()


async def leech_all(port: int, meta, leechers: int, rate: float, depth: int,
                    timeout: float) -> list[int]:
    """Every leecher its stretch of the pieces; the bytes each received."""
    got = [0] * leechers
    pieces = meta.num_pieces
    with trio.fail_after(timeout):
        async with trio.open_nursery() as nursery:
            for n in range(leechers):
                mine = list(range(n * pieces // leechers, (n + 1) * pieces // leechers))
                nursery.start_soon(leecher, port, meta, mine, rate, depth, n, got)
    return got


def run_once(tmp: Path, torrent: Path, data: Path, meta, args, label: str,
             alt: str | None, profile: str | None) -> dict:
    """One seed serving every leecher their share: CPU s per GiB sent."""
    timeout = 120 + 3 * meta.total_length / (args.rate * args.leechers)
    with pythonpath(alt), torrentfs_seed(torrent, data, tmp / f"cache-{label}") as (pid, port):
        time.sleep(1)
        with profiled(pid, profile):
            c0, u0, t0 = cpu_seconds(pid), _user_sys(pid), time.monotonic()
            got = trio.run(leech_all, port, meta, args.leechers, args.rate,
                           args.depth, timeout)
            c1, u1, t1 = cpu_seconds(pid), _user_sys(pid), time.monotonic()
    sent = sum(got)
    return {"build": alt or "this", "s": round(t1 - t0, 2),
            "MBps": round(sent / (t1 - t0) / 1e6, 2),
            **per_gib(c0, u0, c1, u1, sent, "seed")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=32, help="MiB sent in all (32)")
    ap.add_argument("--leechers", type=int, default=5, help="fake leechers (5)")
    ap.add_argument("--rate", type=float, default=250_000,
                    help="each leecher's download in bytes/s (250000)")
    ap.add_argument("--depth", type=int, default=16,
                    help="block requests each keeps outstanding (16)")
    ap.add_argument("--runs", type=int, default=1, help="runs of each build (1)")
    ap.add_argument("--alt", metavar="DIR", help="another build's tree, alternated")
    ap.add_argument("--profile", metavar="OUT",
                    help="profile the first run of each build (OUT, OUT.alt)")
    args = ap.parse_args(argv)
    from torrentfs.core.metainfo import parse

    with tempfile.TemporaryDirectory(prefix="torrentfs-trickleup-") as d:
        tmp = Path(d)
        torrent, data, _ = make_torrent(tmp, args.size, piece_kib=PIECE_KIB)
        meta = parse(torrent.read_bytes())
        builds = [None, args.alt] if args.alt else [None]
        results: list[dict] = []
        for run in range(args.runs):
            for alt in builds:
                label = f"{run}-{'alt' if alt else 'this'}"
                profile = None
                if args.profile and run == 0:  # the first run of each build
                    profile = args.profile + (".alt" if alt else "")
                res = run_once(tmp, torrent, data, meta, args, label, alt, profile)
                say(f"trickleup {label}: {res}")
                results.append(res)
    print_medians(results, builds, "sent")
    return 0


if __name__ == "__main__":
    sys.exit(main())
