"""``torrentfs unmount MOUNTPOINT``: unmount, and wait for the daemon to finish."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from torrentfs.cli.args import add_log_level, command
from torrentfs.cli.output import CliError
from torrentfs.cli.state import default_cache_dir, mount_state_file
from torrentfs.fs.procfs import is_mounted, pid_alive


def add_parser(sub) -> None:
    u = command(sub, "unmount", aliases=["umount"], help="unmount a torrentfs mount",
                description="Unmount MOUNTPOINT and wait for its daemon to finish (tell "
                "the trackers, save its state). A mount in use is unmounted all the "
                "same (its waiting reads fail with EIO). Also clears a stale mount "
                "left by a crashed daemon.",
                epilog="example:\n  torrentfs unmount ~/movie\n\n"
                       "fusermount3 -u, umount (as root), SIGINT and SIGTERM to the "
                       "daemon do\nthe same, without the waiting.")
    u.add_argument("mountpoint", metavar="MOUNTPOINT", help="where the torrent is mounted")
    u.add_argument("--cache-dir", metavar="DIR",
                   help="the cache folder the mount used (default: the same default)")
    u.add_argument("--wait", type=float, default=15.0, metavar="SECONDS",
                   help="how long to wait for the daemon to exit")
    add_log_level(u, default="warning")
    u.set_defaults(func=run)


def run(args) -> int:
    path = os.path.abspath(args.mountpoint)
    state = mount_state_file(Path(args.cache_dir or default_cache_dir()), path)
    pid = None
    try:
        pid = int(state.read_text().strip())
    except (OSError, ValueError):
        pass
    exe = shutil.which("fusermount3") or shutil.which("fusermount")
    if exe is None:
        raise CliError("fusermount3 not found (apt install fuse3)")
    real = os.path.realpath(path)
    r = subprocess.run([exe, "-u", path], capture_output=True, text=True)
    if r.returncode != 0 and pid and pid_alive(pid):
        # Busy: a process has a file open, perhaps blocked in a read that waits for
        # a piece. The daemon fails its waiting reads and unmounts on SIGTERM.
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline and pid_alive(pid) and is_mounted(real):
            time.sleep(0.05)
    if r.returncode != 0 and (is_mounted(real) or not (pid and pid_alive(pid))):
        # A crashed daemon leaves "Transport endpoint is not connected": detach lazily.
        r2 = subprocess.run([exe, "-uz", path], capture_output=True, text=True)
        if r2.returncode != 0 and (is_mounted(real) or not pid):
            msg = (r.stderr.strip().splitlines() or ["failed"])[-1]
            raise CliError(f"cannot unmount {args.mountpoint}: {msg}")
    if pid:
        # The daemon removes its state file when done (or when it stays on to seed).
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline and pid_alive(pid) and state.exists():
            time.sleep(0.05)
        if pid_alive(pid) and state.exists():
            print(f"torrentfs: warning: daemon {pid} still shutting down", file=sys.stderr)
    return 0
