"""Files and folders that are the user's alone: folders 0700, files 0600, whatever
the umask, and never written through a symlink planted in their place.

The cache holds what a user reads (data, resume files, fetched metadata) and the
daemon's pid, log and status files; nothing in it is for other users to see."""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: str | os.PathLike, *, tighten: bool = True) -> Path:
    """``path`` as a folder: it and its missing parents are made 0700, and (with
    ``tighten``) an existing ``path`` is set to 0700 too. Existing parents are left
    as they are."""
    path = Path(path)
    missing = []
    d = path
    while not d.is_dir():
        missing.append(d)
        d = d.parent
    for d in reversed(missing):
        d.mkdir(mode=DIR_MODE, exist_ok=True)
        os.chmod(d, DIR_MODE)
    if tighten and not missing:
        os.chmod(path, DIR_MODE)
    return path


def open_private(path: str | os.PathLike, flags: int) -> int:
    """A descriptor of ``path`` opened with ``flags`` (``os.O_CREAT`` is added), the
    file 0600 even if it existed: never through a symlink, not inherited by children."""
    fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_private(path: str | os.PathLike, data: bytes, *, atomic: bool = True,
                  durable: bool = False) -> None:
    """Write ``data`` as ``path`` (0600; its folder must exist).

    ``atomic``: written to a temporary file beside it, then renamed over it, so a
    reader sees the old file or the new one, never half of one. ``durable`` (implies
    ``atomic``): the file and then its folder are fsynced too, so after a crash the
    file is the old one or the new one, whole. Without ``atomic`` the file is
    truncated and written in place."""
    path = Path(path)
    if not (atomic or durable):
        fd = open_private(path, os.O_WRONLY | os.O_TRUNC)
        try:
            _write_all(fd, data)
        finally:
            os.close(fd)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = open_private(tmp, os.O_WRONLY | os.O_TRUNC)
        try:
            _write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
