"""scripts/cluster's libtorrent and btfs phases (the first by default, ``--btfs``): the
same swarm, caps and file with libtorrent everywhere, so that torrentfs's figures have
a reference measured in the same run on the same machine (issue 13's targets are
absolute; this says what a C++ client makes of them here).

btfs (a FUSE filesystem on libtorrent, the nearest thing to torrentfs) is measured as
the mounts are: a btfs mount in each node's namespace, the libtorrent origin, and the
whole file read with sha256sum through each mount, each as soon as its mount lists
it. btfs downloads the whole torrent from its start, reads or not, and cannot be
gated: its times and CPU count from the moment the btfs processes are started, so
they include its start-up and its peers' meeting (a few hundred ms), which the
mounts' and the libtorrent nodes' do not.

Host 0 runs a libtorrent seeder (the origin, TCP only, default settings), hosts 1..n
each a libtorrent leecher (``tests/harness/peers/lt_peer.py leech``, under the system
Python that has python3-libtorrent) on the same tracker. The leechers start gated (1
byte/s) so that they meet their peers first, as the mounts do before their reads;
the gate opens for all at once, and each node's time is when it holds every piece
(libtorrent has hashed each). A node that is done seeds on, as a mount does, until
the last is done, and its file is hashed with sha256sum at once (the CPU the
mounts' readers spend hashing, on the same cores; it also checks the data). CPU is
each leecher's process (the status loop of lt_peer.py included: a poll every 200 ms)
from the gate to the end, per GiB its link moved, as for the mounts. Every process is
stopped by its PID."""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

from benchmarks.cluster_meter import Meter, settle
from tests.harness.netns import Cluster
from tests.harness.swarm import LT_PEER, SYSTEM_PYTHON, lt_seeder, stop_process
from torrentfs.fs.procfs import fuse_mount_type

PORT = 6881
MESH_WAIT_S = 15.0
PEERS = re.compile(rb"peers=(\d+)")
READY = b"Got metadata. Now ready"  # btfs's stdout once its torrent is set up


def _peers_now(log: Path) -> int:
    """The peer count of the leecher's latest status line (0 before the first)."""
    try:
        found = PEERS.findall(log.read_bytes()[-4096:])
    except OSError:
        return 0
    return int(found[-1]) if found else 0


