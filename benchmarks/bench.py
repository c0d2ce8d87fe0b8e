"""The benchmark behind scripts/bench: torrentfs vs btfs vs a plain libtorrent download.

It builds its own swarm in a temporary folder (a payload of one big random file plus a
60 s H.264 video, a .torrent made by libtorrent, opentracker on 127.0.0.1 and N
libtorrent seeders on 127.0.0.2, .3, ...), then measures, side by side in one run:

  torrentfs and btfs, each measurement on a fresh mount with an empty cache:
    mount -> ready, time to first byte, 20 cold 64 KiB random reads, a sha256-checked
    sequential read of the big file (MB/s, CPU s per GiB), peak RssAnon, a cold
    ffprobe of the video and a cold seek to 40 s with ffmpeg;
  libtorrent (the tests' lt_peer.py leech): the time to download the whole torrent.

It runs in a network namespace of its own with only loopback (unshare --net; see
--no-netns). This is a benchmark, not a test: it reports numbers, and a wedged or failing system
gets "timeout"/"error" in its column while the others go on. Every read through a
mount runs in a worker process with a time bound; everything started is stopped by
PID in finally blocks, every mount is unmounted (lazily, as a last resort).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import select
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

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 64 * 1024          # the random reads and the first-byte read
SEQ_CHUNK = 1 << 20        # the sequential read
N_RANDOM = 20
SEED = 20241125
SEEK_TO_S = 40
VIDEO_SECONDS = 60


# ------------------------------------------------------------------ the worker
# Every read through a mount happens in this small child process, so a wedged
# FUSE read blocks the worker, never the benchmark: the parent waits on its
# stdout with a deadline and kills it. Requests and replies are JSON lines.

def _emit(msg: dict) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def _w_wait_listed(req: dict) -> dict:
    """Poll until `name` is listed in `dir` with `size` bytes: when (monotonic)."""
    folder, name, size = req["dir"], req["name"], req["size"]
    deadline = time.monotonic() + req["timeout"]
    last = "not listed"
    while True:
        try:
            if name in os.listdir(folder):
                st = os.stat(os.path.join(folder, name))
                if st.st_size == size:
                    return {"t": time.monotonic()}
                last = f"listed with size {st.st_size}"
        except OSError as e:
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            return {"error": f"not ready within {req['timeout']}s: {last}"}
        time.sleep(0.005)


def _w_pread(req: dict) -> dict:
    """open + pread + close; times in monotonic seconds, data as sha256."""
    t0 = time.monotonic()
    fd = os.open(req["path"], os.O_RDONLY)
    try:
        data = os.pread(fd, req["size"], req["offset"])
    finally:
        os.close(fd)
    t1 = time.monotonic()
    return {"t0": t0, "t1": t1, "n": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _w_seq(req: dict) -> dict:
    """Read the whole file in `chunk` reads, hashing; stop early after `budget` s."""
    h = hashlib.sha256()
    buf = bytearray(req["chunk"])
    view = memoryview(buf)
    n = 0
    partial = False
    t0 = last = time.monotonic()
    with open(req["path"], "rb", buffering=0) as f:
        while True:
            k = f.readinto(buf)
            if not k:
                break
            h.update(view[:k])
            n += k
            now = time.monotonic()
            if now - last >= 0.5:
                last = now
                _emit({"progress": n, "elapsed": now - t0})
            if now - t0 >= req["budget"]:
                partial = True
                break
    t1 = time.monotonic()
    return {"bytes": n, "t0": t0, "t1": t1, "partial": partial,
            "sha256": None if partial else h.hexdigest()}


def worker_main() -> int:
    ops = {"wait_listed": _w_wait_listed, "pread": _w_pread, "seq": _w_seq}
    for line in sys.stdin:
        req = json.loads(line)
        try:
            res = ops[req["op"]](req)
        except OSError as e:
            res = {"error": f"{type(e).__name__}: {e}"}
        res["done"] = True
        _emit(res)
    return 0


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    sys.exit(worker_main())


# ------------------------------------------------------------------ harness

from tests.harness.swarm import (_lt_argv, child_env, lt_create, lt_seeder,  # noqa: E402
                   opentracker, wait_until)
from torrentfs.cli.main import mount_state_file, pid_alive  # noqa: E402

TORRENTFS = str(Path(sys.executable).with_name("torrentfs"))
FUSERMOUNT = shutil.which("fusermount3") or "fusermount3"
CLK_TCK = os.sysconf("SC_CLK_TCK")
SYSTEMS = ("torrentfs", "btfs", "libtorrent")


class Timeout(Exception):
    """A bounded wait ran out: the system under test is reported as 'timeout'."""


class BenchError(Exception):
    """Something went wrong with one measurement: reported as 'error'."""


def say(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class Worker:
    """The reader child process (see worker_main)."""

    def __init__(self, cwd: Path):
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker"], cwd=cwd,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=child_env())
        self.buf = b""

    def send(self, **req) -> None:
        self.proc.stdin.write((json.dumps(req) + "\n").encode())
        self.proc.stdin.flush()

    def recv(self, timeout: float, on_progress: Callable[[dict], None] | None = None) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            while b"\n" not in self.buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Timeout(f"no answer within {timeout:.0f}s")
                ready, _, _ = select.select([self.proc.stdout], [], [], left)
                if ready:
                    chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
                    if not chunk:
                        raise BenchError(f"reader process died ({self.proc.poll()})")
                    self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            msg = json.loads(line)
            if msg.get("done"):
                if "error" in msg:
                    raise BenchError(msg["error"])
                return msg
            if on_progress:
                on_progress(msg)

    def call(self, timeout: float, **req) -> dict:
        self.send(**req)
        return self.recv(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(2)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(5)  # a read stuck in FUSE ends once the mount is gone
        for f in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                f.close()


def run_bounded(argv: list[str], timeout: float, cwd: Path | None = None) -> tuple[int, float, str]:
    """Run argv with a deadline: (returncode, seconds, output). Timeout if it overruns
    (it is killed; a child stuck in a FUSE read is released by the caller's abort)."""
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, cwd=cwd, env=child_env())
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            raise Timeout(f"{Path(argv[0]).name} did not finish within {timeout:.0f}s") from None
        elapsed = time.monotonic() - t0
        out.seek(0)
        return rc, elapsed, out.read().decode("utf-8", "replace")


