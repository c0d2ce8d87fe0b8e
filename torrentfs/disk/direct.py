"""Writing verified pieces past the page cache (``O_DIRECT``): ``DirectWrites``.

A piece written to the cache file through the page cache is copied into freshly
allocated cache pages, and those pages hold the same bytes a second time beside the
mount's own page cache (the kernel keeps what FUSE reads return). On the bench
machine that copy was the largest single cost of a download (a third of the
daemon's CPU at 1 GiB). An ``O_DIRECT`` write hands the pages of a buffer to the
device instead. Its buffer, file offset and length must be aligned (``ALIGN``): of
each span written, the whole file pages it covers go so (``write`` returns which
bytes), and its edges (the part of a page it shares with the bytes before or after
it: in a file that does not start on a page, every span has two) go through the
page cache as before. A buffer not on a page is first copied into a page-aligned
scratch buffer of the writing thread (a copy into memory that stays hot, unlike
fresh cache pages). A filesystem that refuses ``O_DIRECT`` (EINVAL at the open or
the write) turns it off for the storage: every write then goes through the page
cache.

A piece buffer made by ``aligned_buffer`` (the engine downloads every piece into
one) is placed in memory so that the file's page boundaries fall on memory pages
(``phase``, from ``Storage.buffer_phase``): the file pages of a piece are written
from it as they are, with no copy into the scratch buffer (a copy that held the GIL,
a megabyte at a time, in the worker thread, while the trio thread waited to take
the next blocks in). Most multi-file torrents made without padding files (BEP 47)
have files that start anywhere: before the phase and the edges, none of their
pieces went direct, and the copy into the page cache was a third of the daemon's
CPU in scripts/bench, whose torrent is such a one (docs/benchmarks.md, session 13).

The file is opened for each write (by path, not following a symlink) and closed
after it: no descriptor outlives the write, so the pool (``fdpool``) stays the only
owner of open files. A batch of writes (``disk/writeback.py``) keeps each file's
descriptor for the batch (``kept_open``): one open per file and batch. Reads, punches
and fsyncs go through the pool's descriptors: Linux keeps the page cache coherent
with direct writes (the written range is dropped from it).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import mmap
import os
import threading
from typing import Iterator

ALIGN = 4096
O_DIRECT = getattr(os, "O_DIRECT", 0)
NOTHING = range(0)  # what ``write`` wrote direct when it wrote nothing


class DirectWrites:
    """``O_DIRECT`` writes of aligned spans (see the module docstring)."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and bool(O_DIRECT)
        self._local = threading.local()  # each worker thread's scratch buffer

    def write(self, path: str | os.PathLike, offset: int, data) -> range:
        """Write the whole file pages that ``data``, at ``offset`` of the (existing)
        file, covers with ``O_DIRECT``. Returns the positions in ``data`` written
        so: the caller writes the rest (the edges before and after, or all of it if
        the range is empty: no whole page, or turned off) through the page cache.
        Raises OSError for a failed write (a full disk), as a buffered write would."""
        view = memoryview(data).cast("B")
        head = -offset % ALIGN
        body = (view.nbytes - head) // ALIGN * ALIGN if view.nbytes > head else 0
        if not self.enabled or body <= 0:
            return NOTHING
        view, offset, n = view[head:head + body], offset + head, body
        kept = getattr(self._local, "kept", None)
        fd = kept.get(path) if kept is not None else None
        if fd is None:
            try:
                fd = os.open(path, os.O_WRONLY | O_DIRECT | os.O_NOFOLLOW | os.O_CLOEXEC)
            except OSError as e:
                if e.errno == errno.EINVAL:  # the filesystem has no O_DIRECT
                    self.enabled = False
                return NOTHING  # the buffered write that follows says what is wrong
            if kept is not None:
                kept[path] = fd
        try:
            if aligned(view):
                scratch = view  # a page-aligned piece buffer: written as it is
            else:
                scratch = self._scratch(n)
                scratch[:n] = view
            written = 0
            while written < n:
                try:
                    written += os.pwrite(fd, scratch[written:n], offset + written)
                except OSError as e:
                    if e.errno != errno.EINVAL:
                        raise
                    # Refused (an alignment this filesystem does not take, or a
                    # short write that left the rest unaligned): write it buffered.
                    self.enabled = False
                    return NOTHING
            return range(head, head + body)
        finally:
            if kept is None:
                os.close(fd)

    @contextlib.contextmanager
    def kept_open(self) -> Iterator[None]:
        """The writes of this thread within the block share one descriptor per
        file, all closed at its end."""
        if getattr(self._local, "kept", None) is not None:  # nested: the outer one
            yield
            return
        kept = self._local.kept = {}
        try:
            yield
        finally:
            self._local.kept = None
            for fd in kept.values():
                os.close(fd)

    def _scratch(self, n: int) -> memoryview:
        buf = getattr(self._local, "buf", None)
        if buf is None or len(buf) < n:
            # Anonymous memory is page-aligned; one per worker thread, the size of
            # the largest span written (a piece).
            self._local.mem = mmap.mmap(-1, n)
            buf = self._local.buf = memoryview(self._local.mem)
        return buf


def aligned_buffer(size: int, phase: int = 0) -> memoryview:
    """A writable, zero-filled buffer of ``size`` bytes whose first byte is
    ``phase`` bytes past an ``ALIGN`` boundary (a view into a bytearray ``ALIGN``
    bytes longer; the bytearray lives as long as the view and never moves: a view
    of it is out). Bytes bound for a file offset of that phase: ``write`` sends
    their whole pages to the device with no copy."""
    raw = bytearray(size + ALIGN)
    skip = (phase - _address(raw)) % ALIGN
    return memoryview(raw)[skip:skip + size]


def aligned(view: memoryview) -> bool:
    """True when a buffer's first byte is on an ``ALIGN`` boundary (only a
    writable buffer's address can be had: a read-only or empty one counts as
    unaligned)."""
    if view.readonly or not view.c_contiguous or not view.nbytes:
        return False
    return _address(view) % ALIGN == 0


def _address(buf) -> int:
    """The address of a writable buffer's first byte."""
    return ctypes.addressof(ctypes.c_char.from_buffer(buf))
