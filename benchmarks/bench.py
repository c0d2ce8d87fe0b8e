"""The benchmark behind scripts/bench: torrentfs vs btfs vs a plain libtorrent download.

It builds its own swarm in a temporary folder (a payload of one big random file plus a
60 s H.264 video, a .torrent made by libtorrent, opentracker on 127.0.0.1 and N
libtorrent seeders on 127.0.0.2, .3, ...), then measures, side by side in one run:

  torrentfs and btfs, each measurement on a fresh mount with an empty cache:
    mount -> ready, time to first byte, 20 cold 64 KiB random reads, a sha256-checked
    sequential read of the big file (MB/s, CPU s per GiB), peak RssAnon, a cold
    ffprobe of the video and a cold seek to 40 s with ffmpeg (each the median of
    --av-runs fresh mounts);
  libtorrent (the tests' lt_peer.py leech): the time to download the whole torrent;
  upload (cpuload.py): a libtorrent leecher downloading the whole torrent from
    ``torrentfs seed`` alone, then from a libtorrent seeder alone (MB/s, seeder CPU
    s per GiB); idle CPU: a mount with --idle-peers connected idle peers, no reads
    (% of a core); and issue 13's targets as ratios to libtorrent (targets.py).
  With --scale (benchmarks/scale.py), torrentfs and btfs also mount a generated torrent
  of 100,000 files and one of 1,048,576 pieces: mount time, RssAnon, find | wc -l.

With --slow-swarm (or --slow-only) it also streams a video from a slow swarm, torrentfs
beside btfs, and checks the download cap (benchmarks/slowswarm.py).

It runs in a network namespace of its own with only loopback (unshare --net; see
--no-netns). This is a benchmark, not a test: it reports numbers, and a wedged or failing system
gets "timeout"/"error" in its column while the others go on. Every read through a
mount runs in a worker process with a time bound; everything started is stopped by
PID in finally blocks, every mount is unmounted (lazily, as a last resort).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import random
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from benchmarks import cpuload, slowswarm, targets, v2reads
from benchmarks.benchargs import parse_args
from benchmarks.payload import VIDEO_SECONDS, make_payload, write_zeros_torrent
from benchmarks.procstats import PeerSampler, RssSampler, cpu_seconds, rss_anon_kib, senders
from benchmarks.programs import MOUNTS, Mount, resident_process, run_bounded, say
from benchmarks.report import machine, print_report, summarise, versions
from benchmarks.scale import run_scale
from benchmarks.worker import BenchError, Timeout
from tests.harness.swarm import _lt_argv, child_env, lt_create, lt_seeder, opentracker

CHUNK = 64 * 1024          # the random reads and the first-byte read
SEQ_CHUNK = 1 << 20        # the sequential read
N_RANDOM = 20
SEED = 20241125
SEEK_TO_S = 40


def random_offsets(size: int, n: int = N_RANDOM, seed: int = SEED) -> list[int]:
    """n offsets, one in the middle half of each of n equal strata of the file (so
    any two are at least half a stratum apart), in a seeded random order."""
    rng = random.Random(seed)
    stride = size // n
    offsets = [i * stride + stride // 4 + rng.randrange(max(1, stride // 2 - CHUNK))
               for i in range(n)]
    rng.shuffle(offsets)
    return offsets



# ------------------------------------------------------------------ the benchmark

def ms(t0: float, t1: float) -> float:
    return (t1 - t0) * 1000.0


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation."""
    v = sorted(values)
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