# ------------------------------------------------------------------ /proc

def cpu_seconds(pid: int) -> float | None:
    """utime + stime of the process (all its threads), in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def rss_anon_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


class RssSampler:
    """Samples RssAnon of a PID every ~50 ms in a thread; keeps the peak."""

    def __init__(self, pid: int, interval: float = 0.05):
        self.pid, self.interval = pid, interval
        self.peak_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            kib = rss_anon_kib(self.pid)
            if kib is not None:
                self.peak_kib = max(self.peak_kib, kib)
                self.samples += 1
            if self._stop.wait(self.interval):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)


def kill_pid(pid: int, name_hint: str, timeout: float = 10.0) -> None:
    """SIGTERM, a bounded wait, SIGKILL: only if /proc says it is still `name_hint`."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return
    if name_hint.encode() not in cmdline:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not pid_alive(pid), wait, interval=0.05)
            return


def child_pid(pid: int) -> int | None:
    """The first child of `pid` (from /proc), if any."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return None
    return int(kids[0]) if kids else None


def tcp_received(pid: int, ips: list[str]) -> dict[tuple[str, str], int]:
    """Bytes received so far on each established TCP connection of `pid` to one of
    `ips`, keyed by (local, peer) endpoint (from `ss -tnpi`)."""
    try:
        r = subprocess.run(["ss", "-tnpiH", "state", "established"], capture_output=True,
                           text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found: dict[tuple[str, str], int] = {}
    current = None
    for line in r.stdout.splitlines():
        if line and not line[0].isspace():
            current = None
            parts = line.split()  # Recv-Q Send-Q Local:Port Peer:Port Process
            if f"pid={pid}," in line and len(parts) >= 4 \
                    and parts[3].rsplit(":", 1)[0] in ips:
                current = (parts[2], parts[3])
                found[current] = 0
        elif current is not None:
            m = re.search(r"bytes_received:(\d+)", line)
            if m:
                found[current] = int(m.group(1))
    return found


class PeerSampler:
    """Samples, every 0.25 s in a thread, how many bytes `pid` has received on each
    TCP connection to a seeder; by_ip() adds up the most seen per connection."""

    def __init__(self, pid: int, ips: list[str], interval: float = 0.25):
        self.pid, self.ips, self.interval = pid, ips, interval
        self.conns: dict[tuple[str, str], int] = {}
        self.t0 = time.monotonic()
        self.timeline: list[tuple[float, int]] = []  # (s since start, bytes so far)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def sample(self) -> None:
        for key, n in tcp_received(self.pid, self.ips).items():
            self.conns[key] = max(n, self.conns.get(key, 0))
        self.timeline.append((round(time.monotonic() - self.t0, 2), sum(self.conns.values())))

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def stop(self) -> dict[str, int]:
        self._stop.set()
        self._thread.join(15)
        self.sample()
        return self.by_ip()

    def done_after(self, fraction: float = 0.95) -> float | None:
        """Seconds until `fraction` of all bytes received had arrived."""
        total = self.timeline[-1][1] if self.timeline else 0
        return next((t for t, n in self.timeline if total and n >= fraction * total), None)

    def by_ip(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (_, peer), n in self.conns.items():
            ip = peer.rsplit(":", 1)[0]
            out[ip] = out.get(ip, 0) + n
        return dict(sorted(out.items()))


def senders(by_ip: dict[str, int]) -> int:
    """How many seeders sent at least 1 MiB."""
    return sum(1 for n in by_ip.values() if n >= 1 << 20)


# ------------------------------------------------------------------ the swarm

def make_payload(folder: Path, size_mib: int) -> str:
    """The big random file (os.urandom in 1 MiB chunks) and the video; returns the
    big file's sha256."""
    folder.mkdir(parents=True)
    h = hashlib.sha256()
    with open(folder / "big.bin", "wb") as f:
        for _ in range(size_mib):
            block = os.urandom(1 << 20)
            h.update(block)
            f.write(block)
    rc, elapsed, out = run_bounded(
        ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi",
         "-i", f"testsrc2=size=1280x720:rate=30", "-t", str(VIDEO_SECONDS),
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-pix_fmt", "yuv420p",
         str(folder / "video.mkv")], timeout=300)
    if rc != 0:
        raise SystemExit(f"bench: ffmpeg could not make the video:\n{out}")
    return h.hexdigest()


