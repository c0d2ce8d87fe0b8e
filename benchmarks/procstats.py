"""What scripts/bench reads from /proc and ``ss`` about the processes it measures:
CPU seconds, RssAnon (sampled for its peak), children, bytes received per TCP
connection (sampled into a timeline), and a bounded, checked kill by PID."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.harness.swarm import wait_until
from torrentfs.fs.procfs import pid_alive

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int | None) -> tuple[float, float] | None:
    """(utime, stime) of the process (all its threads), in seconds."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def cpu_seconds(pid: int | None) -> float | None:
    """utime + stime of the process (all its threads), in seconds."""
    t = cpu_times(pid)
    return None if t is None else t[0] + t[1]


def system_share(before: list[tuple[float, float] | None],
                 after: list[tuple[float, float] | None]) -> float | None:
    """Of the CPU the processes used between two ``cpu_times`` samples, the kernel's
    share (stime over utime + stime, all processes together)."""
    user = sys_ = 0.0
    for a, b in zip(before, after):
        if a is not None and b is not None:
            user += b[0] - a[0]
            sys_ += b[1] - a[1]
    return sys_ / (user + sys_) if user + sys_ > 0 else None


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
