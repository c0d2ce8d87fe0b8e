"""CPU per byte of the torrentfs daemon under three loads, for scripts/bench and for
profiling (issue 13): each load runs on its own, on loopback, and reports the
daemon's CPU seconds (utime + stime from /proc) against the bytes moved.

- ``upload``: a libtorrent leecher downloads the whole torrent from ``torrentfs
  seed`` alone, then (for the ratio) from a libtorrent seeder of the same data alone:
  MB/s to "download complete" and the seeder's CPU s per GiB.
- ``idle``: a mount with ``--idle-peers`` connected fake peers (they have every piece
  and keep us choked; ``tests.harness.fakepeer``) and no reads: % of one core the
  daemon uses over ``--idle-seconds``.
- ``read``: a mount fed by ``--seeders`` libtorrent seeders, read sequentially with
  ``dd``: MB/s and CPU s per GiB (scripts/bench measures this one itself; here it is
  a quick load to profile).

``python -m benchmarks.cpuload upload|idle|read --size 64 [--profile OUT]`` runs one
load; ``--profile`` records the daemon with py-spy (``--gil``: the Python work only,
which perf shows is half of it; raw format, collapsed stacks in OUT) while it runs;
``--profile native:OUT`` records every thread with its C frames, idle samples too
(py-spy ``--native --idle``); ``strace:OUT`` counts its system calls instead
(``strace -c -f``), ``calls:OUT`` counts the main ones without slowing the daemon
(``perf stat``, ``SYSCALLS``), ``perf:OUT`` samples it with ``perf record -g``. Everything
started is stopped by PID, every mount unmounted, in finally blocks. ``read`` also
gives the daemon's user and system CPU s per GiB apart (``user_sys``) and its minor
page faults per MiB read (``faults_per_MiB``: 256 means every page of every piece
buffer was fresh memory).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from benchmarks.procstats import PeerSampler, cpu_seconds, kill_pid
from benchmarks.programs import FUSERMOUNT, TORRENTFS, say
from tests.harness.swarm import _lt_argv, child_env, lt_create, lt_seeder, wait_until
from torrentfs.cli.state import mount_state_file
from torrentfs.fs.procfs import pid_alive

GIB = 1 << 30
SYSCALLS = ("recvfrom", "sendmsg", "sendto", "writev", "read", "futex", "epoll_wait",
            "epoll_ctl", "pwrite64", "openat", "setsockopt")
LEECH_IP = "127.0.0.60"
LT_SEED_IP = "127.0.0.61"


def make_torrent(tmp: Path, size_mib: int, piece_kib: int = 1024) -> tuple[Path, Path, str]:
    """A random file of ``size_mib`` MiB under tmp/data and a tracker-less .torrent
    of it: (torrent, data folder, file name)."""
    data = tmp / "data"
    data.mkdir(parents=True, exist_ok=True)
    name = "load.bin"
    with open(data / name, "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(1 << 20))
    torrent = tmp / "load.torrent"
    lt_create(data / name, torrent, None, piece_kib << 10)
    return torrent, data, name


@contextlib.contextmanager
def profiled(pid: int, out: str | None) -> Iterator[None]:
    """py-spy records ``pid`` while the block runs (if ``out``)."""
    if not out:
        yield
        return
    if out.startswith("strace:"):  # count the daemon's system calls instead
        argv = ["strace", "-c", "-f", "-p", str(pid), "-o", out[len("strace:"):]]
    elif out.startswith("calls:"):  # how many of the system calls that matter (perf stat)
        events = ",".join(f"syscalls:sys_enter_{c}" for c in SYSCALLS)
        argv = ["perf", "stat", "-e", events, "-p", str(pid), "-o", out[len("calls:"):]]
    elif out.startswith("perf:"):  # on-CPU samples, kernel included (perf record -g)
        argv = ["perf", "record", "-F", "499", "-g", "-o", out[len("perf:"):], "-p", str(pid)]
    else:  # py-spy: the interpreter's time (--gil), with "all:" every busy thread, with
        # "native:" every thread's samples, idle included, C frames too (--native --idle)
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        mode, path = out.split(":", 1) if out.startswith(("all:", "native:")) else ("", out)
        opts = {"all": [], "native": ["--native", "--idle"]}.get(mode, ["--gil"])
        argv = [spy, "record", *opts, "--format", "raw", "-r", "250", "-p", str(pid),
                "-o", path]
    proc = subprocess.Popen(argv,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        yield
    finally:
        proc.send_signal(2)  # SIGINT: py-spy writes its file and exits
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def leech(torrent: Path, save: Path, peer: str, timeout: float,
          on_start=None) -> tuple[float | None, str]:
    """A libtorrent leecher on LEECH_IP downloading from ``peer`` alone: seconds from
    its start to "download complete" (None if it did not), and its last lines."""
    save.mkdir(parents=True, exist_ok=True)
    argv = _lt_argv("leech", "--torrent", str(torrent), "--save-path", str(save),
                    "--listen", f"{LEECH_IP}:0", "--bind-outgoing", "--peer", peer,
                    "--timeout", str(timeout))
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=child_env())
    if on_start:
        on_start()
    done: dict[str, float] = {}
    tail: list[str] = []

    def reader() -> None:
        for line in proc.stderr:
            tail.append(line.rstrip())
            del tail[:-5]
            if "download complete" in line and "t" not in done:
                done["t"] = time.monotonic()
                proc.terminate()  # its recheck is not what is measured
    th = threading.Thread(target=reader, daemon=True)
    th.start()
    try:
        proc.wait(timeout + 20)
    except subprocess.TimeoutExpired:
        pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        th.join(5)
        shutil.rmtree(save, ignore_errors=True)
    return (done["t"] - t0 if "t" in done else None), " | ".join(tail)


@contextlib.contextmanager
def torrentfs_seed(torrent: Path, data: Path, cache: Path,
                   timeout: float = 120) -> Iterator[tuple[int, int]]:
    """``torrentfs seed`` (listening on every address): yields (pid, port) once it serves."""
    log = cache.with_suffix(".log")
    cache.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as f:
        proc = subprocess.Popen([TORRENTFS, "seed", str(torrent), str(data), "--no-dht",
                                 "--no-lsd", "--cache-dir", str(cache)],
                                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                env=child_env())
    try:
        def port() -> int | None:
            if proc.poll() is not None:
                raise RuntimeError(f"torrentfs seed exited: {log.read_text()[-500:]}")
            m = re.search(r"seeding .*port (\d+)", log.read_text(errors="replace"))
            return int(m.group(1)) if m else None
        yield proc.pid, wait_until(port, timeout, interval=0.1)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def run_upload(tmp: Path, torrent: Path, data: Path, size: int, *, timeout: float = 300,
               profile: str | None = None, systems=("torrentfs", "libtorrent")) -> dict:
    """A libtorrent leecher downloads the torrent from one seeder alone: from
    ``torrentfs seed``, then from a libtorrent seeder. MB/s and the seeder's CPU s
    per GiB for each."""
    out: dict[str, Any] = {}
    tmp.mkdir(parents=True, exist_ok=True)
    for system in systems:
        say(f"upload: a libtorrent leecher downloads from {system}")
        res: dict[str, Any] = out.setdefault(system, {})
        with contextlib.ExitStack() as stack:
            if system == "torrentfs":
                pid, port = stack.enter_context(torrentfs_seed(torrent, data,
                                                               tmp / "seed-cache"))
                peer = f"127.0.0.1:{port}"
            else:
                p = stack.enter_context(lt_seeder(torrent, data, ip=LT_SEED_IP,
                                                  workdir=tmp / "lt-seed", timeout=120))
                pid, peer = p.pid, p.endpoint
            cpu: dict[str, float | None] = {}
            with profiled(pid, profile if system == "torrentfs" else None):
                secs, tail = leech(torrent, tmp / f"leech-{system}", peer, timeout,
                                   on_start=lambda: cpu.setdefault("0", cpu_seconds(pid)))
                cpu["1"] = cpu_seconds(pid)
        if secs is None:
            res["MBps"] = "timeout"
            res["note"] = tail
            continue
        res["MBps"] = size / secs / 1e6
        if cpu.get("0") is not None and cpu.get("1") is not None:
            res["cpu_s_per_GiB"] = (cpu["1"] - cpu["0"]) / (size / GIB)
    return out


@contextlib.contextmanager
def mount(torrent: Path, tmp: Path, label: str, peers: list[str],
          timeout: float = 60) -> Iterator[tuple[int, Path]]:
    """A torrentfs mount with an empty cache and only the given peers: (daemon pid,
    mountpoint)."""
    mnt, cache = tmp / f"mnt-{label}", tmp / f"cache-{label}"
    mnt.mkdir()
    cache.mkdir()
    state = mount_state_file(cache, str(mnt))
    # --no-port-mapping as scripts/bench: a UPnP search (and its HTTP client's set-up)
    # would otherwise run, and be profiled, during the first seconds of the load.
    argv = [TORRENTFS, "mount", str(torrent), str(mnt), "--cache-dir", str(cache),
            "--no-dht", "--no-lsd", "--no-port-mapping",
            "--max-peers", str(max(50, len(peers) + 5))]
    for p in peers:
        argv += ["--peer", p]
    pid = None
    try:
        r = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           env=child_env(), timeout=timeout)
        with contextlib.suppress(OSError, ValueError):
            pid = int(state.read_text().strip())
        if r.returncode != 0 or pid is None:
            raise RuntimeError(f"torrentfs mount failed ({r.returncode}): {r.stderr[-500:]}")
        yield pid, mnt
    finally:
        subprocess.run([TORRENTFS, "unmount", str(mnt), "--cache-dir", str(cache)],
                       capture_output=True, timeout=60, env=child_env())
        if pid:
            with contextlib.suppress(TimeoutError):
                wait_until(lambda: not pid_alive(pid), 20, interval=0.05)
            kill_pid(pid, "torrentfs")
        subprocess.run([FUSERMOUNT, "-uz", str(mnt)], capture_output=True, timeout=30)
        shutil.rmtree(cache, ignore_errors=True)
        with contextlib.suppress(OSError):
            mnt.rmdir()


def run_idle(tmp: Path, torrent: Path, data: Path, *, peers: int = 50,
             seconds: float = 30.0, profile: str | None = None) -> dict:
    """% of one core the daemon of a mount with ``peers`` connected idle peers uses
    over ``seconds``, no reads."""
    from tests.harness.fakepeer import Behaviour, serve_fake_peers
    from torrentfs.core.metainfo import parse

    say(f"idle: a mount with {peers} connected idle peers, {seconds:.0f} s")
    meta = parse(torrent.read_bytes())
    behaviours = [Behaviour(mute=True, keepalive_every=60.0) for _ in range(peers)]
    # The fake peers never answer a request, so the payload is never read.
    with serve_fake_peers(meta, b"", "127.0.0.1", behaviours,
                          lifetime=seconds + 120) as ports:
        with mount(torrent, tmp, "idle", [f"127.0.0.1:{p}" for p in ports]) as (pid, _):
            time.sleep(5)  # connections settle
            with profiled(pid, profile):
                c0, t0 = cpu_seconds(pid), time.monotonic()
                time.sleep(seconds)
                c1, t1 = cpu_seconds(pid), time.monotonic()
            conns = _connections(pid)
    if c0 is None or c1 is None:
        return {"core_pct": "error"}
    return {"core_pct": 100 * (c1 - c0) / (t1 - t0), "peers_connected": conns}


def _connections(pid: int) -> int:
    try:
        r = subprocess.run(["ss", "-tnpH", "state", "established"], capture_output=True,
                           text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return -1
    return sum(1 for line in r.stdout.splitlines() if f"pid={pid}," in line)


def run_read(tmp: Path, torrent: Path, data: Path, name: str, size: int, *,
             seeders: int = 3, timeout: float = 300, profile: str | None = None,
             reader: str = "dd") -> dict:
    """A mount fed by ``seeders`` libtorrent seeders, read with dd (or, ``reader=
    "sha256"``, as scripts/bench reads: 1 MiB reads, each hashed): MB/s, CPU s/GiB."""
    with contextlib.ExitStack() as stack:
        seeds = [stack.enter_context(lt_seeder(torrent, data, ip=f"127.0.0.{70 + i}",
                                               workdir=tmp / "lt-seeds", timeout=120))
                 for i in range(seeders)]
        pid, mnt = stack.enter_context(mount(torrent, tmp, "read",
                                             [s.endpoint for s in seeds]))
        say(f"read: {reader} of {size >> 20} MiB through the mount, {seeders} seeders")
        argv = ["dd", f"if={mnt / name}", "of=/dev/null", "bs=1M"]
        if reader == "sha256":
            argv = [sys.executable, "-c", SHA256_READER, str(mnt / name)]
        sampler = PeerSampler(pid, [s.ip for s in seeds])
        with profiled(pid, profile):
            c0, t0, u0 = cpu_seconds(pid), time.monotonic(), _user_sys(pid)
            subprocess.run(argv, capture_output=True, timeout=timeout, check=True)
            c1, t1, u1 = cpu_seconds(pid), time.monotonic(), _user_sys(pid)
        by_ip = sampler.stop()
    total = sum(by_ip.values()) or 1
    out = {"MBps": size / (t1 - t0) / 1e6,
           "shares": [round(n / total, 2) for n in by_ip.values()],
           "cpu_s_per_GiB": (c1 - c0) / (size / GIB) if c0 is not None and c1 is not None
           else "error"}
    if u0 and u1:  # the split: user (our Python, hashing, copies) and system time
        out["user_sys"] = [round((b - a) / (size / GIB), 2) for a, b in zip(u0[:2], u1[:2])]
        out["faults_per_MiB"] = round((u1[2] - u0[2]) / (size >> 20), 1)  # fresh pages
    return out


# scripts/bench's sequential reader (benchmarks/worker.py): 1 MiB reads into one
# buffer, each hashed before the next.
SHA256_READER = """
import hashlib, sys
h, buf = hashlib.sha256(), bytearray(1 << 20)
view = memoryview(buf)
with open(sys.argv[1], "rb", buffering=0) as f:
    while k := f.readinto(buf):
        h.update(view[:k])