def bencode(v: Any) -> bytes:
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(map(bencode, v)) + b"e"
    if isinstance(v, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, x) for k, x in v.items())
        return b"d" + b"".join(bencode(k) + bencode(x) for k, x in items) + b"e"
    raise TypeError(type(v))


def write_zeros_torrent(out: Path, top: str, name: str, size: int, piece: int,
                        tracker: str) -> bytes:
    """A .torrent of folder `top` holding one file of `size` zero bytes, as
    `torrentfs create` or libtorrent would make of a sparse file, without reading
    16 GiB of holes: every full piece of zeros has the same SHA-1. Returns the
    info-hash. (Nothing seeds it: the mount only has to show it.)"""
    full, rest = divmod(size, piece)
    pieces = hashlib.sha1(bytes(piece)).digest() * full
    if rest:
        pieces += hashlib.sha1(bytes(rest)).digest()
    info = {"files": [{"length": size, "path": [name]}], "name": top,
            "piece length": piece, "pieces": pieces}
    out.write_bytes(bencode({"announce": tracker, "created by": "torrentfs bench",
                             "info": info}))
    return hashlib.sha1(bencode(info)).digest()


def random_offsets(size: int, n: int = N_RANDOM, seed: int = SEED) -> list[int]:
    """n offsets, one in the middle half of each of n equal strata of the file (so
    any two are at least half a stratum apart), in a seeded random order."""
    rng = random.Random(seed)
    stride = size // n
    offsets = [i * stride + stride // 4 + rng.randrange(max(1, stride // 2 - CHUNK))
               for i in range(n)]
    rng.shuffle(offsets)
    return offsets


