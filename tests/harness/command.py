"""Running the real ``torrentfs`` command as a user would: the installed entry point,
a bounded run, the one-line error every failure must be, and a pseudo-terminal for
what only shows on one (progress bars, the live status view)."""

from __future__ import annotations

import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

TORRENTFS = str(Path(sys.executable).with_name("torrentfs"))


def run(*args, timeout=30):
    return subprocess.run([TORRENTFS, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


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
