"""Small verified pieces hashed in the trio thread and written behind, in batches:
``WriteBehind``.

A downloaded piece used to go to a worker thread to be hashed and written: a thread
round trip per piece, whose result wakes the event loop. At a trickle (a cluster
reading at 2 MB/s in 32 KiB pieces) that was 26 of the ~150 wake-ups a second of a
node, each with a GIL hand-over and an ``O_DIRECT`` open (issue 13; docs/
benchmarks.md, session 7). A piece of up to ``INLINE_MAX`` bytes is now hashed where
it completes, if its SHA-1 was not taken as its blocks came (core/runhash; SHA-1 runs
at about 1.6 GB/s: 20 us for 32 KiB, less than the round trip) and, if it passes, is
ours at once: its readers and peers are served from
memory while its write waits. The writes of the pieces verified within
``WRITE_DELAY`` go to one worker thread together (one round trip and, for each data
file, one ``O_DIRECT`` open per batch), or at once when ``BATCH_BYTES`` wait. A
thread round trip costs far more than a timer's wake-up: 250 ms gave ~8 % less CPU
than 50 ms (the HAVE batch's delay, whose timer turn it then shared) in three
8-node clusters run side by side (docs/benchmarks.md, session 7).

Until its write returns, a piece's bytes are in ``Storage.unwritten``, which every
read of the storage looks at first (``Storage.read``, ``nowait.read_nowait``): a
verified piece is readable and uploadable from the moment it is announced. The
resume file never names a piece that is not written yet (``unwritten_excluded``), so
a kill -9 loses at most the pieces of the batch in flight (a quarter of a second's),
which the next run fetches again. A write that fails for a full disk makes room and
is tried once more, as any piece's (``DiskCache``); one that still fails drops its
piece like an eviction (peers were told; their requests are refused). Either turns
write-behind off for the run: later pieces are written before they are announced, as
before. It is only turned on by a first piece written that way: a disk full from the
start fails the reads that wait for its pieces.

Larger pieces (a fast download's MiB pieces) come this way once hashed already
(their SHA-1 taken as their blocks came, core/runhash): else they keep the worker
thread for the hash, which in the trio thread would hold up the receive of the next
blocks. A batch is written while the next one fills; past ``QUEUE_MAX`` bytes waiting
(a disk slower than the swarm) pieces are written before they are announced, as
before, so the download waits for the disk. No piece of a cache with a size limit
(``--cache-size``) comes this way: a piece waiting for its write is pinned, and the
limit would be overrun by the pieces of a batch.
"""

from __future__ import annotations

from typing import Any, Callable

import trio

from torrentfs.core.bitfield import Bitfield

INLINE_MAX = 128 << 10   # pieces up to this size are hashed in the trio thread
WRITE_DELAY = 0.25       # a verified piece waits at most this long for its write
BATCH_BYTES = 16 << 20   # a batch larger than this is written at once
QUEUE_MAX = 64 << 20     # at most this many bytes wait for their write (all batches)


class WriteBehind:
    """The queue of verified pieces waiting for their write (module docstring)."""

    def __init__(self, storage, offload: Callable[..., Any]) -> None:
        self.storage = storage
        self.offload = offload
        self.enabled = False           # on once the disk took a piece (``proven``)
        self.failed = False            # a write failed: off for the run
        self.running = False           # ``run`` is serving the queue
        self._queue: list[tuple] = []  # (index, data, evict, direct, done)
        self._bytes = 0
        self._writing = 0              # bytes of the batch being written
        self._due = trio.Event()       # set while pieces wait
        self._full = trio.Event()      # set when the queue should go now
        self.batches = 0               # written so far (for tests and counters)

    def takes(self, size: int, hashed: bool = False) -> bool:
        """Whether a verified piece of ``size`` bytes goes this way (``hashed``:
        its hash is checked already, so it may be larger than INLINE_MAX)."""
        return (self.enabled and self.running and (size <= INLINE_MAX or hashed)
                and self._bytes + self._writing + size <= QUEUE_MAX)

    def proven(self) -> None:
        """A piece was written the old way: the disk takes our writes (a disk full
        from the start keeps failing the reads that wait, as before)."""
        self.enabled = not self.failed

    def put(self, index: int, data, evict: list[int], direct: bool,
            done: Callable[[OSError | None], None]) -> None:
        """Queue a verified piece (its bytes readable from ``Storage.unwritten`` at
        once); ``done(error)`` runs in the trio thread once it is written (None) or
        has failed. ``evict``: pieces to punch out first (room for this one)."""
        self.storage.unwritten[index] = data
        self._queue.append((index, data, evict, direct, done))
        self._bytes += len(data)
        self._due.set()
        if self._bytes >= BATCH_BYTES:
            self._full.set()

    async def run(self) -> None:
        """Write each batch ``WRITE_DELAY`` after its first piece. Until cancelled."""
        self.running = True
        try:
            while True:
                await self._due.wait()
                with trio.move_on_after(WRITE_DELAY):
                    await self._full.wait()
                self._due = trio.Event()
                self._full = trio.Event()
                await self._write()
        finally:
            self.running = False

    async def drain(self) -> None:
        """Write everything still queued (at exit, before the last resume save)."""
        with trio.CancelScope(shield=True):
            while self._queue:
                await self._write()

    async def _write(self) -> None:
        batch, self._queue, self._writing, self._bytes = self._queue, [], self._bytes, 0
        if not batch:
            return
        # Shielded: the pieces' fate must be known (a cancel would lose the results
        # of writes that happen all the same).
        with trio.CancelScope(shield=True):
            try:
                errors = await self.offload(store_batch, self.storage,
                                            [item[:4] for item in batch])
            finally:
                self._writing = 0
            self.batches += 1
            for (index, _data, _evict, _direct, done), error in zip(batch, errors):
                if error is None:
                    self.storage.unwritten.pop(index, None)  # on disk now
                    await done(None)
                else:
                    self.enabled, self.failed = False, True
                    await done(error)  # (a retry reads it from ``unwritten`` meanwhile)
                    self.storage.unwritten.pop(index, None)


def store_batch(storage, items: list[tuple]) -> list[OSError | None]:
    """Write verified pieces (in a worker thread): for each ``(index, data, evict,
    direct)`` its error, or None once it is on disk. One ``O_DIRECT`` descriptor per
    data file for the whole batch."""
    errors: list[OSError | None] = []
    with storage.direct.kept_open():
        for index, data, evict, direct in items:
            try:
                storage.store(index, data, evict=evict, verify=False, direct=direct)
                errors.append(None)
            except OSError as e:
                errors.append(e)
    return errors


def unwritten_excluded(have: Bitfield, unwritten) -> Bitfield:
    """``have`` without the pieces whose write has not returned yet (what the
    resume file may name)."""
    pending = [i for i in list(unwritten) if i in have]
    if not pending:
        return have
    flags = have.flags()
    for i in pending:
        flags[i] = 0
    return Bitfield.from_flags(bytes(flags), have.size)