# ------------------------------------------------------------------ mounts

class Mount:
    """One fresh mount of the torrent with an empty cache, and its reader worker."""

    system = "?"

    def __init__(self, bench: "Bench", label: str):
        self.bench = bench
        self.label = label
        n = next(bench.counter)
        self.mnt = bench.tmp / f"mnt-{self.system}-{n}"
        self.cache = bench.tmp / f"cache-{self.system}-{n}"
        self.mnt.mkdir()
        self.cache.mkdir()
        self.log_path = bench.tmp / f"{self.system}-{n}-{label}.log"
        # Resolved now, while the mountpoint is a plain folder: a stat of it once a
        # (possibly wedged) FUSE mount is there could block this process.
        self.state_file = mount_state_file(self.cache, str(self.mnt))
        self.worker = Worker(bench.tmp)
        self.pid: int | None = None
        self.sampler: RssSampler | None = None
        self.ready_s: float | None = None
        self.wedged = False
        self.slow_exit = False

    # the file names inside the mount
    def path(self, name: str) -> str:
        return str(self.mnt / self.bench.top / name)

    def wait_listed(self, t0: float, timeout: float) -> float:
        """Seconds from t0 until the worker saw the file listed with its full size."""
        r = self.worker.recv(timeout + 5)
        return r["t"] - t0

    def start_sampler(self) -> None:
        if self.pid and self.sampler is None:
            self.sampler = RssSampler(self.pid)

    def peak_rss_mib(self) -> float | None:
        return self.sampler.peak_kib / 1024 if self.sampler and self.sampler.samples else None

    def keep_log(self) -> None:
        """Copy the filesystem's own log out of its cache before the cache goes."""
        for src in self.cache.glob(self.own_log):
            with contextlib.suppress(OSError):
                shutil.copyfile(src, self.log_path.with_suffix(".fs.log"))

    def mounted(self) -> bool:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == str(self.mnt) for line in f)

    def lazy_unmount(self) -> None:
        if self.mounted():
            subprocess.run([FUSERMOUNT, "-uz", str(self.mnt)], capture_output=True, timeout=30)

    def close(self) -> None:
        """Unmount and stop everything of this mount, bounded; lazily if wedged."""
        self.keep_log()  # btfs deletes its folder, log included, when it unmounts
        try:
            if self.wedged:
                self.abort()
            else:
                try:
                    self.unmount()
                except Exception as e:  # noqa: BLE001  (whatever failed, clean up)
                    say(f"{self.system}: clean unmount failed ({e}); aborting")
                    self.abort()
        finally:
            if self.sampler:
                self.sampler.stop()
            self.worker.stop()
            self.lazy_unmount()
            self.keep_log()
            shutil.rmtree(self.cache, ignore_errors=True)
            with contextlib.suppress(OSError):
                self.mnt.rmdir()


