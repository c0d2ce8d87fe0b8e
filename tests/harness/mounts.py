"""The torrentfs processes a test starts, and how they are always stopped: a
``torrentfs mount`` (``Mount``; undone by ``force_unmount`` whatever state it is in)
and a foreground ``torrentfs seed`` (``Seed``), both stopped by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from tests.harness.command import TORRENTFS
from tests.harness.swarm import stop_process, wait_until
from torrentfs.cli.state import mount_log_file, mount_state_file
from torrentfs.fs.procfs import pid_alive

__all__ = ["Mount", "Seed", "abort_fuse_connection", "force_unmount", "pid_alive"]


class Mount:
    """A running ``torrentfs mount``: its mountpoint, cache folder and daemon. A
    ``mount --watch`` has no info-hash; its log is beside its state file."""

    def __init__(self, mountpoint: Path, cache: Path, info_hash: str | None) -> None:
        self.path = mountpoint
        self.cache = cache
        self.info_hash = info_hash

    @property
    def folder(self) -> Path:
        return self.cache / self.info_hash

    @property
    def log_path(self) -> Path:
        if self.info_hash is None:
            return mount_log_file(self.cache, str(self.path))
        return self.folder / "torrentfs.log"

    @property
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def pid(self) -> int | None:
        try:
            return int(mount_state_file(self.cache, str(self.path)).read_text())
        except (OSError, ValueError):
            return None

    def unmount(self, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run([TORRENTFS, "unmount", str(self.path), "--cache-dir",
                               str(self.cache)], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)


def abort_fuse_connection(mountpoint: Path) -> None:
    """Abort the FUSE connection behind a mount (fusectl), failing every request in
    flight: the one way to free a daemon stuck in a request to its own mount, which
    not even SIGKILL ends."""
    dev = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and fields[4] == str(mountpoint):
                dev = fields[2]
    if dev is None:
        return
    conns = Path("/sys/fs/fuse/connections")
    if conns.is_dir() and not any(conns.iterdir()):
        subprocess.run(["mount", "-t", "fusectl", "none", str(conns)], capture_output=True,
                       timeout=10)
    try:
        (conns / dev.split(":")[1] / "abort").write_text("1")
    except OSError:
        pass


def force_unmount(m: Mount) -> None:
    """Undo a mount by any means, bounded: polite, then abort the FUSE connection and
    detach lazily, then SIGKILL."""
    pid = m.pid()
    if os.path.ismount(m.path):
        try:
            m.unmount(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    if os.path.ismount(m.path):
        abort_fuse_connection(m.path)
        subprocess.run(["fusermount3", "-uz", str(m.path)], capture_output=True, timeout=10)
    if pid:
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


class Seed:
    """``torrentfs seed`` in the foreground, stopped by PID."""

    def __init__(self, torrent: Path, data: Path, cache: Path, port: int, *extra: str):
        self.log = cache / "seed.log"
        cache.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.proc = subprocess.Popen(
            [TORRENTFS, "seed", str(torrent), str(data), "--port", str(port),
             "--cache-dir", str(cache), "--no-lsd", "--no-dht", "--no-port-mapping", *extra],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"), stdin=subprocess.DEVNULL)

    def __enter__(self):
        wait_until(lambda: b"seeding " in self.log.read_bytes() or self.proc.poll() is not None,
                   timeout=60)
        assert self.proc.poll() is None, self.log.read_text()
        return self

    def __exit__(self, *exc):
        stop_process(self.proc)
