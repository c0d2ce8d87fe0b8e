"""Tests for torrentfs.disk.writeback: small verified pieces hashed in the trio thread
and written in batches, readable from memory until their write returns.

Real files under tmp_path; trio's autojump clock."""

from __future__ import annotations

import errno
import os
from contextlib import asynccontextmanager

import trio
import trio.testing

from tests.disk.test_storage import build, piece, storage_for
from torrentfs.core.bitfield import Bitfield
from torrentfs.disk import direct as direct_mod
from torrentfs.disk import nowait
from torrentfs.disk.cache import DiskCache
from torrentfs.disk.writeback import WRITE_DELAY, WriteBehind, store_batch, unwritten_excluded

PL = 32768


class Owner:
    """What DiskCache needs of its torrent (``CacheOwner``), recorded."""

    def __init__(self, storage) -> None:
        self.storage = storage
        self.geometry = storage.geometry
        self.have = Bitfield(storage.geometry.num_pieces)
        self.gone: list[int] = []

    async def offload(self, fn, *args, limiter=None):
        # In this thread: the autojump clock would not wait for a worker thread.
        await trio.lowlevel.checkpoint()
        return fn(*args)

    def downloading(self, index: int) -> bool:
        return False

    def stop_prefetch(self) -> bool:
        return False

    def piece_on_disk(self, index: int) -> None:
        self.have.add(index)

    def piece_gone(self, index: int) -> None:
        self.gone.append(index)
        self.have.discard(index)

    def remember(self, index: int, data) -> None:
        pass


def setup(tmp_path, pieces: int = 8):
    meta, stream = build("w", pieces * PL, PL)
    st = storage_for(tmp_path / "t", meta)
    st.open()
    return meta, stream, st


@asynccontextmanager
async def running_cache(owner: Owner):
    """A DiskCache of ``owner`` with its write-behind running, and the nursery it runs
    in (cancel it to stop the cache)."""
    cache = DiskCache(owner)
    async with trio.open_nursery() as n:
        n.start_soon(cache.run)
        await trio.testing.wait_all_tasks_blocked()
        assert cache.behind.running
        yield cache, n


def test_a_queued_piece_reads_from_memory_then_from_disk(tmp_path):
    """``Storage.read`` and ``read_nowait`` take a queued piece's bytes from
    ``unwritten``, across piece boundaries, and the disk's once it is written."""
    meta, stream, st = setup(tmp_path)
    g = st.geometry
    st.write_piece(1, piece(stream, g, 1))
    st.unwritten[2] = bytearray(piece(stream, g, 2))
    assert not st.has_data(2)
    assert st.read(PL + 100, 2 * PL - 200) == stream[PL + 100:3 * PL - 100]
    if nowait._State.supported:
        got = nowait.read_nowait(st, PL + 100, 2 * PL - 200)
        assert got is None or bytes(got) == stream[PL + 100:3 * PL - 100]
        assert bytes(nowait.read_nowait(st, 2 * PL + 5, 100)) == stream[2 * PL + 5:2 * PL + 105]
    assert store_batch(st, [(2, st.unwritten[2], [], True)]) == [None]
    del st.unwritten[2]
    assert st.read(2 * PL, PL) == piece(stream, g, 2)
    assert st.check_piece(2) is not None
    st.close()


def test_a_batch_opens_each_file_once(tmp_path, monkeypatch):
    """``store_batch`` writes every piece of a batch through one O_DIRECT descriptor
    per file, closed at its end; a write alone opens and closes its own."""
    meta, stream, st = setup(tmp_path)
    g = st.geometry
    opened, closed = [], []
    real_open, real_close = os.open, os.close

    def counting_open(path, flags, *a):
        fd = real_open(path, flags, *a)
        if flags & direct_mod.O_DIRECT:
            opened.append(fd)
        return fd

    def counting_close(fd):
        if fd in opened:
            closed.append(fd)
        real_close(fd)

    monkeypatch.setattr(direct_mod.os, "open", counting_open)
    monkeypatch.setattr(direct_mod.os, "close", counting_close)
    errors = store_batch(st, [(i, piece(stream, g, i), [], True) for i in range(4)])
    assert errors == [None] * 4
    if st.direct.enabled:  # (a filesystem without O_DIRECT writes them buffered)
        assert len(opened) == 1 and closed == opened
    for i in range(4):
        assert st.check_piece(i) is not None
    st.close()


def test_resume_never_names_an_unwritten_piece(tmp_path):
    have = Bitfield(8)
    for i in (0, 2, 5):
        have.add(i)
    assert unwritten_excluded(have, {}) is have
    left = unwritten_excluded(have, {2: b"", 7: b""})
    assert list(left) == [0, 5] and list(have) == [0, 2, 5]