class TorrentfsMount(Mount):
    system = "torrentfs"
    own_log = "*/torrentfs.log"

    def start(self, torrent: Path, top: str, name: str, size: int, timeout: float) -> None:
        t0 = time.monotonic()
        with open(self.log_path, "wb") as log:
            cli = subprocess.Popen([TORRENTFS, "mount", str(torrent), str(self.mnt),
                                    "--cache-dir", str(self.cache), "--no-dht"],
                                   stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, env=child_env())
        self.worker.send(op="wait_listed", dir=str(self.mnt / top), name=name,
                         size=size, timeout=timeout)
        # Wait for the CLI (it returns once the mount is ready), noting the daemon it
        # forks: if the mount wedges before the state file is written, that is the PID.
        deadline = time.monotonic() + timeout + 5
        while (rc := cli.poll()) is None:
            if self.pid is None:
                self.pid = child_pid(cli.pid)
            if time.monotonic() >= deadline:
                cli.kill()
                cli.wait(5)
                self._find_pid()
                self.wedged = True
                raise Timeout(f"torrentfs mount did not return within {timeout:.0f}s")
            time.sleep(0.01)
        self._find_pid()
        self.start_sampler()
        if rc != 0:
            raise BenchError(f"torrentfs mount failed ({rc}): "
                             f"{self.log_path.read_text(errors='replace').strip()}")
        self.ready_s = self.wait_listed(t0, timeout)

    def _find_pid(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.pid = int(self.state_file.read_text().strip())

    def unmount(self) -> None:
        if self.pid is None:
            self._find_pid()
        if self.mounted():
            subprocess.run([TORRENTFS, "unmount", str(self.mnt), "--cache-dir", str(self.cache)],
                           capture_output=True, timeout=60, env=child_env())
        if self.pid:
            with contextlib.suppress(TimeoutError):
                wait_until(lambda: not pid_alive(self.pid), 20, interval=0.05)
            if pid_alive(self.pid):
                say(f"torrentfs daemon {self.pid} still alive after unmount; killing it")
                kill_pid(self.pid, "torrentfs")

    def abort(self) -> None:
        if self.pid is None:
            self._find_pid()
        self.lazy_unmount()
        if self.pid:
            kill_pid(self.pid, "torrentfs")


class BtfsMount(Mount):
    system = "btfs"
    own_log = "btfs-*/log.txt"  # btfs's alert log, in its btfs-XXXXXX folder

    def start(self, torrent: Path, top: str, name: str, size: int, timeout: float) -> None:
        # -f: stay in the foreground, so the process we start is the filesystem.
        t0 = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(["btfs", "-f", f"--data-directory={self.cache}",
                                          str(torrent), str(self.mnt)],
                                         stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=child_env())
        self.pid = self.proc.pid
        self.start_sampler()
        self.worker.send(op="wait_listed", dir=str(self.mnt / top), name=name,
                         size=size, timeout=timeout)
        try:
            self.ready_s = self.wait_listed(t0, timeout)
        except BenchError:
            if self.proc.poll() is not None:
                raise BenchError(f"btfs exited with {self.proc.returncode}: "
                                 f"{self.log_path.read_text(errors='replace')[-2000:]}") from None
            raise

    def unmount(self) -> None:
        if self.mounted():
            r = subprocess.run([FUSERMOUNT, "-u", str(self.mnt)], capture_output=True,
                               text=True, timeout=30)
            if r.returncode != 0:
                raise BenchError(f"fusermount3 -u: {r.stderr.strip()}")
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            say("btfs still running 15 s after its unmount; killing it")
            self.slow_exit = True
            self.abort()

    def abort(self) -> None:
        self.lazy_unmount()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(10)


MOUNTS = {"torrentfs": TorrentfsMount, "btfs": BtfsMount}


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

        def ffprobe(m: Mount) -> None:
            rc, secs, out = run_bounded(["ffprobe", "-v", "error", "-show_format",
                                         "-show_streams", m.path("video.mkv")], a.ff_timeout)
            if rc != 0 or "codec_name=h264" not in out:
                raise BenchError(f"ffprobe failed ({rc}): {out[-500:]}")
            res["ffprobe_s"] = secs
        self.measure(system, res, ["ffprobe_s"], "ffprobe", ffprobe)

        def seek(m: Mount) -> None:
            rc, secs, out = run_bounded(["ffmpeg", "-nostdin", "-v", "error", "-ss", str(SEEK_TO_S),
                                         "-i", m.path("video.mkv"), "-frames:v", "1",
                                         "-f", "null", "-"], a.ff_timeout)
            if rc != 0:
                raise BenchError(f"ffmpeg seek failed ({rc}): {out[-500:]}")
            res["seek_s"] = secs
        self.measure(system, res, ["seek_s"], "seek", seek)

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


# ------------------------------------------------------------------ report

ROWS = [  # (label, key, better, format)
    ("mount -> file listed, s", "ready_s", "lower", "{:.2f}"),
    ("first 64 KiB at offset 0, ms", "ttfb_ms", "lower", "{:.0f}"),
    ("20 cold random 64 KiB reads: median ms", "random_median_ms", "lower", "{:.0f}"),
    ("  p90 ms", "random_p90_ms", "lower", "{:.0f}"),
    ("  max ms", "random_max_ms", "lower", "{:.0f}"),
    ("sequential read, MB/s", "seq_MBps", "higher", "{:.1f}"),
    ("CPU s per GiB read (fs process)", "cpu_s_per_GiB", "lower", "{:.2f}"),
    ("RssAnon once listed, MiB", "ready_rss_mib", "lower", "{:.1f}"),
    ("peak RssAnon, MiB", "peak_rss_mib", "lower", "{:.1f}"),
    ("seeders that sent >= 1 MiB (seq read)", "peers", "", "{:.0f}"),
    ("ffprobe of the video (cold), s", "ffprobe_s", "lower", "{:.2f}"),
    ("ffmpeg -ss 40, 1 frame (cold), s", "seek_s", "lower", "{:.2f}"),
    ("RssAnon once listed, {big} GiB torrent, MiB", "big_rss_mib", "lower", "{:.1f}"),
]


def combine(values: list[Any]) -> Any:
    """The median of the runs' numbers; a string if every run failed."""
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if nums:
        return statistics.median(nums)
    strs = [v for v in values if isinstance(v, str)]
    return strs[0] if strs else None


def summarise(runs: list[dict], big: dict | None) -> dict:
    summary: dict[str, dict] = {}
    for system in SYSTEMS:
        per = [r[system] for r in runs if system in r]
        if not per:
            continue
        s = {}
        for _, key, _, _ in ROWS:
            vals = [p.get(key) for p in per if key in p]
            if vals:
                s[key] = combine(vals)
        if any(p.get("seq_partial") for p in per):
            s["seq_partial"] = True
        summary[system] = s
    if big:
        for system in ("torrentfs", "btfs"):
            if system in big and system in summary:
                summary[system]["big_rss_mib"] = big[system].get("rss_mib")
    return summary


def fmt(value: Any, spec: str, partial: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    text = spec.format(value)
    return text + " (partial)" if partial else text


def table(summary: dict, args) -> str:
    cols = ["torrentfs", "btfs", "libtorrent", "torrentfs/btfs", "better"]
    rows = []
    for label, key, better, spec in ROWS:
        if not any(key in summary.get(s, {}) for s in SYSTEMS):
            continue
        label = label.format(big=args.big_size)
        cells = []
        for s in SYSTEMS:
            v = summary.get(s, {}).get(key)
            cells.append(fmt(v, spec, key in ("seq_MBps", "cpu_s_per_GiB")
                             and summary.get(s, {}).get("seq_partial")))
        a, b = summary.get("torrentfs", {}).get(key), summary.get("btfs", {}).get(key)
        if better and isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
            ratio = f"{a / b:.2g}" if a / b < 0.1 else f"{a / b:.2f}"
            if key == "seq_MBps" and summary["btfs"].get("seq_partial"):
                ratio += " (vs partial)"
        elif better and isinstance(b, str) and isinstance(a, (int, float)):
            ratio = f"btfs {b}"
        else:
            ratio = "-"
        rows.append([label, *cells, ratio, better or "-"])
    header = ["measurement", *cols]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                         for i, (c, w) in enumerate(zip(r, widths))) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *map(line, rows)])