class Bench:
    def __init__(self, args, tmp: Path):
        self.args = args
        self.tmp = tmp
        self.counter = iter(range(1, 1 << 30))
        self.top = "bench-payload"        # the torrent's top folder
        self.payload = tmp / "data" / self.top
        self.torrent = tmp / "bench.torrent"
        self.size = args.size << 20
        self.seeder_ips = [f"127.0.0.{2 + i}" for i in range(args.seeders)]
        self.offsets = random_offsets(self.size)

    # -- one mount, always closed
    @contextlib.contextmanager
    def mount(self, system: str, label: str, res: dict) -> Iterator[Mount]:
        m = MOUNTS[system](self, label)
        try:
            m.start(self.torrent, self.top, "big.bin", self.size, self.args.mount_timeout)
            res.setdefault("ready_s_all", []).append(m.ready_s)
            kib = rss_anon_kib(m.pid) if m.pid else None
            if kib is not None:
                res.setdefault("ready_rss_mib_all", []).append(round(kib / 1024, 1))
            yield m
        except Timeout:
            m.wedged = True
            raise
        finally:
            rss = m.peak_rss_mib()
            if rss is not None:
                res.setdefault("peak_rss_mib_all", {})[label] = round(rss, 1)
            m.close()
            if m.slow_exit:
                res.setdefault("notes", []).append(
                    f"{label}: still running 15 s after fusermount3 -u; killed")

    def measure(self, system: str, res: dict, keys: list[str], label: str,
                fn: Callable[[Mount], None]) -> None:
        """Run fn on a fresh mount; a Timeout or error fills `keys` with its name."""
        say(f"{system}: {label}")
        try:
            with self.mount(system, label, res) as m:
                try:
                    fn(m)
                except Timeout:
                    m.wedged = True
                    raise
        except Timeout as e:
            say(f"{system}: {label}: TIMEOUT ({e})")
            for k in keys:
                res.setdefault(k, "timeout")
            res.setdefault("notes", []).append(f"{label}: timeout: {e}")
        except (BenchError, OSError, subprocess.SubprocessError) as e:
            say(f"{system}: {label}: ERROR ({e})")
            for k in keys:
                res.setdefault(k, "error")
            res.setdefault("notes", []).append(f"{label}: error: {e}")

    def run_fs(self, system: str) -> dict:
        a = self.args
        res: dict[str, Any] = {}
        big = lambda m: m.path("big.bin")  # noqa: E731

        def first_byte(m: Mount) -> None:
            r = m.worker.call(a.read_timeout, op="pread", path=big(m), offset=0, size=CHUNK)
            self.check_chunk(r, 0)
            res["ttfb_ms"] = ms(r["t0"], r["t1"])
        self.measure(system, res, ["ttfb_ms"], "first byte", first_byte)

        def random_reads(m: Mount) -> None:
            times = []
            for off in self.offsets:
                r = m.worker.call(a.read_timeout, op="pread", path=big(m), offset=off, size=CHUNK)
                self.check_chunk(r, off)
                times.append(ms(r["t0"], r["t1"]))
            res["random_ms_all"] = [round(t, 2) for t in times]
            res["random_median_ms"] = statistics.median(times)
            res["random_p90_ms"] = pct(times, 0.9)
            res["random_max_ms"] = max(times)
        self.measure(system, res, ["random_median_ms", "random_p90_ms", "random_max_ms"],
                     "random reads", random_reads)

        def sequential(m: Mount) -> None:
            progress = {"progress": 0, "elapsed": 0.0}
            cpu0 = cpu_seconds(m.pid)
            peers = PeerSampler(m.pid, self.seeder_ips)
            m.worker.send(op="seq", path=big(m), chunk=SEQ_CHUNK, budget=a.seq_budget)
            try:
                r = m.worker.recv(a.seq_budget + a.read_timeout, progress.update)
                cpu1 = cpu_seconds(m.pid)
            except Timeout:
                # a read wedged: report what was read until then, marked partial
                res["seq_partial"] = True
                res["seq_bytes"] = progress["progress"]
                res["seq_MBps"] = (progress["progress"] / progress["elapsed"] / 1e6
                                   if progress["elapsed"] else "timeout")
                raise
            finally:
                res["peer_bytes"] = by_ip = peers.stop()
                res["peers"] = senders(by_ip)
                res["recv_95pct_after_s"] = peers.done_after()
            secs = r["t1"] - r["t0"]
            res["seq_bytes"] = r["bytes"]
            res["seq_s"] = secs
            res["seq_partial"] = r["partial"]
            res["seq_MBps"] = r["bytes"] / secs / 1e6
            if not r["partial"] and r["sha256"] != self.big_sha256:
                raise BenchError("sequential read: sha256 MISMATCH")
            if not r["partial"] and r["bytes"] != self.size:
                raise BenchError(f"sequential read: {r['bytes']} bytes, expected {self.size}")
            res["seq_sha256_ok"] = not r["partial"]
            if cpu0 is not None and cpu1 is not None and r["bytes"]:
                res["cpu_s"] = cpu1 - cpu0
                res["cpu_s_per_GiB"] = (cpu1 - cpu0) / (r["bytes"] / (1 << 30))
        self.measure(system, res, ["seq_MBps", "cpu_s_per_GiB"], "sequential", sequential)

        # ffprobe and the seek: the median of --av-runs cold runs, each on a fresh mount
        # (one run of a ~0.1 s program on a shared machine is mostly its noise).
        def ffprobe(m: Mount) -> None:
            rc, secs, out = run_bounded(["ffprobe", "-v", "error", "-show_format",
                                         "-show_streams", m.path("video.mkv")], a.ff_timeout)
            if rc != 0 or "codec_name=h264" not in out:
                raise BenchError(f"ffprobe failed ({rc}): {out[-500:]}")
            res.setdefault("ffprobe_s_all", []).append(round(secs, 4))

        def seek(m: Mount) -> None:
            rc, secs, out = run_bounded(["ffmpeg", "-nostdin", "-v", "error", "-ss", str(SEEK_TO_S),
                                         "-i", m.path("video.mkv"), "-frames:v", "1",
                                         "-f", "null", "-"], a.ff_timeout)
            if rc != 0:
                raise BenchError(f"ffmpeg seek failed ({rc}): {out[-500:]}")
            res.setdefault("seek_s_all", []).append(round(secs, 4))
        for key, label, fn in (("ffprobe_s", "ffprobe", ffprobe), ("seek_s", "seek", seek)):
            for _ in range(a.av_runs):
                self.measure(system, res, [key], label, fn)
                if key in res:  # a timeout or an error: no more runs of it
                    break
            if key not in res:
                res[key] = statistics.median(res[key + "_all"])

        readies = [t for t in res.get("ready_s_all", []) if t is not None]
        if readies:
            res["ready_s"] = statistics.median(readies)
        if res.get("ready_rss_mib_all"):
            res["ready_rss_mib"] = statistics.median(res["ready_rss_mib_all"])
        peaks = res.get("peak_rss_mib_all", {})
        if peaks:
            res["peak_rss_mib"] = max(peaks.values())
        return res

    def check_chunk(self, r: dict, offset: int) -> None:
        with open(self.payload / "big.bin", "rb") as f:
            want = os.pread(f.fileno(), CHUNK, offset)
        if r["n"] != len(want) or r["sha256"] != hashlib.sha256(want).hexdigest():
            raise BenchError(f"read at {offset}: wrong data ({r['n']} bytes)")

    def run_libtorrent(self, run_no: int) -> dict:
        """A plain libtorrent download of the whole torrent (the tests' lt_peer.py
        leech, on 127.0.0.50): MB/s to 'download complete' (before its recheck)."""
        say("libtorrent: download")
        res: dict[str, Any] = {}
        save = self.tmp / f"lt-download-{run_no}"
        save.mkdir()
        timeout = self.args.seq_budget * 2 + 60
        argv = _lt_argv("leech", "--torrent", str(self.torrent), "--save-path", str(save),
                        "--listen", "127.0.0.50:0", "--timeout", str(timeout))
        lines: list[tuple[float, str]] = []
        done = {}
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, env=child_env())
        sampler = RssSampler(proc.pid)
        peer_sampler = PeerSampler(proc.pid, self.seeder_ips)
        cpu0 = cpu_seconds(proc.pid) or 0.0

        def reader() -> None:
            for line in proc.stderr:
                now = time.monotonic()
                lines.append((now, line.rstrip()))
                if "download complete" in line and "t" not in done:
                    done["t"] = now
                    done["cpu"] = cpu_seconds(proc.pid)
        th = threading.Thread(target=reader, daemon=True)
        th.start()
        try:
            rc = proc.wait(timeout + 20)
        except subprocess.TimeoutExpired:
            rc = None
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            sampler.stop()
            res["peer_bytes"] = by_ip = peer_sampler.stop()
            res["peers"] = senders(by_ip)
            res["recv_95pct_after_s"] = peer_sampler.done_after()
            th.join(5)
            shutil.rmtree(save, ignore_errors=True)
        (self.tmp / f"lt-download-{run_no}.log").write_text("\n".join(l for _, l in lines))
        res["peak_rss_mib"] = sampler.peak_kib / 1024 if sampler.samples else None
        if "t" in done:
            secs = done["t"] - t0
            res["seq_s"] = secs
            res["seq_MBps"] = self.total_bytes / secs / 1e6
            if done.get("cpu") is not None:
                res["cpu_s_per_GiB"] = (done["cpu"] - cpu0) / (self.total_bytes / (1 << 30))
            res["recheck_ok"] = rc == 0
            if rc != 0:
                res.setdefault("notes", []).append(f"leech exited {rc} after download")
        else:
            res["seq_MBps"] = "timeout" if rc is None else "error"
            res.setdefault("notes", []).append(
                f"leech exited {rc}: " + " | ".join(l for _, l in lines[-5:]))
        return res

    def run_cpu_loads(self) -> tuple[dict | None, dict | None]:
        """The upload rows and the idle-CPU row (``cpuload``), on a tracker-less
        torrent of the same payload, so only the peers given take part."""
        a = self.args
        if "torrentfs" not in a.only or not (a.upload or a.idle_peers):
            return None, None
        torrent = self.tmp / "notracker.torrent"
        lt_create(self.payload, torrent, None, a.piece_size << 10)
        upload = idle = None
        runs = []
        if a.upload:
            for _ in range(a.runs):
                try:
                    runs.append(cpuload.run_upload(self.tmp / f"upload-{len(runs)}", torrent,
                                                   self.payload.parent, self.total_bytes,
                                                   timeout=a.seq_budget * 2 + 60))
                except (RuntimeError, TimeoutError, OSError,
                        subprocess.SubprocessError) as e:
                    say(f"upload: ERROR ({e})")
            upload = targets.combine_upload(runs) if runs else None
        if a.idle_peers:
            work = self.tmp / "idle"
            work.mkdir()
            try:
                idle = cpuload.run_idle(work, torrent, self.payload.parent,
                                        peers=a.idle_peers, seconds=a.idle_seconds)
            except (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError) as e:
                say(f"idle: ERROR ({e})")
                idle = {"core_pct": "error"}
            idle["peers"] = a.idle_peers
        return upload, idle

    def run_big_torrent(self, tracker) -> dict:
        """RssAnon right after mounting a torrent of a sparse --big-size GiB file."""
        out: dict[str, Any] = {}
        size = self.args.big_size << 30
        torrent = self.tmp / "big16.torrent"
        say(f"big torrent: {self.args.big_size} GiB of zeros")
        ih = write_zeros_torrent(torrent, "bench-sparse", "zeros.bin", size,
                                 self.args.piece_size << 10, tracker.announce_url)
        out["info_hash"] = ih.hex()
        tracker.add(ih)
        for system in [s for s in ("torrentfs", "btfs") if s in self.args.only]:
            say(f"{system}: mount the {self.args.big_size} GiB torrent")
            m = MOUNTS[system](self, "big-torrent")
            try:
                m.start(torrent, "bench-sparse", "zeros.bin", size, self.args.mount_timeout)
                kib = rss_anon_kib(m.pid) if m.pid else None
                out[system] = {"ready_s": m.ready_s,
                               "rss_mib": kib / 1024 if kib is not None else None}
                time.sleep(2)
                kib2 = rss_anon_kib(m.pid) if m.pid else None
                out[system]["rss_mib_after_2s"] = kib2 / 1024 if kib2 is not None else None
            except Timeout as e:
                m.wedged = True
                out[system] = {"rss_mib": "timeout", "note": str(e)}
            except (BenchError, OSError, subprocess.SubprocessError) as e:
                out[system] = {"rss_mib": "error", "note": str(e)}
            finally:
                m.close()
        return out



