"""What /proc says about processes and mounts: read without touching a mountpoint,
so a dead or wedged FUSE mount can never make these fail or hang."""

from __future__ import annotations

import errno
import os
import re


def unescape(field: str) -> str:
    """A mountinfo path field with its octal escapes (``\\040`` for a space) undone."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def fuse_mount_type(path: str) -> str | None:
    """The filesystem type (``fuse.torrentfs``, ``fuse.sshfs``...) of the FUSE mount
    whose mountpoint is exactly ``path``, from /proc/self/mountinfo; None if none is.
    Reads no file under ``path``, so a dead mount cannot make it fail or hang."""
    found = None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                head, _, tail = line.partition(" - ")
                fields, fstype = head.split(), (tail.split() or [""])[0]
                if len(fields) > 4 and unescape(fields[4]) == path:
                    is_fuse = fstype in ("fuse", "fuseblk") or fstype.startswith("fuse.")
                    found = fstype if is_fuse else None
    except OSError:
        return None
    return found  # the last one listed is the one on top


def probe_mount(path: str, timeout: float = 5.0) -> int | None:
    """Ask the filesystem mounted on ``path`` for its statfs: 0 if it answers, the
    errno if it fails (ENOTCONN: its daemon is dead), None if no answer comes within
    ``timeout`` (a wedged daemon; the probing thread is left behind, a daemon thread).
    Not stat: the kernel answers that from its attribute cache even for a dead mount."""
    import threading
    result: list[int] = []

    def probe() -> None:
        try:
            os.statvfs(path)
            result.append(0)
        except OSError as e:
            result.append(e.errno or errno.EIO)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return result[0] if result else None


def is_mounted(path: str) -> bool:
    """True while something is mounted on ``path`` (read from /proc/self/mountinfo,
    so a dead FUSE mount counts too and nothing waits on it)."""
    try:
        with open("/proc/self/mountinfo") as f:
            return any(len(fields) > 4 and unescape(fields[4]) == path
                       for fields in map(str.split, f))
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """True while process ``pid`` runs (a zombie or a dying one counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def mountpoint_path(path: str) -> str:
    """``path`` made absolute with the symlinks of its parent folders resolved, as
    mountinfo lists a mountpoint, without touching ``path`` itself (``realpath``
    would stat it: a wedged FUSE mount there would hang it). A real path is returned
    as it is."""
    path = os.path.abspath(path)
    parent, name = os.path.split(path)
    return os.path.join(os.path.realpath(parent), name) if name else path


def mount_device(path: str) -> str | None:
    """The device (``0:53``) of the mount on ``path``, from /proc/self/mountinfo
    (the last one listed: the one on top); None if nothing is mounted there."""
    found = None
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for fields in map(str.split, f):
                if len(fields) > 4 and unescape(fields[4]) == path:
                    found = fields[2]
    except OSError:
        return None
    return found


def process_state(pid: int) -> str | None:
    """The state letter of process ``pid`` (R, S, D, T for stopped, Z...), or None
    if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks after boot, /proc/PID/stat field
    22): with the pid it names one process, even once the pid is reused."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None
