"""A listed video's head-start pieces handed to the kernel's page cache before any
program reads them: ``PageCacheFill``, one per ``fuse.TorrentFS``.

A listed folder's videos get a head start (engine/headstart): their first and last
pieces are fetched while a program that will probe them is still loading its
libraries (ffprobe: ~60 ms). Verified and stored, they still cost the program a FUSE
round trip per kernel read once it opens the file (for ffprobe's 720 KiB, reads of
64, 128, 256 and 256 KiB: each a wake-up of the daemon, and its answer, while the
program waits), and those reads move the file's readahead window, so the next piece
was fetched beside the program's parse although it never reads it. Here the daemon
writes such a piece's bytes of the file into the kernel's page cache as soon as it is
on disk (FUSE_NOTIFY_STORE, ``pyfuse3.notify_store``): the program's reads of them
are answered by the kernel, as on a warm mount. ``keep_cache`` keeps them at the
open, and a file's size and mtime never change, so nothing drops them.

Only what the read path would answer itself is given: pieces in ``have`` (verified
and stored) that a head start brought quickly (``HeadStart.quick``: a fast swarm;
on a slow one the program's first read still opens the readahead window at once),
each piece once, and only the whole pages of a listed video's bytes in them (a
partial page would be left for the kernel to read through us anyway).

The store runs in a worker thread: the kernel locks each page while it fills it, and
a read of the same pages that waits for this daemon's answer holds that lock; the
trio thread, which must give that answer, cannot wait for the store.
"""

from __future__ import annotations

import logging
import mmap
from typing import Awaitable, Callable, Iterable, NamedTuple

import trio

from torrentfs.core.geometry import Geometry

log = logging.getLogger("torrentfs.fuse")

PAGE = mmap.PAGESIZE


class Store(NamedTuple):
    """``length`` bytes of file ``file_index`` at ``file_offset``, which are bytes
    ``[begin, begin+length)`` of the piece."""

    file_index: int
    file_offset: int
    begin: int
    length: int


def page_stores(g: Geometry, index: int, files: Iterable[int] | set[int]) -> list[Store]:
    """The whole pages of piece ``index`` that lie in ``files``: a file's run in the
    piece trimmed to page boundaries (its end kept at the file's end, where the
    kernel takes a partial last page)."""
    files = set(files)
    base = g.piece_offset(index)
    stores = []
    for span in g.piece_spans(index):
        if span.file_index not in files:
            continue
        start = -(-span.file_offset // PAGE) * PAGE
        end = span.file_offset + span.length
        if end < g.file_lengths[span.file_index]:
            end -= end % PAGE
        if end > start:
            stores.append(Store(span.file_index, start,
                                span.stream_offset - base + start - span.file_offset,
                                end - start))
    return stores


class PageCacheFill:
    """Hands verified pieces' pages to the kernel (see the module docstring), one
    store at a time, in ``run`` (``fuse.Mount.serve`` runs it while the mount is
    served; stores asked before wait for it). ``store(inode, offset, data)`` is
    ``pyfuse3.notify_store``, called through ``run_sync`` (``trio.to_thread.run_sync``).
    One per mount: a multi-torrent mount's torrents share it (``multifs``)."""

    def __init__(self, store: Callable[[int, int, memoryview], None],
                 run_sync: Callable[..., Awaitable[object]] = trio.to_thread.run_sync) -> None:
        self.store = store
        self.run_sync = run_sync
        self.limiter = trio.CapacityLimiter(1)  # the stores' own thread
        self.videos: dict[object, set[int]] = {}  # per torrent: its listed videos
        self.given: set[tuple[object, int]] = set()  # (torrent, piece) handed over
        self._queue: list[tuple[int, int, memoryview]] = []
        self._wake = trio.Event()
        self.stored = 0                # stores done (or failed: their reads ask us)

    def listed(self, torrent, videos: Iterable[int]) -> None:
        """A folder of ``torrent`` was listed with these video files."""
        self.videos.setdefault(torrent, set()).update(videos)

    def arrived(self, torrent, index: int, inode_of: Callable[[int], int | None]) -> int:
        """Piece ``index`` of ``torrent`` is verified, in memory before its write
        (``Reads.in_memory``: a quick head start's piece is hashed as it comes in)
        or on disk: if a head start brought it quickly, queue its pages of listed
        videos for the kernel. Returns how many stores were queued."""
        videos = self.videos.get(torrent)
        if not videos or (torrent, index) in self.given:
            return 0
        reads = torrent.reads
        if index not in torrent.have and not reads.in_memory(index):
            return 0
        if not reads.head_start.quick((index,)):
            return 0
        g = torrent.geometry
        piece = reads.recent.block(index, 0, g.piece_size(index))
        if piece is None:  # (no longer in memory: a read brings it)
            return 0
        self.given.add((torrent, index))
        queued = 0
        for s in page_stores(g, index, videos):
            inode = inode_of(s.file_index)
            if inode is not None:
                self._queue.append((inode, s.file_offset, piece[s.begin:s.begin + s.length]))
                queued += 1
        if queued:
            self._wake.set()
        return queued

    async def run(self) -> None:
        """Carry out the queued stores, one at a time, each in a worker thread of its
        own limiter (a store waiting for a page lock never holds up the threads the
        reads need). Runs until cancelled; a store under way is finished first: the
        FUSE session must outlive it."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._queue:
                inode, offset, data = self._queue.pop(0)
                try:
                    await self.run_sync(self.store, inode, offset, data,
                                        limiter=self.limiter)
                except OSError as e:  # (the kernel forgot the inode): reads ask us
                    log.debug("page cache store of %d bytes at %d failed: %s",
                              len(data), offset, e)
                self.stored += 1