def versions() -> dict:
    def out(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.TimeoutExpired):
            return ""
    def deb(pkg):
        return out(["dpkg-query", "-W", "-f=${Version}", pkg]).strip() or "?"
    tfs = out([TORRENTFS, "--version"]).strip()
    m = re.search(r"btfs version: (\S+)", out(["btfs", "--version"]))
    lt_py = out(["/usr/bin/python3", "-c", "import libtorrent; print(libtorrent.__version__)"]).strip()
    return {
        "torrentfs": tfs.replace("torrentfs ", "") or "?",
        "btfs": f"{m.group(1) if m else '?'} (Debian {deb('btfs')})",
        "libtorrent": f"{lt_py or '?'} (Debian libtorrent-rasterbar2.0 "
                      f"{deb('libtorrent-rasterbar2.0')}; btfs and the seeders use it)",
        "ffmpeg": deb("ffmpeg"),
        "opentracker": deb("opentracker"),
    }


def machine() -> dict:
    model = "?"
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / (1 << 20):.0f} GiB"
    u = os.uname()
    return {"nproc": os.cpu_count(), "kernel": f"{u.sysname} {u.release} {u.machine}",
            "cpu": model, "memory": mem}


# ------------------------------------------------------------------ main

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
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
    ap.add_argument("--seq-budget", type=float, default=120.0,
                    help="cap on one sequential read, s; slower is reported partial (120)")
    ap.add_argument("--read-timeout", type=float, default=60.0,
                    help="bound on one 64 KiB read, s (60)")
    ap.add_argument("--mount-timeout", type=float, default=60.0,
                    help="bound on a mount becoming ready, s (60)")
    ap.add_argument("--ff-timeout", type=float, default=90.0,
                    help="bound on one ffprobe/ffmpeg run, s (90)")
    ap.add_argument("--no-netns", action="store_true",
                    help="do not run in a loopback-only network namespace of its own")
    ap.add_argument("--keep", metavar="DIR",
                    help="work in DIR and keep it (logs, payload) instead of a temp dir")
    args = ap.parse_args(argv)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in args.only if s not in SYSTEMS]
    if bad:
        ap.error(f"--only: unknown {', '.join(bad)}")
    if not 1 <= args.seeders <= 40:
        ap.error("--seeders: 1..40")
    return args


