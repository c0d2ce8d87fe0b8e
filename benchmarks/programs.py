"""The programs scripts/bench compares, and how each is started, watched and always
stopped: a ``torrentfs mount`` or a ``btfs`` mount (``TorrentfsMount``, ``BtfsMount``),
each fresh with an empty cache and its own reader worker; ``run_bounded`` for the
rest (ffmpeg, ffprobe)."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.procstats import RssSampler, child_pid, kill_pid
from benchmarks.worker import BenchError, Timeout, Worker
from tests.harness.swarm import child_env, wait_until
from torrentfs.cli.state import mount_state_file
from torrentfs.fs.procfs import pid_alive

TORRENTFS = str(Path(sys.executable).with_name("torrentfs"))
FUSERMOUNT = shutil.which("fusermount3") or "fusermount3"
SYSTEMS = ("torrentfs", "btfs", "libtorrent")


def say(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)



@contextlib.contextmanager
def resident_process(tmp: Path):
    """torrentfs's resident process on, as a user has it once a first mount started
    it: started (``torrentfs resident start``) before the mounts, in a runtime folder
    of its own (the mounts' registry goes there too), and stopped by its PID after."""
    import re
    run = tmp / "runtime"
    run.mkdir(mode=0o700, exist_ok=True)
    saved = {k: os.environ.get(k) for k in ("XDG_RUNTIME_DIR", "TORRENTFS_RESIDENT")}
    os.environ.update(XDG_RUNTIME_DIR=str(run), TORRENTFS_RESIDENT="1")
    pid = None
    try:
        out = subprocess.run([TORRENTFS, "resident", "start"], capture_output=True,
                             text=True, timeout=60, env=child_env())
        found = re.search(r"resident process (\d+)", out.stdout)
        if out.returncode or not found:
            raise BenchError(f"torrentfs resident start: {out.stdout}{out.stderr}".strip())
        pid = int(found.group(1))
        yield pid
    finally:
        subprocess.run([TORRENTFS, "resident", "stop"], capture_output=True, timeout=30,
                       env=child_env())
        if pid is not None:
            kill_pid(pid, "torrentfs.cli.zygote")
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def wait_exit(proc: subprocess.Popen, timeout: float) -> int:
    """``proc.wait(timeout)`` woken by the exit itself. Python's own wait with a timeout
    (before 3.14) polls with sleeps that double up to 50 ms: a program that takes 65 ms
    was timed 114 ms, one of 115 ms 164 ms (the bench's ffprobe and seek rows). A pidfd
    becomes readable when the process exits. Raises subprocess.TimeoutExpired."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd here: the polling wait
        return proc.wait(timeout)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        if not poller.poll(max(0.0, timeout) * 1000):
            raise subprocess.TimeoutExpired(proc.args, timeout)
    finally:
        os.close(fd)
    return proc.wait()


def run_bounded(argv: list[str], timeout: float, cwd: Path | None = None) -> tuple[int, float, str]:
    """Run argv with a deadline: (returncode, seconds, output). Timeout if it overruns
    (it is killed; a child stuck in a FUSE read is released by the caller's abort).
    The time is taken when the process exits (``wait_exit``), not at a polling step."""
    t0 = time.monotonic()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, cwd=cwd, env=child_env())
        try:
            rc = wait_exit(proc, timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
            raise Timeout(f"{Path(argv[0]).name} did not finish within {timeout:.0f}s") from None
        elapsed = time.monotonic() - t0
        out.seek(0)
        return rc, elapsed, out.read().decode("utf-8", "replace")



# ------------------------------------------------------------------ mounts

class Mount:
    """One fresh mount of the torrent with an empty cache, and its reader worker."""

    system = "?"

    def __init__(self, bench, label: str):
        """``bench`` (a bench.Bench) gives the work folder, the torrent's top folder
        and the counter that numbers the mounts."""
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
        self.worker = Worker()
        self.pid: int | None = None
        self.sampler: RssSampler | None = None
        self.ready_s: float | None = None
        self.wedged = False
        self.slow_exit = False
        self.extra_args: list[str] = []  # more options for the mount command

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
                                    "--cache-dir", str(self.cache), "--no-dht",
                                    "--no-port-mapping", *self.extra_args],
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
