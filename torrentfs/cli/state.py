"""Where the CLI keeps a daemon's state: the cache folder, per-mountpoint pid and
log files."""

from __future__ import annotations

import hashlib
from pathlib import Path

import appdirs

from torrentfs.fs.procfs import mountpoint_path


def default_cache_dir() -> Path:
    return Path(appdirs.user_cache_dir("torrentfs"))


def mount_state_file(cache: Path, mountpoint: str) -> Path:
    """The daemon's pid file of the mount on ``mountpoint`` (a path found without
    touching the mountpoint: see ``procfs.mountpoint_path``)."""
    key = hashlib.sha1(mountpoint_path(mountpoint).encode()).hexdigest()[:16]
    return cache / "mounts" / f"{key}.pid"


def mount_log_file(cache: Path, mountpoint: str) -> Path:
    """Where a ``mount --watch`` daemon logs: beside its state file."""
    return mount_state_file(cache, mountpoint).with_suffix(".log")