def isolate_network(argv: list[str]) -> None:
    """Re-exec this script in a new network namespace whose only interface is
    loopback (unshare --net), unless already there or --no-netns. btfs's libtorrent
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
                           sys.executable, os.path.abspath(__file__), *argv], env)


def _terminate(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    isolate_network(sys.argv[1:] if argv is None else argv)
    # SIGTERM/SIGHUP unwind like Ctrl-C, so every finally block stops what it started.
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    t_start = time.monotonic()
    argv0 = os.environ.get("TORRENTFS_BENCH_ARGV0") or shlex.join([sys.executable, sys.argv[0]])
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
    print(f"versions: torrentfs {v['torrentfs']}; btfs {v['btfs']}; libtorrent {v['libtorrent']}")
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
        summary = summarise(runs, big)
        elapsed = time.monotonic() - t_start

    print()
    print(table(summary, args))
    print()
    print("Times: lower is better; MB/s: higher is better (MB = 10^6 bytes). "
          "torrentfs/btfs < 1 means torrentfs is faster for times, > 1 for MB/s.")
    for system in SYSTEMS:
        for r_no, r in enumerate(runs, 1):
            for note in r.get(system, {}).get("notes", []):
                print(f"note: {system} run {r_no}: {note}")
            if "peer_bytes" in r.get(system, {}):
                pb = r[system]["peer_bytes"]
                tot = sum(pb.values()) or 1
                share = ", ".join(f"{ip} {n / 1e6:.0f} MB ({100 * n / tot:.0f}%)"
                                  for ip, n in pb.items())
                print(f"{system} run {r_no}: received from each seeder during the "
                      f"sequential read: {share or 'no TCP connection to a seeder seen'}")
                done, secs = r[system].get("recv_95pct_after_s"), r[system].get("seq_s")
                if done is not None and secs:
                    print(f"{system} run {r_no}: 95% of those bytes had arrived {done:.1f} s "
                          f"into the {secs:.1f} s it took")
    print(f"total time: {elapsed:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {**info, "elapsed_s": elapsed, "runs": runs, "big_torrent": big,
             "summary": summary}, indent=1, default=str))
        print(f"raw numbers: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