# ------------------------------------------------------------------ main

def isolate_network(argv: list[str], module: str = "benchmarks.bench") -> None:
    """Re-exec the benchmark (``python -m module``) in a new network namespace whose
    only interface is loopback (unshare --net), unless already there or --no-netns. btfs's libtorrent
    listens on every interface and turns on LSD multicast and DHT: inside the
    namespace nothing of the benchmark can reach any other host, and nothing
    outside (another swarm on this machine's loopback) can reach it."""
    if os.environ.get("TORRENTFS_BENCH_NETNS") == "1" or "--no-netns" in argv:
        return
    if shutil.which("unshare") is None:
        raise SystemExit("bench: unshare (util-linux) is needed, or pass --no-netns")
    env = dict(os.environ, TORRENTFS_BENCH_NETNS="1")
    os.execvpe("unshare", ["unshare", "--net", "--", "sh", "-c",
                           'ip link set lo up && exec "$0" "$@"',
                           sys.executable, "-m", module, *argv], env)


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__)
    isolate_network(sys.argv[1:] if argv is None else argv)
    # SIGTERM/SIGHUP unwind like Ctrl-C, so every finally block stops what it started.
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    t_start = time.monotonic()
    argv0 = os.environ.get("TORRENTFS_BENCH_ARGV0") or shlex.join([sys.executable, "-m", "benchmarks.bench"])
    command = " ".join([argv0, shlex.join(sys.argv[1:])]).strip()
    info = {"command": command, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "machine": machine(), "versions": versions(),
            "load_before": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
            "netns": os.environ.get("TORRENTFS_BENCH_NETNS") == "1",
            "config": {k: v for k, v in vars(args).items()}}
    print(f"command:  {command}")
    mc = info["machine"]
    print(f"machine:  nproc={mc['nproc']}, {mc['kernel']}, {mc['cpu']}, {mc['memory']} RAM")
    v = info["versions"]
    print(f"versions: torrentfs {v['torrentfs']} on Python {v['python']}; btfs {v['btfs']}; "
          f"libtorrent {v['libtorrent']}")
    print(f"load:     {info['load_before']} (1/5/15-min load average before the run)")
    print(f"swarm:    {args.seeders} libtorrent seeders (TCP, no uTP), "
          f"upload cap {args.rate or 'none'} B/s each; big file {args.size} MiB, "
          f"pieces {args.piece_size} KiB; runs {args.runs}; "
          + ("in a loopback-only network namespace of its own" if info["netns"]
             else "in the machine's network namespace"), flush=True)

    with contextlib.ExitStack() as stack:
        if args.keep:
            tmp = Path(args.keep).resolve()
            tmp.mkdir(parents=True, exist_ok=True)
            if any(tmp.iterdir()):
                raise SystemExit(f"bench: --keep {tmp}: not empty")
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="torrentfs-bench-")))
        bench = Bench(args, tmp)
        if args.slow_only:  # the slow-swarm section alone: no payload, no main runs
            tracker = stack.enter_context(opentracker(workdir=tmp / "tracker"))
            slow = slowswarm.run(bench, tracker, stack)
            print()
            print(slowswarm.report(slow, args))
            print(f"total time: {time.monotonic() - t_start:.0f} s")
            if args.json:
                Path(args.json).write_text(json.dumps({**info, "slow_swarm": slow},
                                                      indent=1, default=str))
            return 0

        t = time.monotonic()
        say(f"making the payload: {args.size} MiB of random data and a {VIDEO_SECONDS} s video")
        bench.big_sha256 = make_payload(bench.payload, args.size)
        bench.total_bytes = sum(p.stat().st_size for p in bench.payload.iterdir())
        info["payload"] = {"big_bytes": bench.size, "video_bytes":
                           (bench.payload / "video.mkv").stat().st_size,
                           "big_sha256": bench.big_sha256, "offsets": bench.offsets,
                           "seconds": time.monotonic() - t}

        tracker = stack.enter_context(opentracker(workdir=tmp / "tracker"))
        t = time.monotonic()
        ih = lt_create(bench.payload, bench.torrent, tracker.announce_url,
                       args.piece_size << 10)
        info["payload"]["torrent_seconds"] = time.monotonic() - t
        info["payload"]["info_hash"] = ih.hex()
        tracker.add(ih)
        say(f"torrent {ih.hex()}; starting {args.seeders} seeders")
        for ip in bench.seeder_ips:
            stack.enter_context(lt_seeder(bench.torrent, tmp / "data", ip=ip,
                                          upload_rate=args.rate or None,
                                          workdir=tmp / "seeders", timeout=180))
        tracker.wait_peers(ih, args.seeders, timeout=30)
        say(f"swarm ready after {time.monotonic() - t_start:.1f} s")

        if "torrentfs" in args.only and not args.no_resident:
            try:
                pid = stack.enter_context(resident_process(tmp))
                say(f"torrentfs: resident process {pid} started (--no-resident: without)")
            except BenchError as e:
                say(f"torrentfs: no resident process ({e}); mounting without")
                args.no_resident = True
        info["resident"] = not args.no_resident
        runs = []
        for run_no in range(1, args.runs + 1):
            if args.runs > 1:
                say(f"run {run_no}/{args.runs}")
            run: dict[str, Any] = {}
            for system in args.only:
                if system == "libtorrent":
                    run[system] = bench.run_libtorrent(run_no)
                else:
                    run[system] = bench.run_fs(system)
            runs.append(run)

        big = bench.run_big_torrent(tracker) if args.big_torrent else None
        upload, idle = bench.run_cpu_loads()
        v2r = v2reads.run(bench, tracker) if args.v2_reads else None
        utp_rows = None
        if args.utp:
            from benchmarks.utp import run_utp
            utp_rows = run_utp(bench.torrent, tmp / "data", f"{bench.top}/big.bin",
                               bench.size, bench.big_sha256, bench.total_bytes, tmp / "utp",
                               seeders=args.seeders, budget=args.seq_budget)
        slow = slowswarm.run(bench, tracker, stack) if args.slow_swarm else None
        scale = run_scale(bench) if args.scale else None
        summary = summarise(runs, big, scale)
        elapsed = time.monotonic() - t_start

    print_report(summary, runs, args)
    if upload:
        print()
        print("upload: a libtorrent leecher downloads the whole torrent from one seeder "
              "alone")
        print(targets.upload_table(upload))
    if v2r is not None:
        v2reads.print_rows(v2r)
    if utp_rows is not None:
        from benchmarks.utp import report as utp_report
        print()
        print(utp_report(utp_rows))
    target_rows = targets.rows(summary, runs, upload, idle)
    print()
    print(targets.targets_table(target_rows))
    if slow is not None:
        print()
        print(slowswarm.report(slow, args))
    print(f"total time: {elapsed:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {**info, "elapsed_s": elapsed, "runs": runs, "big_torrent": big,
             "upload": upload, "idle": idle, "v2_reads": v2r, "utp": utp_rows,
             "slow_swarm": slow, "scale": scale, "summary": summary,
             "targets": target_rows}, indent=1, default=str))
        print(f"raw numbers: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
