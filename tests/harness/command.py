"""Running the real ``torrentfs`` command as a user would: the installed entry point,
a bounded run, the one-line error every failure must be, and a pseudo-terminal for
what only shows on one (progress bars, the live status view)."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from tests.harness.swarm import wait_until
from torrentfs.fs.procfs import pid_alive

TORRENTFS = str(Path(sys.executable).with_name("torrentfs"))


def run(*args, timeout=30):
    return subprocess.run([TORRENTFS, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def kill_by_pid(pid: int | None) -> None:
    """Whatever state the process is in (stopped too), it ends."""
    if pid and pid_alive(pid):
        for sig in (signal.SIGCONT, signal.SIGKILL):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        wait_until(lambda: not pid_alive(pid), timeout=10)


@contextmanager
def mount_fetching_magnet(info_hash: str, mountpoint, cache, *, text: bool = False):
    """``torrentfs mount`` of a magnet whose one peer (a socket on loopback) accepts
    the daemon's connection and never says a word, so the metadata cannot come:
    yields the command's Popen once its daemon is fetching. On the way out the
    command is killed if it still runs, and the peer's socket closed."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        silent.settimeout(30)
        link = f"magnet:?xt=urn:btih:{info_hash}&x.pe=127.0.0.1:{silent.getsockname()[1]}"
        proc = subprocess.Popen(
            [TORRENTFS, "mount", link, str(mountpoint), "--cache-dir", str(cache),
             "--no-dht", "--no-lsd", "--metadata-timeout", "120"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=text)
        try:
            silent.accept()[0].close()  # the daemon is fetching the metadata
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def assert_one_line_error(r, *needles):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("torrentfs: error: ")
    for needle in needles:
        assert needle in lines[0]


def plain(text):
    """Terminal output without its colours and cursor moves."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def run_on_pty(argv: list[str], until: bytes | None = None,
               timeout: float = 60) -> tuple[int | None, bytes]:
    """Run ``argv`` with stderr (and stdout) on a pseudo-terminal; return its exit
    code and what it printed. With ``until``: once that was printed, SIGINT it."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if until is not None and until in out and proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                until = None
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    chunk = b""
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        return proc.wait(timeout=10), out
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
