"""A torrent's disk cache, live: what is on disk, what to trust, what to evict.

Owned by a ``Torrent`` (``torrent.cache``) and run in its trio thread; the storage
work goes to worker threads (``CacheOwner.offload``; hashing at most one per CPU at
a time). ``cache.PieceCache`` keeps the books. What the cache needs of its torrent
is ``CacheOwner``.

Resume. The resume file lists the pieces verified in earlier runs. It is saved
atomically (``Storage.save_resume``: data fsynced, temp file, fsync, rename) every
``RESUME_EVERY`` seconds while pieces change, and at exit, so it never claims bytes
that are not on disk. A kill -9 can land between a piece's write and the next save:
such pieces (on disk, not recorded) are found at start (a hole check, no reads) and
hashed again by ``run`` in a worker thread, with progress in the log; a read that
needs one checks it first instead of fetching it. So a crash loses only the pieces
in flight (not yet written), however rarely the resume file is saved.

Trust. Pieces named by the resume file are not hashed again at start: libtorrent
and Transmission do not either when their resume data matches the files, because a
full recheck of a large cache would keep the mount waiting for minutes. Instead
each is hashed the first time it is read from disk in this run (one read of the
piece and a SHA-1, about 1 ms per MiB, once per piece and run), before any byte of
it is returned or uploaded. One that fails (the cache was damaged) is dropped from
the resume state and the have-set, and fetched again. Pieces downloaded in this run
were hashed from memory before their write and are trusted.

Eviction. With a size limit (``--cache-size``), room is made before each write by
punching out (``fallocate``) the least recently read pieces: they leave the
have-set and the resume state. A piece being read or uploaded is pinned and never
evicted; a piece not read yet ranks after those read (readahead is about to be
used). Peers were told we have evicted pieces (BitTorrent cannot take a HAVE back):
their requests for them are rejected (BEP 6) or ignored. A write that fails for
lack of space (ENOSPC) evicts more and retries once, so a cache on a small disk
degrades to a streaming window; if nothing can be evicted the piece is dropped and
the reads that wait on it fail with ENOSPC.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from functools import partial
from typing import Any, Callable, Iterable, Iterator, Protocol

import trio

from torrentfs.core.bitfield import Bitfield
from torrentfs.core.cache import PieceCache
from torrentfs.core.geometry import Geometry
from torrentfs.disk.space import DiskFull
from torrentfs.disk.storage import Storage
from torrentfs.disk.writeback import WriteBehind, unwritten_excluded

log = logging.getLogger("torrentfs.diskcache")

# Save the resume file this often while pieces change. Each save fsyncs every data
# file written since, the resume file and its folder: in a slow swarm, where a piece
# comes every few seconds, 5 s meant a save (6 system calls and the fsyncs) nearly
# every 5 s for each node. A crash loses no piece either way (see above): only the
# hash check at the next start of those written since the last save.
RESUME_EVERY = 30.0
PROGRESS_EVERY = 5.0    # log the progress of the recovery check this often
ENOSPC_FREE = 4         # on a full disk, evict at least this many pieces' worth


class CacheOwner(Protocol):
    """What the disk cache needs of its torrent (``engine.torrent.Torrent``)."""

    storage: Storage
    geometry: Geometry
    have: Bitfield              # the verified pieces on disk
    offload: Callable[..., Any]  # runs blocking storage work (a worker thread)

    def downloading(self, index: int) -> bool: ...  # being fetched or hashed
    def stop_prefetch(self) -> bool: ...  # stop the background download; was it on?
    def piece_on_disk(self, index: int) -> None: ...  # found verified on disk
    def piece_gone(self, index: int) -> None: ...  # evicted or dropped
    def remember(self, index: int, data: bytearray) -> None: ...  # keep it in memory


class DiskCache:
    def __init__(self, torrent: CacheOwner, limit: int | None = None) -> None:
        self.torrent = torrent
        self.storage = torrent.storage
        self.geometry = torrent.geometry
        self.books = PieceCache(limit)
        self._hash_limiter = trio.CapacityLimiter(max(1, (os.cpu_count() or 2)))
        self.trusted: set[int] = set()       # hashed on disk (or before the write) this run
        self.unrecorded: set[int] = set()    # on disk, not in the resume file: to check
        self._checking: dict[int, trio.Event] = {}
        self._punching: dict[int, trio.Event] = {}
        self.dirty = False
        self.recovered = 0
        self.evicted = 0
        self.full = DiskFull()  # writes that failed for a full disk (logged once a minute)
        # Small pieces: hashed here, written in batches (disk/writeback.py), while run.
        self.behind = WriteBehind(self.storage, torrent.offload)

    @property
    def limit(self) -> int | None:
        return self.books.limit

    # -- start and background -------------------------------------------------------

    async def load(self) -> Bitfield:
        """The pieces to start with: those the resume file names and whose bytes are
        on disk. Also notes the unrecorded pieces on disk, for ``run`` to check."""
        offload = self.torrent.offload
        resumed = await offload(self.storage.load_resume)
        self.unrecorded = set(await offload(self.storage.unrecorded, resumed))
        for i in resumed:
            self.books.reserve(i, self.geometry.piece_size(i))
        return resumed

    def trust_all(self, pieces: Iterable[int]) -> None:
        """Pieces hashed on disk at start (``torrentfs seed``): trusted as they are."""
        for i in pieces:
            self.trusted.add(i)
            self.books.reserve(i, self.geometry.piece_size(i))

    async def run(self) -> None:
        """Check the unrecorded pieces, keep the cache within its limit, and save the
        resume file while pieces change. Runs until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self.behind.run)
            await self._evict(self.books.victims())  # the limit may be lower than last run
            if self.unrecorded:
                await self._recover_all()
            last = trio.current_time()
            while True:
                await trio.sleep(1.0)
                if self.dirty and trio.current_time() - last >= RESUME_EVERY:
                    last = trio.current_time()
                    await self.save()

    async def drain(self) -> None:
        """Write the verified pieces still queued (at exit, before the last save)."""
        await self.behind.drain()

    async def save(self) -> None:
        """Save the resume file now (a worker thread). A failure is logged, not
        raised: the next save tries again."""
        self.dirty = False
        have = unwritten_excluded(self.torrent.have, self.storage.unwritten)
        if have is not self.torrent.have:
            self.dirty = True  # those pieces are named by the next save
        try:
            await self.torrent.offload(self.storage.save_resume, have)
        except OSError as e:
            self.dirty = True
            log.warning("could not save resume state: %s", e)

    async def _recover_all(self) -> None:
        todo = sorted(self.unrecorded)
        log.info("checking %d pieces written after the last resume save", len(todo))
        t0 = last = trio.current_time()
        for n, i in enumerate(todo):
            await self._recover_one(i)
            now = trio.current_time()
            if now - last >= PROGRESS_EVERY:
                last = now
                log.info("checked %d of %d unrecorded pieces", n + 1, len(todo))
        log.info("recovered %d of %d unrecorded pieces in %.1f s", self.recovered,
                 len(todo), trio.current_time() - t0)
        if self.recovered:
            await self.save()

    async def recover(self, pieces: Iterable[int]) -> None:
        """A read needs these missing pieces: check those on disk (unrecorded) before
        anyone fetches them."""
        for i in pieces:
            if i in self.unrecorded or i in self._checking:
                await self._recover_one(i)

    async def _recover_one(self, i: int) -> None:
        event = self._checking.get(i)
        if event is not None:  # being checked by another task: wait for its verdict
            await event.wait()
            return
        if i not in self.unrecorded:
            return
        self.unrecorded.discard(i)
        t = self.torrent
        if i in t.have or t.downloading(i):
            return  # fetched again meanwhile: the download wins
        event = self._checking[i] = trio.Event()
        try:
            try:
                data = await t.offload(self.storage.check_piece, i)
            except OSError as e:
                log.debug("piece %d: cannot check: %s", i, e)
                data = None
            if data is not None and i not in t.have:
                self.trusted.add(i)
                self.books.reserve(i, len(data))
                self.recovered += 1
                self.dirty = True
                t.piece_on_disk(i)
            elif data is None:
                log.debug("piece %d on disk does not verify", i)
        finally:
            del self._checking[i]
            event.set()

    # -- storing ------------------------------------------------------------------------

    def room_for(self, size: int) -> bool:
        """Whether the disk has ``size`` bytes free for our data now (a read answered
        before its piece's write, ``Reads.verified``, only where the write should
        succeed: on a full disk the reads waiting on a piece fail with ENOSPC, as
        the module docstring says, rather than succeed once and fail after)."""
        try:
            st = os.statvfs(self.storage.data_dir)
        except OSError:
            return False
        return st.f_bavail * st.f_frsize >= size

    async def store(self, index: int, data, direct: bool = True,
                    hashed: bool = False) -> bool:
        """Hash a downloaded piece (unless ``hashed``: the caller did) and write it
        if it passes, making room first (not ``direct``: through the page cache,
        which returns sooner, for a piece a read waits on alone). Returns the
        verdict; raises OSError if it cannot be written (the piece is then not on
        disk at all)."""
        event = self._punching.get(index)
        if event is not None:  # an eviction of this piece is still being carried out
            await event.wait()
        size = self.geometry.piece_size(index)
        victims = self.books.victims(extra=size)
        self.books.reserve(index, size)
        # Pinned while it is written: another store making room must not pick it
        # (it would punch out the new bytes of a piece about to be trusted).
        self.books.pin(index)
        if self.books.limit is None and self.behind.takes(size, hashed):  # (writeback)
            return self._store_behind(index, data, victims, direct, hashed)
        try:
            return await self._store(index, data, size, victims, direct, hashed)
        finally:
            self.books.unpin(index)

    def _store_behind(self, index: int, data, victims: list[int], direct: bool,
                      hashed: bool = False) -> bool:
        """A small piece: hashed here (unless ``hashed``: the caller did); if it
        passes, trusted at once and queued for a batched write (disk/writeback.py).
        It stays pinned, and ``victims`` guarded, until the write returns."""
        if not hashed and not self.storage.verify(index, data):
            self.books.unpin(index)
            self.books.removed(index)
            return False
        self._forget(victims)
        guard = self._punch_guard(victims)
        guard.__enter__()

        async def done(error: OSError | None) -> None:
            try:
                if error is not None and error.errno == errno.ENOSPC:
                    try:  # make room and try once more, as ``_store`` does
                        await self._store_on_full(index, data, len(data), direct, error)
                        error = None
                    except OSError as e:
                        error = e
            finally:
                guard.__exit__(None, None, None)
                self.books.unpin(index)
            if error is not None:
                self._write_failed(index, error)

        self.behind.put(index, data, victims, direct, done)
        self.trusted.add(index)
        self.dirty = True
        return True

    def _write_failed(self, index: int, error: OSError) -> None:
        """A piece announced as ours could not be written: it leaves like an evicted
        one (its bytes were punched out by the failed store)."""
        self.books.removed(index)
        self.trusted.discard(index)
        self.dirty = True
        if error.errno != errno.ENOSPC:  # (a full disk is logged once a minute)
            log.error("cannot write piece %d: %s; it will be fetched again", index, error)
        self.torrent.piece_gone(index)

    async def _store(self, index: int, data, size: int, victims: list[int],
                     direct: bool = True, hashed: bool = False) -> bool:
        t = self.torrent
        self._forget(victims)
        try:
            with self._punch_guard(victims):
                ok = await t.offload(partial(self.storage.store, index, data,
                                              evict=victims, verify=not hashed,
                                              direct=direct),
                                      limiter=self._hash_limiter)
            if not ok:
                self.books.removed(index)
                return False
            self.behind.proven()
        except OSError as e:
            if e.errno != errno.ENOSPC:
                self.books.removed(index)
                raise
            await self._store_on_full(index, data, size, direct, e)
        self.trusted.add(index)
        self.dirty = True
        return True

    async def _store_on_full(self, index: int, data, size: int, direct: bool,
                             error: OSError) -> None:
        """A verified piece's write failed for a full disk (ENOSPC). Raises OSError
        if it cannot be written (it is then out of the books)."""
        t = self.torrent
        # The disk is full (of our pieces or of anything else): evict a few of
        # ours, least recently read first, and try once more.
        victims = self.books.victims(limit=self.books.used - ENOSPC_FREE * size)
        self._forget(victims)
        unlogged = self.full.note(trio.current_time(), time.time())
        if unlogged is not None:
            log.warning("disk full writing piece %d to %s (%s); %s%s", index,
                        self.storage.folder, "evicting %d pieces" % len(victims)
                        if victims else "nothing of ours to evict",
                        "set a smaller --cache-size or free some space",
                        f"; {unlogged} more since the last such line"
                        if unlogged else "")
        if not victims:
            self.books.removed(index)
            if t.stop_prefetch():  # it would fetch and drop pieces in a loop
                log.warning("disk full: background download (--prefetch) stopped")
            raise error
        try:
            with self._punch_guard(victims):
                await t.offload(partial(self.storage.store, index, data,
                                         evict=victims, verify=False, direct=direct))
        except OSError:
            self.books.removed(index)
            raise

    @contextlib.contextmanager
    def _punch_guard(self, pieces: list[int]) -> Iterator[None]:
        """While ``pieces`` are being punched out, nobody writes them again."""
        events = {}
        for i in pieces:
            events[i] = self._punching[i] = trio.Event()
        try:
            yield
        finally:
            for i, event in events.items():
                if self._punching.get(i) is event:
                    del self._punching[i]
                event.set()

    # -- eviction and dropping ----------------------------------------------------------

    def _forget(self, pieces: list[int]) -> None:
        """The pieces leave the have-set (the books already forgot them): nothing
        will read them from now on. Their bytes go with the next punch."""
        if not pieces:
            return
        for i in pieces:
            self.trusted.discard(i)
            self.torrent.piece_gone(i)
        self.evicted += len(pieces)
        self.dirty = True
        log.debug("evicted pieces %s", pieces)

    async def _evict(self, pieces: list[int]) -> None:
        self._forget(pieces)
        if pieces:
            with self._punch_guard(pieces):
                await self.torrent.offload(self._punch_all, pieces)

    def _punch_all(self, pieces: list[int]) -> None:
        for i in pieces:
            try:
                self.storage.punch(i)
            except OSError:
                pass

    async def drop(self, index: int, why: str) -> None:
        """A piece we had must go (it failed its check on disk)."""
        log.warning("piece %d: %s: dropped, it will be fetched again", index, why)
        self.books.removed(index)
        await self._evict([index])

    # -- reading --------------------------------------------------------------------------

    @contextlib.contextmanager
    def pinned(self, pieces: Iterable[int]) -> Iterator[None]:
        """Nothing evicts these pieces while the block runs (a read, an upload)."""
        pieces = list(pieces)
        for i in pieces:
            self.books.pin(i)
        try:
            yield
        finally:
            for i in pieces:
                self.books.unpin(i)

    def touched(self, pieces: Iterable[int]) -> None:
        for i in pieces:
            self.books.read(i)

    async def trust(self, pieces: Iterable[int], remember: bool = True) -> bool:
        """Hash the pieces (all of which we have) not yet read from disk in this run.
        False if one failed and was dropped. With ``remember`` the checked bytes are
        kept in memory for the read that asked."""
        ok = True
        t = self.torrent
        for i in pieces:
            if i in self.trusted or i not in t.have:
                continue
            try:
                data = await t.offload(self.storage.check_piece, i,
                                        limiter=self._hash_limiter)
            except OSError as e:
                data = None
                why = f"cannot read it back ({e})"
            else:
                why = "the cached copy failed its hash check"
            if i in self.trusted or i not in t.have:
                continue  # settled while we read
            if data is None:
                ok = False
                await self.drop(i, why)
                continue
            self.trusted.add(i)
            if remember:
                t.remember(i, bytearray(data))
        return ok