print(h.hexdigest())
"""


def _user_sys(pid: int) -> tuple[float, float, int] | None:
    """utime and stime of a process, in seconds, and its minor page faults."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        tck = os.sysconf("SC_CLK_TCK")
        return int(fields[11]) / tck, int(fields[12]) / tck, int(fields[7])
    except (OSError, IndexError, ValueError):
        return None


@contextlib.contextmanager
def pythonpath(tree: str | None) -> Iterator[None]:
    """PYTHONPATH=tree for the daemons started inside (none: unchanged): another
    build's tree, a ``git archive`` of it (child_env copies os.environ)."""
    if tree is None:
        yield
        return
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = tree
    try:
        yield
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old


def per_gib(c0: float | None, u0, c1: float | None, u1, nbytes: int,
            who: str = "daemon") -> dict[str, Any]:
    """CPU seconds per GiB of ``nbytes`` between two samples of ``cpu_seconds`` (c)
    and ``_user_sys`` (u) of one process, and its user/system split."""
    if c0 is None or c1 is None:
        raise RuntimeError(f"the {who}'s CPU time could not be read")
    out: dict[str, Any] = {"cpu_s_per_GiB": round((c1 - c0) / (nbytes / GIB), 2)}
    if u0 and u1:
        out["user_sys_per_GiB"] = (round((u1[0] - u0[0]) / (nbytes / GIB), 2),
                                   round((u1[1] - u0[1]) / (nbytes / GIB), 2))
    return out