def libtorrent_phase(c: Cluster, n: int, torrent: Path, data: Path, file_name: str,
                     want: str, size: int, work: Path, timeout: float) -> dict[str, Any]:
    """A libtorrent origin in host 0 and libtorrent leechers in hosts 1..n, all
    downloading at once from the gate; the keys of ``torrentfs_phase``'s result that
    ``cluster_report.summary`` reads (no flow matrix: libtorrent logs none)."""
    work.mkdir(parents=True)
    res: dict[str, Any] = {"nodes": n, "flows": {}}
    gate = work / "gate"
    procs: list[subprocess.Popen] = []
    logs: list[Path] = []
    hashers: dict[int, subprocess.Popen] = {}
    with lt_seeder(torrent, data, ip=c.hosts[0].ip, port=PORT, workdir=work,
                   wrap=lambda argv: c.argv_in(0, argv)) as origin:
        try:
            meter = Meter(c, n)
            for i in range(1, n + 1):
                save = work / f"lt{i}"
                save.mkdir()
                logs.append(work / f"lt{i}.log")
                argv = [SYSTEM_PYTHON, str(LT_PEER), "leech", "--torrent", str(torrent),
                        "--save-path", str(save), "--listen", f"{c.hosts[i].ip}:{PORT}",
                        "--bind-outgoing", "--timeout", str(timeout + MESH_WAIT_S + 30),
                        "--gate", str(gate), "--done-file", str(work / f"lt{i}.done")]
                with open(logs[-1], "wb") as err:
                    procs.append(c.popen(i, argv, stdout=subprocess.DEVNULL, stderr=err))
            deadline = time.monotonic() + MESH_WAIT_S
            while time.monotonic() < deadline and not all(
                    _peers_now(log) >= n for log in logs):  # the n - 1 others + origin
                time.sleep(0.2)
            res["mesh_complete_before_reads"] = all(_peers_now(log) >= n for log in logs)
            t0 = meter.begin([p.pid for p in procs])
            gate.touch()
            done: dict[int, float] = {}
            while len(done) < n and time.monotonic() - t0 < timeout:
                for k in range(n):
                    if k not in done and (work / f"lt{k + 1}.done").exists():
                        done[k] = time.monotonic() - t0
                        # Its file is hashed at once, on the same cores as the swarm, as
                        # the mounts' readers hash theirs while they read.
                        hashers[k] = subprocess.Popen(
                            ["sha256sum", str(work / f"lt{k + 1}" / file_name)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            stdin=subprocess.DEVNULL)
                if any(p.poll() is not None for p in procs):
                    break  # one failed: no point waiting the whole bound
                time.sleep(0.02)
            meter.end(res, origin.pid, [p.pid for p in procs])
        finally:
            for p in procs:
                stop_process(p, timeout=10)
            sums = {}
            for k, h in hashers.items():
                try:
                    out, _ = h.communicate(timeout=60)
                    sums[k] = out.decode().split()[0] if out.split() else None
                except subprocess.TimeoutExpired:
                    stop_process(h, timeout=5)
    reads = []
    for k in range(n):
        if k not in done:
            tail = logs[k].read_text(errors="replace")[-300:] if logs[k].exists() else ""
            reads.append({"seconds": None, "error": f"not done within {timeout:.0f} s: "
                                                    f"{tail}"})
            continue
        reads.append({"seconds": done[k], "sha256": sums.get(k)})
    settle(res, reads, want, size)
    return res


def _listed(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # ENOTCONN: the filesystem's process is gone
        return False


def _check_alive(procs: list[subprocess.Popen], work: Path) -> None:
    for k, p in enumerate(procs, 1):
        if p.poll() is not None:
            log = (work / f"btfs{k}.log").read_text(errors="replace").strip()
            raise RuntimeError(f"btfs of node{k} exited with {p.returncode}"
                               + (f": {log[-500:]}" if log else ""))


def btfs_phase(c: Cluster, n: int, torrent: Path, data: Path, file_name: str,
               want: str, size: int, work: Path, timeout: float,
               run_readers: Callable[..., list[dict[str, Any]]]) -> dict[str, Any]:
    """A libtorrent origin in host 0 and a btfs mount in each of hosts 1..n, each
    read with sha256sum as soon as it lists the file (``run_readers`` of
    benchmarks/cluster.py); times and CPU from the btfs processes' start."""
    work.mkdir(parents=True)
    res: dict[str, Any] = {"nodes": n, "flows": {}, "mesh_complete_before_reads": None}
    procs: list[subprocess.Popen] = []
    mnts: list[Path] = []
    with lt_seeder(torrent, data, ip=c.hosts[0].ip, port=PORT, workdir=work,
                   wrap=lambda argv: c.argv_in(0, argv)) as origin:
        try:
            meter = Meter(c, n)
            t0 = meter.begin(None)  # (btfs cannot be gated: all counts from its start)
            for i in range(1, n + 1):
                mnt, cache = work / f"mnt{i}", work / f"cache{i}"
                mnt.mkdir()
                cache.mkdir()
                mnts.append(mnt)
                with open(work / f"btfs{i}.log", "wb") as log:
                    # (stdbuf: its stdout line by line, for the "ready" line below)
                    procs.append(c.popen(i, ["stdbuf", "-oL", "btfs", "-f",
                                             f"--data-directory={cache}", str(torrent),
                                             str(mnt)],
                                         stdout=log, stderr=subprocess.STDOUT))
            # Nothing touches a mount before its btfs says it has set the torrent up
            # (its FUSE handlers use the torrent's handle). With 8 or more nodes some
            # btfs aborts before that line all the same ("invalid torrent handle
            # used"): ``_check_alive`` reports it.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not all(
                    READY in (work / f"btfs{i}.log").read_bytes() for i in range(1, n + 1)):
                _check_alive(procs, work)
                time.sleep(0.02)
            while time.monotonic() < deadline and not all(_listed(m / file_name)
                                                          for m in mnts):
                _check_alive(procs, work)
                time.sleep(0.02)
            _check_alive(procs, work)
            listed = time.monotonic() - t0
            reads = run_readers([["sha256sum", str(m / file_name)] for m in mnts],
                                None, [0] * n, timeout)
            for rd in reads:  # from the mounts' start: btfs downloads from then on
                if rd.get("seconds") is not None:
                    rd["seconds"] += listed
            meter.end(res, origin.pid, [p.pid for p in procs])  # CPU: their whole life
        finally:
            for m in mnts:
                if fuse_mount_type(str(m)):
                    subprocess.run(["fusermount3", "-u", str(m)], capture_output=True,
                                   timeout=30)
            for p, m in zip(procs, mnts):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(15)
                if fuse_mount_type(str(m)):
                    subprocess.run(["fusermount3", "-uz", str(m)], capture_output=True,
                                   timeout=30)
                stop_process(p, timeout=10)
    settle(res, reads, want, size)
    return res
