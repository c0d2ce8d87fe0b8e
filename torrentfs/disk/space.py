"""Room on the cache's disk: a size limit from the free space when none was given
(a cache folder on a small disk must not fill it and then fail every write), and a
full disk reported at most once a minute (``DiskFull``), not once per piece."""

from __future__ import annotations

import os
import shutil

from torrentfs.core.text import human

HEADROOM_MIN = 1 << 20     # leave at least this much of the disk free ...
HEADROOM_SHARE = 20        # ... or 1/20 of the room, whichever is more
DISK_FULL_LOG_EVERY = 60.0  # seconds between two "disk full" log lines


def cached_bytes(folder: str | os.PathLike) -> int:
    """Bytes the files in ``folder`` take on disk (sparse files count what they hold)."""
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                pass
    return total


def free_bytes(folder: str | os.PathLike) -> int:
    """Bytes an unprivileged user may still write on ``folder``'s filesystem."""
    return shutil.disk_usage(folder).free


def limit_from_free_space(free: int, cached: int, total: int) -> int | None:
    """The cache size limit for a torrent of ``total`` bytes whose folder holds
    ``cached`` bytes already, on a disk with ``free`` bytes free: None if the whole
    torrent fits, else the room there is, less some headroom."""
    room = free + cached
    if room >= total + HEADROOM_MIN:
        return None
    return max(0, room - max(HEADROOM_MIN, room // HEADROOM_SHARE))


class NoRoom(Exception):
    """Not even two pieces of the torrent fit on the cache's disk: its message is
    one line saying so."""


def free_space_limit(folder: str | os.PathLike, total: int, piece_length: int,
                     promised: int = 0) -> tuple[int | None, str]:
    """With no --cache-size: the limit for a torrent of ``total`` bytes cached in
    ``folder`` (None if it fits, or if the disk cannot be asked), and the warning
    that says so. ``promised``: bytes other torrents on the same disk may still
    write (a watch mount's others), not counted as free. Raises ``NoRoom`` if not
    even two pieces fit."""
    try:
        free, cached = free_bytes(folder), cached_bytes(folder)
    except OSError:
        return None, ""
    usable = max(0, free - promised)
    limit = limit_from_free_space(usable, cached, total)
    if limit is None:
        return None, ""
    shown = f"{human(usable)} free" + (f" ({human(free)} on the disk, less what this "
                                       "mount's other torrents may still write)"
                                       if promised else "")
    if limit < 2 * piece_length:
        raise NoRoom(f"cache folder {folder}: only {shown}, and this torrent needs room "
                     f"for two pieces ({human(2 * piece_length)}): free some space or "
                     "choose another --cache-dir")
    return limit, (f"only {shown} for the cache in {folder} (the torrent is "
                   f"{human(total)}): keeping at most {human(limit)} of it, least "
                   "recently read pieces out first; --cache-size SIZE sets another limit")


class DiskFull:
    """Counts the writes that failed for a full disk, and says when one is worth a
    log line: the first, then at most one per ``every`` seconds (``now`` is passed
    in: trio's clock), with how many were not logged in between."""

    def __init__(self, every: float = DISK_FULL_LOG_EVERY) -> None:
        self.every = every
        self.count = 0                 # every full-disk failure of this run
        self.last: float | None = None  # wall-clock time of the latest (for status)
        self._logged_at: float | None = None
        self._unlogged = 0

    def note(self, now: float, wall: float) -> int | None:
        """One more full-disk failure at ``now``: the number of failures not logged
        since the last log line if this one should be logged, else None."""
        self.count += 1
        self.last = wall
        if self._logged_at is not None and now - self._logged_at < self.every:
            self._unlogged += 1
            return None
        self._logged_at = now
        unlogged, self._unlogged = self._unlogged, 0
        return unlogged

    def as_dict(self) -> dict:
        return {"count": self.count, "last": self.last}
