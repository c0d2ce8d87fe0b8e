"""uTP rows of the benchmark: a sequential read over uTP from libtorrent seeders that
speak uTP only (TCP off both ways), against libtorrent's own uTP download from the
same seeders: MB/s and CPU seconds per GiB of each.

    python -m benchmarks.utp [--size MiB] [--seeders N]     (alone: its own swarm,
                                                              in a loopback-only netns)
    scripts/bench --utp ...                                  (the same rows, same run)

torrentfs: ``torrentfs mount --no-tcp --peer SEEDER ...`` on a fresh cache, then
``sha256sum`` of the big file through the mount (checked), timed from the mount's
readiness; CPU is the daemon's. libtorrent: the tests' lt_peer.py leech with
``--utp --no-tcp``, timed to "download complete" (before its recheck). Every process
is stopped by PID, every mount unmounted (lazily as a last resort).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.procstats import cpu_seconds
from benchmarks.programs import FUSERMOUNT, TORRENTFS, say
from tests.harness.swarm import _lt_argv, child_env, lt_create, lt_seeder, stop_process
from torrentfs.cli.state import mount_state_file

FIRST_SEEDER = 60   # uTP seeders on 127.0.0.60, .61, ... (clear of bench.py's)


def _torrentfs(torrent: Path, path_in_mount: str, size: int, sha: str, peers: list[str],
               work: Path, budget: float) -> dict[str, Any]:
    mnt, cache = work / "mnt-utp", work / "cache-utp"
    mnt.mkdir()
    cache.mkdir()
    state = mount_state_file(cache, str(mnt))
    res: dict[str, Any] = {}
    argv = [TORRENTFS, "mount", str(torrent), str(mnt), "--cache-dir", str(cache),
            "--no-dht", "--no-lsd", "--no-tcp"]
    for p in peers:
        argv += ["--peer", p]
    pid = None
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=90,
                           stdin=subprocess.DEVNULL, env=child_env())
        if r.returncode != 0:
            return {"seq_MBps": "error", "note": r.stderr.strip()[-500:]}
        pid = int(state.read_text().strip())
        cpu0 = cpu_seconds(pid)
        t0 = time.monotonic()
        try:
            out = subprocess.run(["sha256sum", str(mnt / path_in_mount)], capture_output=True,
                                 text=True, timeout=budget, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            return {"seq_MBps": "timeout"}
        secs = time.monotonic() - t0
        cpu1 = cpu_seconds(pid)
        if out.returncode != 0 or out.stdout.split()[0] != sha:
            return {"seq_MBps": "error", "note": "sha256 MISMATCH or read error: "
                    + out.stderr.strip()[-300:]}
        res["seq_s"] = secs
        res["seq_MBps"] = size / secs / 1e6
        if cpu0 is not None and cpu1 is not None:
            res["cpu_s_per_GiB"] = (cpu1 - cpu0) / (size / (1 << 30))
        return res
    finally:
        subprocess.run([TORRENTFS, "unmount", str(mnt), "--cache-dir", str(cache)],
                       capture_output=True, timeout=60, env=child_env())
        if pid is not None:
            deadline = time.monotonic() + 20
            while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError):
                if os.path.exists(f"/proc/{pid}"):
                    os.kill(pid, 9)
        subprocess.run([FUSERMOUNT, "-uz", str(mnt)], capture_output=True, timeout=30)
        log = next(cache.glob("*/torrentfs.log"), None)
        if log is not None:
            shutil.copyfile(log, work / "torrentfs-utp.log")


def _libtorrent(torrent: Path, total: int, peers: list[str], work: Path,
                budget: float) -> dict[str, Any]:
    save = work / "lt-utp-download"
    save.mkdir()
    argv = _lt_argv("leech", "--torrent", str(torrent), "--save-path", str(save),
                    "--listen", "127.0.0.59:0", "--timeout", str(budget), "--utp", "--no-tcp")
    for p in peers:
        argv += ["--peer", p]
    done: dict[str, float] = {}
    lines: list[str] = []
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=child_env())
    cpu0 = cpu_seconds(proc.pid) or 0.0

    def reader() -> None:
        for line in proc.stderr:
            lines.append(line.rstrip())
            if "download complete" in line and "t" not in done:
                done["t"] = time.monotonic()
                done["cpu"] = cpu_seconds(proc.pid) or 0.0
    th = threading.Thread(target=reader, daemon=True)
    th.start()
    try:
        proc.wait(budget + 20)
    except subprocess.TimeoutExpired:
        pass
    finally:
        stop_process(proc)
        th.join(5)
        shutil.rmtree(save, ignore_errors=True)
        (work / "lt-utp-download.log").write_text("\n".join(lines))
    if "t" not in done:
        return {"seq_MBps": "timeout", "note": " | ".join(lines[-3:])}
    secs = done["t"] - t0
    return {"seq_s": secs, "seq_MBps": total / secs / 1e6,
            "cpu_s_per_GiB": (done["cpu"] - cpu0) / (total / (1 << 30))}


def run_utp(torrent: Path, data_dir: Path, path_in_mount: str, size: int, sha: str,
            total: int, work: Path, *, seeders: int = 2, budget: float = 120.0) -> dict:
    """Start ``seeders`` uTP-only libtorrent seeders of ``data_dir`` and measure both
    readers against them. ``path_in_mount`` (of ``size`` bytes, sha256 ``sha``) is the
    file torrentfs reads; ``total`` the torrent's bytes libtorrent downloads."""
    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {}
    with contextlib.ExitStack() as stack:
        peers = []
        for i in range(seeders):
            ip = f"127.0.0.{FIRST_SEEDER + i}"
            s = stack.enter_context(lt_seeder(torrent, data_dir, ip=ip, utp=True, tcp=False,
                                              workdir=work / "seeders", timeout=180))
            peers.append(s.endpoint)
        say(f"uTP: {seeders} uTP-only libtorrent seeders up; torrentfs sequential read")
        out["torrentfs"] = _torrentfs(torrent, path_in_mount, size, sha, peers, work, budget)
        say("uTP: libtorrent download")
        out["libtorrent"] = _libtorrent(torrent, total, peers, work, budget)
    return out