def print_medians(results: list[dict], builds: list[str | None], what: str) -> None:
    """Each build's median ``cpu_s_per_GiB`` over its runs (``results``' ``build``:
    its --alt tree, or "this"), and every run's figure."""
    for alt in builds:
        mine = [r["cpu_s_per_GiB"] for r in results if r["build"] == (alt or "this")]
        print(f"{alt or 'this build'}: CPU s per GiB {what}, median of {len(mine)}: "
              f"{statistics.median(mine):.2f} (runs: {', '.join(map(str, mine))})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("load", choices=["upload", "idle", "read"])
    ap.add_argument("--size", type=int, default=256, help="MiB (256)")
    ap.add_argument("--seeders", type=int, default=3)
    ap.add_argument("--idle-peers", type=int, default=50)
    ap.add_argument("--idle-seconds", type=float, default=30.0)
    ap.add_argument("--only", default="torrentfs,libtorrent", help="upload: which seeders")
    ap.add_argument("--profile", metavar="OUT", help="py-spy raw profile of the daemon")
    ap.add_argument("--reader", choices=["dd", "sha256"], default="dd",
                    help="read: dd bs=1M, or scripts/bench's reader (1 MiB reads, hashed)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="torrentfs-cpuload-") as d:
        tmp = Path(d)
        torrent, data, name = make_torrent(tmp, args.size)
        size = args.size << 20
        if args.load == "upload":
            res = run_upload(tmp, torrent, data, size, profile=args.profile,
                             systems=args.only.split(","))
        elif args.load == "idle":
            res = run_idle(tmp, torrent, data, peers=args.idle_peers,
                           seconds=args.idle_seconds, profile=args.profile)
        else:
            res = run_read(tmp, torrent, data, name, size, seeders=args.seeders,
                           profile=args.profile, reader=args.reader)
    print(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
