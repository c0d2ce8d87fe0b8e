"""Mount -> file listed, repeated: the median time from the ``torrentfs mount``
command's start to ``os.listdir`` seeing the file with its size (what scripts/bench's
"mount -> file listed" row times, on a tiny torrent with no peers), over N fresh
mounts with empty caches. For issue 13's latency target (<= 0.1 s).

    .venv/bin/python -m benchmarks.mountready [--runs 20] [--resident] [--tracker URL] [-- MOUNT ARGS]

``--resident``: with the resident process on (started before the first mount, as a
user has it after a first mount), each mount's daemon forked from it. Without it
the resident process is off (every daemon starts cold, as before it existed).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.procstats import cpu_seconds
from benchmarks.programs import TorrentfsMount, resident_process, say
from tests.harness.swarm import child_env

TORRENTFS = str(Path(sys.executable).with_name("torrentfs"))


class _Bench:
    """What a Mount needs of a bench.Bench: a work folder, a counter, the top folder."""

    def __init__(self, tmp: Path, top: str):
        self.tmp = tmp
        self.top = top
        self.counter = itertools.count(1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--tracker", default="http://127.0.0.1:9/announce",
                    help="the torrent's announce URL (default: a closed port)")
    ap.add_argument("--resident", action="store_true",
                    help="mount with the resident process on (started before the runs)")
    ap.add_argument("extra", nargs="*", help="more options for torrentfs mount")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mountready-") as d:
        tmp = Path(d)
        top = "payload"
        (tmp / "data" / top).mkdir(parents=True)
        (tmp / "data" / top / "big.bin").write_bytes(os.urandom(1 << 20))
        torrent = tmp / "t.torrent"
        subprocess.run([TORRENTFS, "create", str(tmp / "data" / top), "-o", str(torrent),
                        "-t", args.tracker, "--piece-size", "256K"],
                       check=True, capture_output=True, env=child_env())
        bench = _Bench(tmp, top)
        with contextlib.ExitStack() as stack:
            if args.resident:
                pid = stack.enter_context(resident_process(tmp))
                say(f"resident process {pid} started")
            times, cpus, commands, daemons = measure(bench, torrent, top, args)
        times.sort()
        say(f"mount -> listed over {len(times)} mounts"
            f"{' (resident process on)' if args.resident else ''}: "
            f"median {statistics.median(times):.3f} s, "
            f"min {times[0]:.3f}, max {times[-1]:.3f}; CPU (command + daemon) "
            f"median {statistics.median(cpus):.3f} s (command {statistics.median(commands):.3f}, "
            f"daemon {statistics.median(daemons):.3f}; since the early fork, the two run side "
            f"by side)")
        print(" ".join(f"{t:.3f}" for t in times))
    return 0


def run_seconds(pid: int) -> float | None:
    """The CPU time of every thread of ``pid`` so far, to the nanosecond
    (/proc/PID/task/*/schedstat; utime + stime count 10 ms ticks)."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return total / 1e9


def measure(bench, torrent: Path, top: str, args) -> tuple[list, list, list, list]:
    """Mount ``args.runs`` times: the times to listed, and the CPU of each."""
    times, cpus, commands, daemons, residents = [], [], [], [], []
    for _ in range(args.runs):
        m = TorrentfsMount(bench, "ready")
        m.extra_args = list(args.extra)
        try:
            resident_before = resident_cpu() if args.resident else 0.0
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            m.start(torrent, top, "big.bin", 1 << 20, 30)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if args.resident:  # the command's process in the resident process, reaped
                residents.append(resident_cpu() - resident_before)
            daemon = (run_seconds(m.pid) or cpu_seconds(m.pid)) if m.pid else None
            times.append(m.ready_s)
            if daemon is not None:  # the command's CPU, then its daemon's so far
                command = (after.ru_utime - before.ru_utime
                           + after.ru_stime - before.ru_stime)
                commands.append(command)
                daemons.append(daemon)
                cpus.append(command + daemon + (residents[-1] if args.resident else 0))
        finally:
            m.close()
    if residents:
        say(f"the command's process in the resident process: CPU median "
            f"{statistics.median(residents):.4f} s (in 'command + daemon' below; "
            f"'command' is the launcher)")
    return times, cpus, commands, daemons


def resident_cpu() -> float:
    """CPU seconds of the commands the resident process ran and reaped so far."""
    import json
    r = subprocess.run([TORRENTFS, "resident", "status", "--json"], capture_output=True,
                       text=True, timeout=30, env=child_env())
    return json.loads(r.stdout)["commands_cpu"]


if __name__ == "__main__":
    sys.exit(main())
