"""A bounded pool of open files: at most ``capacity`` descriptors, least recently
used closed first.

A torrent may list 100,000 files; a process commonly may hold 1,024 descriptors,
and the listener, peers, the FUSE device and the DHT need some too. So storage
never keeps one descriptor per torrent file: it asks this pool for the file it is
about to touch (``use``), and the pool opens it (closing the least recently used
idle one when full) or hands back the one it holds.

Thread-safe: storage runs in worker threads, several at a time. A descriptor in
use (inside ``with pool.use(i)``) is never closed under its user, so a pread can
never land on a closed or, worse, reused descriptor; when every held descriptor is
in use the pool goes over its capacity for that moment and shrinks back as they
are released.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from contextlib import contextmanager
from typing import Callable, Iterator

#: Default number of files held open per torrent (well under a 1,024 limit).
DEFAULT_MAX_OPEN_FILES = 128


class FdPool:
    """``opener(key, create)`` returns a new descriptor for ``key``, or None when the
    file does not exist and ``create`` is False; it may raise OSError."""

    def __init__(self, opener: Callable[[int, bool], int | None],
                 capacity: int = DEFAULT_MAX_OPEN_FILES) -> None:
        if capacity < 1:
            raise ValueError("the pool must hold at least one file")
        self.capacity = capacity
        self._opener = opener
        self._fds: OrderedDict[int, int] = OrderedDict()  # key -> fd, LRU first
        self._users: dict[int, int] = {}  # key -> how many hold it now
        self._lock = threading.Lock()
        self.opened = 0  # how many times a file was opened (for tests and stats)

    def __len__(self) -> int:
        return len(self._fds)

    def __contains__(self, key: int) -> bool:
        return key in self._fds

    @contextmanager
    def use(self, key: int, *, create: bool = False) -> Iterator[int | None]:
        """The descriptor of file ``key``, held open for the ``with`` block; None
        when the file is not there (and ``create`` is False)."""
        fd = self._acquire(key, create)
        try:
            yield fd
        finally:
            if fd is not None:
                self._release(key)

    @contextmanager
    def use_open(self, key: int) -> Iterator[int | None]:
        """``use`` of a file only if it is open now: None otherwise (it opens
        nothing, so it never blocks on a slow disk: the trio thread may call it)."""
        with self._lock:
            fd = self._fds.get(key)
            if fd is not None:
                self._users[key] = self._users.get(key, 0) + 1
        try:
            yield fd
        finally:
            if fd is not None:
                self._release(key)

    def _acquire(self, key: int, create: bool) -> int | None:
        with self._lock:
            fd = self._fds.get(key)
            if fd is not None:
                self._fds.move_to_end(key)
                self._users[key] = self._users.get(key, 0) + 1
                return fd
        # Open outside the lock: it may be slow (a cold disk, a new folder).
        fd = self._opener(key, create)
        if fd is None:
            return None
        extra = None
        with self._lock:
            held = self._fds.get(key)
            if held is not None:  # another thread opened it meanwhile: use theirs
                extra, fd = fd, held
                self._fds.move_to_end(key)
            else:
                self._fds[key] = fd
                self.opened += 1
            self._users[key] = self._users.get(key, 0) + 1
            victims = self._shrink()
        for v in victims:
            os.close(v)
        if extra is not None:
            os.close(extra)
        return fd

    def _release(self, key: int) -> None:
        with self._lock:
            n = self._users[key] - 1
            if n:
                self._users[key] = n
            else:
                del self._users[key]
            victims = self._shrink()
        for v in victims:
            os.close(v)

    def _shrink(self) -> list[int]:
        """Take the least recently used idle descriptors out, down to capacity (the
        caller closes them, outside the lock)."""
        victims = []
        if len(self._fds) <= self.capacity:
            return victims
        for key in list(self._fds):
            if len(self._fds) <= self.capacity:
                break
            if key not in self._users:
                victims.append(self._fds.pop(key))
        return victims

    def forget(self, key: int) -> None:
        """Close file ``key`` if held and idle (it is about to be replaced)."""
        with self._lock:
            fd = None if key in self._users else self._fds.pop(key, None)
        if fd is not None:
            os.close(fd)

    def held(self) -> list[int]:
        """The keys of the files open now."""
        with self._lock:
            return list(self._fds)

    def close(self) -> None:
        """Close every descriptor (the storage is closing: nobody uses them)."""
        with self._lock:
            fds = list(self._fds.values())
            self._fds.clear()
            self._users.clear()
        for fd in fds:
            os.close(fd)
