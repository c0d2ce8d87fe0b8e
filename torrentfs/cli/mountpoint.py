"""Checking a mountpoint before mounting on it."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys

from torrentfs.cli.output import CliError
from torrentfs.fs.procfs import fuse_mount_type, probe_mount


def check_mountpoint(mountpoint: str) -> str:
    """The mountpoint's real path, once it is known to be an empty directory with
    nothing mounted on it. A dead FUSE mount left there by a crashed daemon (any
    FUSE filesystem's, not only ours) is detached first with a lazy unmount."""
    path = os.path.abspath(mountpoint)
    if fuse_mount_type(path) is not None:
        answer = probe_mount(path)
        if answer is None:
            raise CliError(f"mountpoint {mountpoint}: something is already mounted there "
                           "(and it does not answer)")
        if answer != errno.ENOTCONN:
            raise CliError(f"mountpoint {mountpoint}: something is already mounted there")
        exe = shutil.which("fusermount3") or shutil.which("fusermount")
        r = subprocess.run([exe or "fusermount3", "-uz", path], capture_output=True,
                           text=True, timeout=30)
        if r.returncode != 0:
            raise CliError(f"mountpoint {mountpoint}: stale mount from a crashed run "
                           "that fusermount3 -uz cannot clear")
        print(f"torrentfs: cleared a stale mount on {mountpoint} (its daemon had died)",
              file=sys.stderr, flush=True)
    try:
        os.stat(path)  # raises for a missing mountpoint (or a stale one not ours to see)
    except FileNotFoundError:
        raise CliError(f"mountpoint {mountpoint}: no such directory") from None
    except OSError as e:
        if e.errno == errno.ENOTCONN:
            raise CliError(f"mountpoint {mountpoint}: stale mount from a crashed run; "
                           f"clear it with: torrentfs unmount {mountpoint}") from None
        raise CliError(f"mountpoint {mountpoint}: {e.strerror}") from None
    if not os.path.isdir(path):
        raise CliError(f"mountpoint {mountpoint}: not a directory")
    if os.path.ismount(path):
        raise CliError(f"mountpoint {mountpoint}: something is already mounted there")
    if os.listdir(path):
        raise CliError(f"mountpoint {mountpoint}: directory is not empty")
    path = os.path.realpath(path)  # now, while stat on it cannot reach our own mount
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        raise CliError("cannot open /dev/fuse: is FUSE installed (apt install fuse3)?")
    return path
