"""The read path of one torrent: ``Reads``, owned by a ``Torrent`` (``torrent.reads``).

``Reads.read(file_index, offset, size)`` maps the range to pieces, pins them in the
disk cache, raises the missing ones to NOW in the picker (deadline: now +
``NOW_SLACK``), lets every peer pick (``schedule``), waits for the pieces to be
verified, then returns the bytes: from memory if the pieces just arrived
(``Recent``), else from disk in a worker thread. Each piece waited for gets
``read_timeout`` seconds of no progress before the read fails with ``ReadTimeout``,
which says why the piece is not coming (``who_has``). The kernel retries a read
that failed at once, on the same open file (the page cache's readahead, then the
page itself): a read through a ``ReadHandle`` of a piece whose read through that
handle timed out less than ``RETRY_WINDOW`` ago waits ``RETRY_SLACK`` at most, so
that a read fails ``read_timeout`` (and that slack) after its first attempt, not
twice that; a piece that comes meanwhile is still read. A read undoes its own raises
when it ends, however it ends.

A ``ReadHandle`` is an open file: its reads move a readahead window whose pieces it
raises to READAHEAD; it undoes only its own raises. A readahead piece's deadline
follows its place in the file, so the window is fetched in reading order however it
grew: ``READAHEAD_STEP`` seconds per piece counted from an anchor (a time and a
piece), set at the first read and at each seek, and moved (the whole window raised
again) when the reader drifts more than ``REANCHOR_AFTER`` seconds from that pace.
A file's first read or a seek that waits is asked alone; its window is raised once
its pieces are in (``raise_later``), at the reader's pace (twice the read, doubling
with each read that continues) if it waited less than PACE_BELOW (a fast swarm).
A first read answered at once from pieces a head start brought quickly (a listed
folder's videos: ``headstart``) reads ahead at the reader's pace too.
``block`` reads a block of a verified piece for an upload, the same way (memory,
else disk, pinned meanwhile).

After a seek (a read through a handle that does not follow on from its last), the
reads through the handle still waiting at the old place drop to READAHEAD
(``ReadHandle.seeked``): they are the kernel's readahead there, nobody waits on
them. A video's handle (``stream``) holds a seek read that had to wait until the
next SEEK_HOLD_BYTES of the file are in too, SEEK_HOLD_MAX at most (``_hold``): a
player that seeks on a slow swarm then starts a little later and plays on.

What the read path needs of its torrent is ``PieceSupply``; what the torrent tells
it is ``piece_arrived``, ``store_failed``, ``remember`` and ``forget``. Only
verified pieces are ever read: a piece is in ``have`` once hashed and on disk.
(Whether the reader behind a FUSE read gave up is the FUSE layer's business:
``fs.fuse`` cancels the read.)
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Protocol

import trio

from torrentfs.core.bitfield import Bitfield
from torrentfs.core.geometry import Geometry
from torrentfs.core.picker import NOW, READAHEAD, Picker
from torrentfs.core.readahead import Readahead
from torrentfs.disk.cache import DiskCache
from torrentfs.disk.nowait import read_nowait
from torrentfs.disk.storage import Storage, StorageError
from torrentfs.engine.blockreads import BlockReads
from torrentfs.engine.headstart import HeadStart
from torrentfs.engine.memory import Recent, UploadChunks

NOW_SLACK = 0.05            # deadline of a piece a read waits on: now + this
READAHEAD_MIN = 2 << 20     # readahead window after a seek, bytes
READAHEAD_MAX = 32 << 20    # the window doubles on each contiguous read up to this
PACE_BELOW = 0.05           # a first or seek read answered faster: window at its pace
READAHEAD_DEADLINE = 0.5    # deadline of the first readahead piece: now + this ...
READAHEAD_STEP = 0.05       # ... and this much later for each piece after it in the file
REANCHOR_AFTER = 5.0        # the reader this far off that pace: deadlines counted afresh
STALE_DEADLINE = 3.0        # a read left behind by a seek: readahead due now + this
SEEK_HOLD_AFTER = 0.1       # a video's seek read that waited this long (a slow swarm) ...
SEEK_HOLD_BYTES = 1 << 20   # ... also waits for this much of the file after it ...
SEEK_HOLD_MAX = 1.2         # ... until this long after it began, at most
RETRY_WINDOW = 2.0          # a read of a piece that timed out this recently ...
RETRY_SLACK = 0.5           # ... waits this long at most (the kernel's retry of a read)
CHECK_TRIES = 3             # a piece dropped by its check on disk is fetched again


class ReadTimeout(Exception):
    """A read made no progress for ``read_timeout`` seconds."""


class PieceSupply(Protocol):
    """What the read path needs of its torrent (``torrent.Torrent`` is the one)."""

    geometry: Geometry
    have: Bitfield              # the verified pieces on disk
    picker: Picker              # where reads raise and drop their pieces
    cache: DiskCache
    storage: Storage
    offload: Callable[..., Any]  # runs blocking storage work (a worker thread)

    def schedule(self) -> None: ...  # priorities changed: let every peer pick
    def schedule_soon(self) -> None: ...  # the same, once the running task yields
    def cancel_unwanted(self, pieces: Iterable[int]) -> None: ...
    def who_has(self, index: int) -> str: ...  # why a piece is not coming


class ReadHandle:
    """An open file. Its reads move a readahead window (``readahead.Readahead``),
    whose pieces it raises to READAHEAD, earlier pieces first; pieces that fall out
    of the window are dropped again, and requests for them cancelled. Its raises
    are its own: ``close`` drops them all."""

    def __init__(self, reads: Reads, file_index: int, stream: bool = False) -> None:
        self.torrent = reads.torrent
        self.file_index = file_index
        self.stream = stream  # a video: a seek read may hold for a buffer (``Reads._hold``)
        self.readahead = Readahead(READAHEAD_MIN, reads.readahead_max)
        self._raised: set[int] = set()
        # Deadlines count from here: (when, piece), READAHEAD_STEP s per piece after.
        self._anchor: tuple[float, int] | None = None
        self._timed_out: tuple[float, set[int]] | None = None  # when, which pieces
        # Reads through this file waiting for pieces: owner -> the pieces.
        self.pending: dict[object, list[int]] = {}
        # Container indexes often sit at the end of a video file: a first read at
        # the file's start (a player probing it) fetches the first and last pieces
        # too, at readahead priority (``advance``). They are raised by an owner of
        # their own, so the window moving on does not drop them.
        self._edge = object()
        self._edges: list[int] = []
        self._later: tuple[bool, int, int] | None = None  # advance(later=True) left

    def _raise_edges(self, schedule: bool) -> None:
        t = self.torrent
        g = t.geometry
        edge = list(g.file_pieces(self.file_index, 0, 1))
        length = g.file_lengths[self.file_index]
        if length:
            edge += g.file_pieces(self.file_index, length - 1, 1)
        self._edges = [i for i in dict.fromkeys(edge) if i not in t.have]
        now = trio.current_time()
        self._raise(self._edges, lambda rank: now + READAHEAD_DEADLINE + READAHEAD_STEP * rank,
                    owner=self._edge, schedule=schedule)

    @property
    def fresh(self) -> bool:
        """No read through this file yet."""
        return self.readahead.next_offset is None

    def advance(self, offset: int, size: int, schedule: bool = True,
                later: bool = False) -> None:
        """A read of ``[offset, offset+size)`` happened: move the readahead window.
        Without ``schedule`` the peers are not told yet (the read is about to raise
        its own pieces, which must be asked first). With ``later`` the window only
        moves: its pieces (and a first read's edge pieces) are raised by
        ``raise_later`` once the read has its own, unless a read moved it since; the
        pieces of the window it leaves (a seek's) are dropped at once."""
        edges = self.fresh and offset == 0
        start, length = self.readahead.advance(offset, size)
        if later:
            self._later = (edges, size, length)
            self._move(start, 0, schedule)  # a seek: the old window is let go now
            return
        if self._later is not None:  # a first read still waits: this one moved on
            edges = edges or self._later[0]
            self._later = None
        if edges:
            self._raise_edges(schedule)
        self._move(start, length, schedule)

    def raise_later(self, waited: float = math.inf) -> None:
        """Raise what ``advance(..., later=True)`` left, if no read moved on since.
        A read that ``waited`` less than PACE_BELOW (a fast swarm) restarts the window
        at the reader's pace (``Readahead.pace``): a program that reads a few hundred
        KiB (a probe, a seek's first frame) then does not share the CPU with a
        download of megabytes it will not read, and a stream's window doubles with
        each read that continues."""
        if self._later is not None:
            edges, size, length = self._later
            self._later = None
            if edges:
                self._raise_edges(True)
            if waited < PACE_BELOW:
                start, length = self.readahead.pace(size)
            else:
                start = self.readahead.next_offset
            self._move(start, length, True)

    def _move(self, start: int, length: int, schedule: bool) -> None:
        t = self.torrent
        window = t.geometry.file_pieces(self.file_index, start, length)
        current = set(window)
        stale = [i for i in self._raised if i not in current]
        if stale:
            self._raised.difference_update(stale)
            t.picker.drop(self, stale)
            t.cancel_unwanted(stale)
        if not window:
            return
        now = trio.current_time()
        anchor = self._anchor
        if (anchor is None or not self.readahead.sequential
                or abs(anchor[0] + READAHEAD_STEP * (window[0] - anchor[1]) - now)
                > REANCHOR_AFTER):
            # A first read, a seek, or a reader far off the pace: count afresh, and
            # raise the whole window again so that it stays in reading order.
            self._anchor = anchor = (now, window[0])
            fresh = [i for i in window if i not in t.have]
        else:
            fresh = [i for i in window if i not in self._raised and i not in t.have]
        when, first = anchor
        self._raise(fresh, lambda i: when + READAHEAD_DEADLINE + READAHEAD_STEP * (i - first),
                    by_index=True, schedule=schedule)

    def seeked(self, owner: object) -> None:
        """The read of ``owner`` jumped away from where the reads through this file
        were: the others still waiting are left behind (the kernel's readahead of
        the old place, which the reader no longer waits on: a player reads a file's
        start to probe it, then seeks). Their pieces drop from NOW to READAHEAD, due
        soon after the new place's first pieces, so that the seek's blocks come first
        at every peer (``Requests`` cancels what they queue behind); the reads are
        still answered."""
        t = self.torrent
        when = trio.current_time() + STALE_DEADLINE
        for other, pieces in self.pending.items():
            if other is not owner:
                t.picker.raise_priority(other, pieces, READAHEAD, when)

    def _raise(self, pieces: list[int], deadline, by_index: bool = False,
               schedule: bool = True, owner: object = None) -> None:
        """Raise ``pieces`` to READAHEAD, each by ``deadline(rank)`` (or of its index,
        ``by_index``), as the window (or ``owner``), and let the peers pick (unless
        not ``schedule``)."""
        if not pieces:
            return
        t = self.torrent
        for rank, i in enumerate(pieces):
            t.picker.raise_priority(owner or self, (i,), READAHEAD,
                                    deadline(i if by_index else rank), ordered=self.stream)
        if owner is None:
            self._raised.update(pieces)
        if schedule:
            t.schedule_soon()  # after the read is answered: it waits for none of these

    def timed_out(self, pieces: list[int]) -> None:
        """A read through this file timed out waiting for ``pieces``."""
        self._timed_out = (trio.current_time(), set(pieces))

    def retrying(self, pieces: list[int]) -> bool:
        """Whether a read of ``pieces`` is the kernel's retry of one that just timed
        out through this file (it retries a failed read at once)."""
        if self._timed_out is None:
            return False
        when, failed = self._timed_out
        return trio.current_time() - when < RETRY_WINDOW and not failed.isdisjoint(pieces)

    def close(self) -> None:
        t = self.torrent
        t.picker.drop(self)
        t.picker.drop(self._edge)
        t.cancel_unwanted(self._raised | set(self._edges))
        self._raised.clear()
        self._edges = []


class Reads:
    """The read path of one torrent (see the module docstring)."""

    def __init__(self, torrent: PieceSupply, *, read_timeout: float | None = None,
                 cache_size: int | None = None) -> None:
        self.torrent = torrent
        self.read_timeout = read_timeout
        # The readahead window must fit the disk cache, or it evicts its own pieces.
        self.readahead_max = READAHEAD_MAX if cache_size is None else max(
            READAHEAD_MIN, min(READAHEAD_MAX, cache_size // 2))
        self.recent = Recent()
        self.upload_chunks = UploadChunks()
        # Reads waiting for pieces: owner -> (since when, the pieces), for ``status``.
        self.waiting: dict[object, tuple[float, list[int]]] = {}
        self._events: dict[int, trio.Event] = {}        # piece -> set when it arrives
        self._store_errors: dict[int, OSError] = {}     # piece -> why it was not written
        # v2 torrents: reads wait only for the blocks they cover (``blockreads``).
        self.blocks = BlockReads(torrent)
        self._alone: set[int] = set()  # pieces a first read or a seek waits on alone
        self._in_memory: set[int] = set()  # verified and in ``recent``, being written
        self.in_memory_listeners: list[Callable[[int], None]] = []  # told of those
        self.head_start = HeadStart(torrent, self.waiting,  # a listed folder's videos
                                    budget=torrent.options.head_start)

    # -- what the torrent tells ---------------------------------------------------------

    def piece_arrived(self, index: int) -> None:
        """A piece is verified and on disk: wake the reads waiting for it."""
        self._store_errors.pop(index, None)
        self.blocks.piece_arrived(index)
        self.head_start.arrived(index)
        event = self._events.pop(index, None)
        if event is not None:
            event.set()

    def verified(self, index: int, data: bytearray) -> None:
        """A piece a read waits on alone (or a quick head start's:
        ``HeadStart.quick_now``) is verified, and about to be written: the reads
        waiting for it are answered from memory now (``_from_memory``), not after
        the write, and ``in_memory_listeners`` are told. ``written`` ends that, once
        the write is done or failed."""
        self._in_memory.add(index)
        self.recent.remember(index, data)
        self.head_start.arrived(index)
        event = self._events.pop(index, None)
        if event is not None:
            event.set()
        for listener in self.in_memory_listeners:
            listener(index)

    def written(self, index: int) -> None:
        self._in_memory.discard(index)

    def in_memory(self, index: int) -> bool:
        """Whether a piece is verified and in memory, its write under way."""
        return index in self._in_memory

    def store_failed(self, index: int, error: OSError) -> None:
        """A piece verified but could not be written: the reads waiting for it fail
        with this error rather than wait on."""
        self._store_errors[index] = error
        self.blocks.changed()
        event = self._events.pop(index, None)
        if event is not None:
            event.set()

    def remember(self, index: int, data: bytearray) -> None:
        """Keep a just-verified piece in memory: the next reads are likely in it."""
        self.recent.remember(index, data)

    def forget(self, index: int) -> None:
        """A piece left the disk cache: not served from memory either."""
        self.recent.forget(index)
        self.upload_chunks.forget(index)
        self.head_start.forget(index)

    # -- reading --------------------------------------------------------------------------

    def alone(self, index: int) -> bool:
        """Whether a file's first read or a seek waits on the piece alone: it is
        written through the page cache, 1-2 ms sooner than O_DIRECT (disk/direct)."""
        return index in self._alone

    def open_handle(self, file_index: int, stream: bool = False) -> ReadHandle:
        return ReadHandle(self, file_index, stream)

    async def read(self, file_index: int, offset: int, size: int,
                   handle: ReadHandle | None = None) -> bytes | memoryview:
        """Bytes ``[offset, offset+size)`` of a file (short at its end), once every
        piece they touch is verified. Raises ``ReadTimeout`` if no piece it waits for
        arrives within ``read_timeout`` seconds."""
        t = self.torrent
        g = t.geometry
        length = g.file_lengths[file_index]
        if size <= 0 or offset >= length:
            return b""
        size = min(size, length - offset)
        start = g.file_offset(file_index) + offset
        pieces = g.pieces_in_range(start, size)
        # A read that will wait raises its own pieces first: before the window moves
        # on (which gives up the pieces it leaves, and the read's may be among them)
        # and before the peers are asked for the readahead (``_wait_for`` lets them
        # pick: the read's blocks come first).
        owner = object()
        self.head_start.read_began()
        unscheduled = t.have.missing(pieces)
        early = None  # the bytes, from pieces verified in memory before their write
        began = trio.current_time()
        stream = handle is not None and handle.stream  # a video: in order (picker)
        if unscheduled:  # NOW (the first of them alone, with leechers about)
            t.picker.raise_read(owner, unscheduled, began + NOW_SLACK, ordered=stream)
        # A file's first read, or a seek, that waits is alone on the wire: its
        # readahead (and a first read's first and last pieces) are asked once its
        # pieces are in. On a fast link the time is spent receiving (and the piece's
        # hash waits for the GIL while blocks come in): the read would wait for those.
        seek = handle is not None and handle.readahead.next_offset not in (None, offset)
        later = handle is not None and (handle.fresh or seek) and bool(unscheduled)
        # A first read answered at once by a quick head start: at the reader's pace.
        paced = (handle is not None and handle.fresh and not unscheduled
                 and self.head_start.quick(pieces))
        # A seek in a video that has to wait may hold for a buffer (``_hold``).
        hold = bool(unscheduled) and seek and handle.stream
        alone = unscheduled if later else []
        self._alone.update(alone)
        try:
            if handle is not None:
                handle.advance(offset, size, schedule=not unscheduled, later=later or paced)
                if paced:
                    handle.raise_later(0.0)
                if unscheduled:
                    handle.pending[owner] = unscheduled
                    if not handle.readahead.sequential and len(handle.pending) > 1:
                        handle.seeked(owner)
            with t.cache.pinned(pieces):  # not evicted under our feet
                for _ in range(CHECK_TRIES):
                    missing = t.have.missing(pieces)
                    if missing:
                        await t.cache.recover(missing)  # left by a crash: check, not fetch
                        missing = t.have.missing(missing)
                    if missing:
                        unscheduled = []
                        retry = handle is not None and handle.retrying(missing)
                        try:
                            if self.blocks.enabled:  # v2: only the blocks it covers
                                data = await self._wait_blocks(start, size, pieces, owner,
                                                               missing, retry)
                                if data is not None:
                                    return data
                                missing = t.have.missing(pieces)
                            if missing:
                                await self._wait_for(missing, owner, retry, memory=True,
                                                     ordered=stream)
                                early = self._from_memory(g, start, size, pieces)
                                missing = [] if early is not None else t.have.missing(pieces)
                            if missing:  # (in memory, but not the whole read: the disk)
                                await self._wait_for(missing, owner, retry,
                                                     ordered=stream)
                        except ReadTimeout:
                            if handle is not None:
                                handle.timed_out(missing)
                            raise
                    elif unscheduled:
                        unscheduled = []
                        t.schedule()
                    if early is not None or await t.cache.trust(pieces):
                        break
                else:
                    raise StorageError(f"pieces {pieces.start}-{pieces.stop - 1} keep "
                                       "failing their hash check on disk")
                if later:
                    handle.raise_later(trio.current_time() - began)
                if hold and trio.current_time() - began >= SEEK_HOLD_AFTER:
                    await self._hold(file_index, offset + size, began + SEEK_HOLD_MAX)
                t.cache.touched(pieces)
                data = early if early is not None else self.recent.read(g, start, size, pieces)
                if data is not None:
                    return data
                return await t.offload(t.storage.read, start, size)
        finally:
            self._alone.difference_update(alone)  # (stored by now, or given up)
            if handle is not None:
                handle.pending.pop(owner, None)
            # Every raise of the read's (here, in ``_wait_for``, ``_wait_blocks``) is
            # on its own pieces: undone there, not looked for among every raised one.
            t.picker.drop(owner, pieces)

    def block_now(self, index: int, begin: int, length: int) -> memoryview | None:
        """Bytes of a verified piece for an upload if they can be had without
        waiting: in memory (just verified, or read for an earlier upload:
        ``UploadChunks``), or in the page cache (a chunk read with RWF_NOWAIT, kept
        for the next blocks) of a piece in ``have`` already checked on disk in this
        run. Else None: ``block`` reads it. Synchronous, so nothing can evict the
        piece between the check and the read (an eviction leaves ``have`` in the
        trio thread before its hole is punched)."""
        data = self.recent.block(index, begin, length)
        if data is None:
            data = self.upload_chunks.get(index, begin, length)
        if data is not None:
            return data
        t = self.torrent
        if index not in t.have or index not in t.cache.trusted:
            return None
        span = self.upload_chunks.span(t.geometry.piece_size(index), begin, length)
        if span is None:
            return None
        start, size = span
        chunk = read_nowait(t.storage, t.geometry.piece_offset(index) + start, size)
        if chunk is None:
            return None
        self.upload_chunks.put(index, start, chunk)
        return memoryview(chunk)[begin - start:begin - start + length]

    async def block(self, index: int, begin: int, length: int) -> bytes | memoryview:
        """Bytes of a verified piece, for an upload: ``block_now`` if it can, else
        from disk in a worker thread (checked there first if not yet in this run;
        a chunk of ``UPLOAD_CHUNK`` is kept for the next blocks). Raises
        ``StorageError`` if the piece left the disk cache meanwhile (or failed its
        check there)."""
        data = self.block_now(index, begin, length)
        if data is not None:
            return data
        t = self.torrent
        with t.cache.pinned((index,)):
            if index not in t.have or not await t.cache.trust((index,), False):
                raise StorageError(f"piece {index} is no longer in the cache")
            base = t.geometry.piece_offset(index)
            span = self.upload_chunks.span(t.geometry.piece_size(index), begin, length)
            if span is None:
                return await t.offload(t.storage.read, base + begin, length)
            start, size = span
            chunk = read_nowait(t.storage, base + start, size)  # cached by the check?
            if chunk is None:
                chunk = await t.offload(t.storage.read, base + start, size)
            if index in t.have:  # not evicted while it was read
                self.upload_chunks.put(index, start, chunk)
            return memoryview(chunk)[begin - start:begin - start + length]

    async def _hold(self, file_index: int, offset: int, until: float) -> None:
        """A seek read in a video waited for its pieces (a slow swarm): it also waits
        for the next SEEK_HOLD_BYTES of the file, until ``until`` at most. A player
        that seeks starts its clock before that first read; answered at once, it
        plays the first frame, then stands still at each next piece while it catches
        up with its clock. Held, it starts a little later and plays on (issue 12;
        docs/benchmarks.md, session 5). Nothing here fails the read: its bytes are in."""
        t = self.torrent
        more = t.have.missing(t.geometry.file_pieces(file_index, offset, SEEK_HOLD_BYTES))
        if not more:
            return
        with trio.move_on_at(until):
            try:
                await self._wait_for(more)
            except (ReadTimeout, OSError):
                pass  # the next read of those pieces says so

    async def _wait_blocks(self, start: int, size: int, pieces: range, owner: object,
                           missing: list[int], retry: bool) -> bytes | None:
        """``BlockReads.read``, as a read waiting (``waiting``), with its timeout."""
        timeout = math.inf if self.read_timeout is None else self.read_timeout
        self.waiting[owner] = (trio.current_time(), missing)
        try:
            return await self.blocks.read(start, size, pieces, owner,
                                          timeout if not retry else min(timeout, RETRY_SLACK))
        except trio.TooSlowError:
            i = next(i for i in pieces if i not in self.torrent.have)
            raise ReadTimeout(f"no progress for {timeout:g} s waiting for blocks of "
                              f"piece {i}: {self.torrent.who_has(i)}") from None
        finally:
            self.waiting.pop(owner, None)

    def _from_memory(self, g: Geometry, start: int, size: int,
                     pieces: range) -> bytes | memoryview | None:
        """A read's bytes if every piece it lacks on disk is verified in memory
        (``verified``) and all its pieces are in ``recent``; else None."""
        missing = self.torrent.have.missing(pieces)
        if not missing or not self._in_memory.issuperset(missing):
            return None
        return self.recent.read(g, start, size, pieces)

    async def _wait_for(self, pieces: list[int], owner: object | None = None,
                        retry: bool = False, memory: bool = False,
                        ordered: bool = False) -> None:
        """Raise the pieces to NOW (as ``owner``) and wait until each is in
        ``have`` (with ``memory``: or verified in memory, ``verified``); the raises
        are undone however this ends. A ``retry`` (of a read that just timed out)
        waits ``RETRY_SLACK`` at most."""
        t = self.torrent
        owner = owner or object()
        deadline = trio.current_time() + NOW_SLACK
        t.picker.raise_read(owner, pieces, deadline, ordered)
        t.schedule()
        timeout = math.inf if self.read_timeout is None else self.read_timeout
        wait = timeout if not retry else min(timeout, RETRY_SLACK)
        self.waiting[owner] = (trio.current_time(), pieces)
        try:
            for k, i in enumerate(pieces):
                if i not in t.have and t.picker.priority(i)[0] != NOW:
                    # The next piece waited on (``raise_read`` raised only the first):
                    # only its holders can be asked for it, or make way for it.
                    t.picker.raise_read(owner, pieces[k:], deadline, ordered)
                    t.schedule(piece=i)
                while i not in t.have and not (memory and i in self._in_memory):
                    event = self._events.get(i)
                    if event is None:
                        event = self._events[i] = trio.Event()
                        self._store_errors.pop(i, None)  # a new attempt: old news
                    with trio.move_on_after(wait):
                        await event.wait()
                    if i in t.have or (memory and i in self._in_memory):
                        break
                    error = self._store_errors.get(i)
                    if error is not None:  # verified, but it could not be written
                        raise error
                    if not event.is_set():
                        raise ReadTimeout(f"no progress for {timeout:g} s waiting for "
                                          f"piece {i}: {t.who_has(i)}")
        finally:
            self.waiting.pop(owner, None)
            t.picker.drop(owner, pieces)  # (its raises: on ``pieces`` only)