async def test_pieces_verified_together_are_written_in_one_batch(tmp_path, autojump_clock):
    """Once the disk has taken a piece, small pieces are trusted at once (readable
    from memory) and written together WRITE_DELAY later; a bad one is refused
    inline; the resume file names only written pieces; ``drain`` writes the rest."""
    meta, stream, st = setup(tmp_path)
    g = st.geometry
    owner = Owner(st)
    async with running_cache(owner) as (cache, n):
        assert await cache.store(0, bytearray(piece(stream, g, 0)))  # the old way
        owner.piece_on_disk(0)
        assert st.has_data(0) and cache.behind.batches == 0
        t0 = trio.current_time()
        for i in (1, 2, 3):
            assert await cache.store(i, bytearray(piece(stream, g, i)))
            owner.piece_on_disk(i)
        assert trio.current_time() == t0  # no wait for the hash or the write
        assert not await cache.store(4, bytearray(PL))  # fails its hash, at once
        assert set(st.unwritten) == {1, 2, 3} and not st.has_data(1)
        assert {1, 2, 3} <= cache.trusted
        assert st.read(PL, 3 * PL) == stream[PL:4 * PL]
        await cache.save()  # (offload here runs in this thread: nothing written meanwhile)
        assert list(st.load_resume()) == [0] and set(st.unwritten) == {1, 2, 3}
        await trio.sleep(WRITE_DELAY * 2)
        assert cache.behind.batches == 1 and not st.unwritten
        assert all(st.check_piece(i) is not None for i in (1, 2, 3))
        assert await cache.store(5, bytearray(piece(stream, g, 5)))
        n.cancel_scope.cancel()
    assert set(st.unwritten) == {5}
    await cache.drain()
    assert not st.unwritten and st.check_piece(5) is not None
    st.close()


async def test_a_failed_write_drops_the_piece_and_turns_it_off(tmp_path, autojump_clock,
                                                               monkeypatch, caplog):
    meta, stream, st = setup(tmp_path)
    g = st.geometry
    owner = Owner(st)
    async with running_cache(owner) as (cache, n):
        assert await cache.store(0, bytearray(piece(stream, g, 0)))
        real = st.write_piece

        def broken(index, data, direct=True):
            if index == 1:
                raise OSError(errno.EIO, "Input/output error")
            real(index, data, direct)

        monkeypatch.setattr(st, "write_piece", broken)
        assert await cache.store(1, bytearray(piece(stream, g, 1)))
        owner.piece_on_disk(1)
        await trio.sleep(WRITE_DELAY * 2)
        assert owner.gone == [1] and 1 not in owner.have and 1 not in cache.trusted
        assert not st.unwritten and not st.has_data(1)
        assert "cannot write piece 1" in caplog.text
        assert not cache.behind.takes(PL)  # later pieces: written before they are ours
        assert await cache.store(2, bytearray(piece(stream, g, 2)))
        assert st.has_data(2) and not st.unwritten
        n.cancel_scope.cancel()
    st.close()


def test_large_pieces_keep_the_worker_thread_unless_hashed(tmp_path):
    """Only small pieces are hashed in the trio thread; a large one comes this way
    only with its hash checked already (core/runhash)."""
    meta, stream, st = setup(tmp_path)
    wb = WriteBehind(st, trio.to_thread.run_sync)
    wb.running = True
    wb.proven()
    assert wb.takes(PL) and not wb.takes(1 << 20)
    assert wb.takes(1 << 20, hashed=True)
    st.close()


def test_past_queue_max_pieces_wait_for_the_disk(tmp_path, monkeypatch):
    """Bytes queued and bytes being written count against QUEUE_MAX: a disk slower
    than the swarm makes the download wait for it, not memory grow."""
    from torrentfs.disk import writeback
    monkeypatch.setattr(writeback, "QUEUE_MAX", 3 * PL)
    meta, stream, st = setup(tmp_path)
    wb = WriteBehind(st, trio.to_thread.run_sync)
    wb.running = True
    wb.proven()
    done = []

    async def note(error):
        done.append(error)

    for i in range(2):
        wb.put(i, bytearray(piece(stream, st.geometry, i)), [], True, note)
    assert wb.takes(PL) and not wb.takes(2 * PL, hashed=True)
    wb.put(2, bytearray(piece(stream, st.geometry, 2)), [], True, note)
    assert not wb.takes(PL)
    written = []

    async def slow_offload(fn, *args):
        assert not wb.takes(PL)  # the batch in the write still counts
        written.append(len(args[1]))
        return fn(*args)

    wb.offload = slow_offload
    trio.run(wb._write)
    assert written == [3] and done == [None] * 3 and wb.takes(3 * PL)
    assert all(st.has_data(i) for i in range(3))
    st.close()