def report(res: dict) -> str:
    def cell(v: Any, spec: str) -> str:
        return v if isinstance(v, str) else ("-" if v is None else spec.format(v))
    rows = [("over uTP (uTP-only seeders)", "", ""),
            ("  sequential read / download, MB/s", "seq_MBps", "{:.1f}"),
            ("  CPU s per GiB", "cpu_s_per_GiB", "{:.2f}")]
    lines = [f"{'':<38}{'torrentfs':>12}{'libtorrent':>12}"]
    for label, key, spec in rows:
        if not key:
            lines.append(label)
            continue
        lines.append(f"{label:<38}" + "".join(
            f"{cell(res.get(s, {}).get(key), spec):>12}" for s in ("torrentfs", "libtorrent")))
    for s in ("torrentfs", "libtorrent"):
        if res.get(s, {}).get("note"):
            lines.append(f"note: {s}: {res[s]['note']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256, help="file size in MiB (256)")
    ap.add_argument("--seeders", type=int, default=2, help="uTP-only seeders (2)")
    ap.add_argument("--budget", type=float, default=120.0, help="bound on each read, s")
    ap.add_argument("--no-netns", action="store_true",
                    help="do not run in a loopback-only network namespace of its own")
    args = ap.parse_args(argv)
    if os.environ.get("TORRENTFS_BENCH_NETNS") != "1" and not args.no_netns:
        env = dict(os.environ, TORRENTFS_BENCH_NETNS="1")
        os.execvpe("unshare", ["unshare", "--net", "--", "sh", "-c",
                               'ip link set lo up && exec "$0" "$@"', sys.executable, "-m",
                               "benchmarks.utp", *(sys.argv[1:] if argv is None else argv)],
                   env)
    with tempfile.TemporaryDirectory(prefix="torrentfs-bench-utp-") as tmp:
        tmp = Path(tmp)
        data = tmp / "data" / "utp-payload"
        data.mkdir(parents=True)
        size = args.size << 20
        h = hashlib.sha256()
        with open(data / "big.bin", "wb") as f:
            rng = __import__("random").Random(29)
            for _ in range(args.size):
                chunk = rng.randbytes(1 << 20)
                h.update(chunk)
                f.write(chunk)
        torrent = tmp / "utp.torrent"
        lt_create(data, torrent, None, piece_size=1 << 20)
        res = run_utp(torrent, tmp / "data", "utp-payload/big.bin", size, h.hexdigest(),
                      size, tmp / "work", seeders=args.seeders, budget=args.budget)
    print(report(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
