"""One daemon per torrent and cache folder: a lock file in the torrent's cache folder.

Two daemons serving one torrent from one cache folder would both download it, write
the same piece files and overwrite each other's resume file. So whoever serves a
torrent holds ``<folder>/lock`` with ``flock(LOCK_EX | LOCK_NB)`` for as long as it
runs; the kernel lets go of it when the process ends, however it ends (no stale
lock to clear after a crash). The file itself stays: removing a flocked file would
let a second process lock a new file of the same name.

The file holds one line of JSON saying who holds it (``pid``, ``mountpoint``,
``what``: "mounted on", "seeded after the unmount of"), so that a second daemon can say which mount has the torrent. The holder
rewrites it when that changes (a forked daemon: its own pid; seeding after unmount).
A lock taken before ``fork()`` is shared with the child (same open file): the child
holds it on after the parent exits.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from torrentfs.disk.private import open_private

LOCK_NAME = "lock"


class Locked(Exception):
    """The torrent is served by another process; ``holder`` is what it wrote (a dict,
    maybe empty) and ``str()`` one line saying who."""

    def __init__(self, folder: Path, holder: dict) -> None:
        self.folder = folder
        self.holder = holder
        super().__init__(describe(holder, folder))


def describe(holder: dict, folder: Path) -> str:
    """'mounted on /mnt/x by pid 123' and the like, from a lock file's content."""
    pid = holder.get("pid")
    who = f"pid {pid}" if isinstance(pid, int) else "another process"
    what = holder.get("what") or "mounted on"
    where = holder.get("mountpoint")
    if where:
        return f"already {what} {where} by {who}, from cache {folder}"
    return f"already in use by {who}, from cache {folder}"


class TorrentLock:
    """The lock of one torrent's cache folder (see the module docstring)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.fd: int | None = None

    def acquire(self, **holder) -> "TorrentLock":
        """Take the lock at once and write ``holder`` (plus our pid) into it, or raise
        ``Locked`` naming who has it. OSError if the folder cannot be used."""
        fd = open_private(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                held = read_holder(fd)
            finally:
                os.close(fd)
            raise Locked(self.folder, held) from None
        except OSError:
            os.close(fd)
            raise
        self.fd = fd
        self.update(**holder)
        return self

    def update(self, **holder) -> None:
        """Say who holds the lock now (our pid is added); best effort."""
        if self.fd is None:
            return
        data = json.dumps({"pid": os.getpid(), **holder}).encode() + b"\n"
        try:
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, data, 0)
        except OSError:
            pass

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the last descriptor of it unlocks
            self.fd = None

    def __enter__(self) -> "TorrentLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def read_holder(fd: int) -> dict:
    """The holder's JSON from a lock file's descriptor ({} if unreadable)."""
    try:
        doc = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}
