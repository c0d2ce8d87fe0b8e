"""``torrentfs unmount MOUNTPOINT``: unmount a torrentfs mount, and wait for its daemon
to finish; a stuck daemon is ended within a bound.

Only a torrentfs mount is touched: mountinfo must list a ``fuse.torrentfs`` mount on
MOUNTPOINT (or a FUSE mount the registry says a torrentfs daemon made, if it was
mounted with another ``subtype=``). Nothing here stats the mountpoint, so a wedged
daemon cannot hang the command:

1. unless the daemon is stopped (SIGSTOP), ``fusermount3 -u``; if that fails (a
   file is open), SIGTERM to the daemon, which fails its waiting reads and unmounts;
2. if the mount is still there ``STUCK_AFTER`` s after the start (or the daemon is
   stopped), the daemon is stuck: its FUSE connection is aborted
   (/sys/fs/fuse/connections/DEV/abort; fusectl is mounted there if it is not),
   the mount detached (``fusermount3 -uz``), the daemon woken (SIGCONT), told to
   end (SIGTERM) and killed ``END_WAIT`` s later if it has not;
3. otherwise the daemon gets ``--wait`` s to finish (tell the trackers, save its
   resume file), and is then ended as a stuck one is (SIGTERM, SIGKILL); a daemon
   seeding after the unmount (``--seed-after``) is not waited for: the command
   says so, and ``torrentfs stop`` ends it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from torrentfs.cli import registry
from torrentfs.cli.args import add_log_level, command
from torrentfs.cli.output import CliError
from torrentfs.cli.registry import SEEDING
from torrentfs.cli.state import default_cache_dir, mount_state_file
from torrentfs.fs.procfs import (
    fuse_mount_type,
    mount_device,
    mountpoint_path,
    pid_alive,
    process_state,
)

OUR_TYPE = "fuse.torrentfs"
STUCK_AFTER = 3.0   # a daemon whose mount is still there this long after we asked is stuck
END_WAIT = 4.0      # a stuck daemon told to end gets this long before SIGKILL
FUSECTL = Path("/sys/fs/fuse/connections")


def add_parser(sub) -> None:
    u = command(sub, "unmount", aliases=["umount"], help="unmount a torrentfs mount",
                description="Unmount MOUNTPOINT and wait for its daemon to finish (tell "
                "the trackers, save its state). A mount in use is unmounted all the "
                "same (its waiting reads fail with EIO). Only a torrentfs mount is "
                "touched: anything else mounted there is left alone (exit 1). A daemon "
                f"that does not let go of its mount within {STUCK_AFTER:.0f} s (stopped "
                "or wedged) has its FUSE connection aborted and is ended. Also clears a "
                "stale mount left by a crashed daemon. A daemon mounted with "
                "--seed-after seeds on after the unmount: this says so, and "
                "'torrentfs stop' ends it.",
                epilog="example:\n  torrentfs unmount ~/movie\n\n"
                       "fusermount3 -u, umount (as root), SIGINT and SIGTERM to the "
                       "daemon do\nthe same, without the waiting.")
    u.add_argument("mountpoint", metavar="MOUNTPOINT", help="where the torrent is mounted")
    u.add_argument("--cache-dir", metavar="DIR",
                   help="not needed: daemons are found whatever cache folder they use "
                        "(kept for daemons of older versions)")
    u.add_argument("--wait", type=float, default=15.0, metavar="SECONDS",
                   help="how long the daemon gets to finish once unmounted (tell its "
                        "trackers, save its state) before it is ended")
    add_log_level(u, default="warning")
    u.set_defaults(func=run)


def run(args) -> int:
    path = mountpoint_path(args.mountpoint)
    entry = registry.by_mountpoint(path)
    fstype = fuse_mount_type(path)
    if fstype is None:
        if entry is not None and entry.get("state") == SEEDING:
            raise CliError(f"{args.mountpoint} is not mounted any more: its daemon (pid "
                           f"{entry['pid']}) seeds on after the unmount{_until(entry)}; "
                           f"end it with: torrentfs stop {entry['pid']}")
        raise CliError(f"{args.mountpoint} is not a torrentfs mount")
    if fstype != OUR_TYPE and entry is None:
        raise CliError(f"{args.mountpoint} is not a torrentfs mount (it is {fstype})")
    pid = entry["pid"] if entry else _legacy_pid(args, path)
    unmount(path, pid, args.wait, name=args.mountpoint)
    return 0


def unmount(path: str, pid: int | None, wait: float, *, name: str,
            quiet: bool = False) -> None:
    """Unmount the torrentfs mount on ``path`` (a mountinfo path) served by ``pid``
    (None if unknown) as the module docstring says; CliError if it stays mounted."""
    exe = fusermount()
    t0 = time.monotonic()
    stuck = bool(pid) and process_state(pid) in ("T", "t")
    registered = bool(pid) and _entry_of(pid) is not None
    if not stuck:
        r = _run([exe, "-u", path], timeout=STUCK_AFTER)
        if r is not None and r.returncode == 0 and registered:
            _nudge(pid)
        if _mounted(path) and pid and pid_alive(pid):
            # Busy: a process has a file open, perhaps blocked in a read that waits
            # for a piece. The daemon fails its waiting reads and unmounts on SIGTERM.
            _signal(pid, signal.SIGTERM)
            while (time.monotonic() < t0 + STUCK_AFTER and _mounted(path)
                   and pid_alive(pid)):
                time.sleep(0.05)
        stuck = _mounted(path)
        if stuck and not (pid and pid_alive(pid)):
            # A crashed daemon leaves "Transport endpoint is not connected".
            _run([exe, "-uz", path], timeout=10)
            if _mounted(path):
                msg = ((r.stderr if r else "") or "timed out").strip().splitlines()[-1:]
                raise CliError(f"cannot unmount {name}: {(msg or ['failed'])[0]}")
            return
    if stuck:
        abort_connection(path)
        _run([exe, "-uz", path], timeout=10)
        if pid:
            ended = end_process(pid, END_WAIT)
            print(f"torrentfs: warning: the daemon of {name} (pid {pid}) did not answer: "
                  f"its FUSE connection was aborted and it was "
                  f"{'stopped' if ended else 'killed'}", file=sys.stderr)
        if _mounted(path):
            raise CliError(f"cannot unmount {name}: still mounted after aborting its "
                           "FUSE connection")
        return
    if not pid:
        return
    # Unmounted: the daemon tells its trackers, saves its state and ends, or seeds on.
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and pid_alive(pid):
        entry = _entry_of(pid)
        if entry is not None and entry.get("state") == SEEDING:
            if not quiet:
                print(f"torrentfs: {name} unmounted; its daemon (pid {pid}) seeds on"
                      f"{_until(entry)} (torrentfs stop {pid} ends it)", file=sys.stderr)
            return
        time.sleep(0.05)
    if pid_alive(pid):  # wedged after the unmount: it is ended all the same
        ended = end_process(pid, END_WAIT)
        print(f"torrentfs: warning: the daemon of {name} (pid {pid}) did not finish "
              f"within {wait:g} s after the unmount: it was "
              f"{'stopped' if ended else 'killed'}", file=sys.stderr)


def _nudge(pid: int) -> None:
    """The mount is gone: a daemon that did not see it go within ``STUCK_AFTER`` s
    (its registry entry still says "mounted") is told with SIGTERM, which it hears
    while it serves. (The kernel ends the FUSE connection only when the last copy
    of the mount goes: one held in another mount namespace keeps it alive.)"""
    deadline = time.monotonic() + STUCK_AFTER
    while time.monotonic() < deadline and pid_alive(pid):
        entry = _entry_of(pid)
        if entry is None or entry.get("state") != "mounted":
            return
        time.sleep(0.05)
    if pid_alive(pid):
        _signal(pid, signal.SIGTERM)


def end_process(pid: int, wait: float) -> bool:
    """Wake ``pid`` if stopped and SIGTERM it; SIGKILL it if it still runs ``wait`` s
    later. True if it ended on SIGTERM, False if it had to be killed."""
    _signal(pid, signal.SIGCONT)
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.05)
    if not pid_alive(pid):
        return True
    _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.05)
    return False


def abort_connection(path: str) -> bool:
    """Abort the FUSE connection of the mount on ``path``: every request in flight
    and every later one fails at once, so nothing waits on its daemon any more.
    Mounts fusectl on /sys/fs/fuse/connections if nothing is there (root only).
    False if it could not."""
    dev = mount_device(path)
    if dev is None:
        return False
    try:
        if FUSECTL.is_dir() and not any(FUSECTL.iterdir()):
            _run(["mount", "-t", "fusectl", "none", str(FUSECTL)], timeout=10)
        (FUSECTL / dev.split(":")[1] / "abort").write_text("1")
        return True
    except (OSError, IndexError):
        return False


def fusermount() -> str:
    exe = shutil.which("fusermount3") or shutil.which("fusermount")
    if exe is None:
        raise CliError("fusermount3 not found (apt install fuse3)")
    return exe


def _run(argv: list[str], timeout: float) -> subprocess.CompletedProcess | None:
    """Run a helper, bounded; None if it timed out (it is killed) or is missing."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except (subprocess.TimeoutExpired, OSError):
        return None


def _mounted(path: str) -> bool:
    return fuse_mount_type(path) is not None


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _entry_of(pid: int) -> dict | None:
    return next((e for e in registry.entries() if e["pid"] == pid), None)


def _until(entry: dict) -> str:
    return f" until {entry['until']}" if entry.get("until") else ""


def _legacy_pid(args, path: str) -> int | None:
    """The pid in a daemon's state file in the cache folder (a daemon that is not in
    the registry), if that process is a torrentfs one."""
    state = mount_state_file(Path(args.cache_dir or default_cache_dir()), path)
    try:
        pid = int(state.read_text().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return pid if b"torrentfs" in f.read() else None
    except (OSError, ValueError):
        return None
