"""A piece a read waits on alone is hashed in trio and the read answered from memory
before the piece's write (``Reads.verified``; issue 13, ffprobe's first read)."""

from __future__ import annotations

import errno

import trio
import trio.testing

from tests.harness.fakepeer import Behaviour, start


def no_write_behind(monkeypatch, t) -> None:
    """Every piece written through a worker thread, as pieces write-behind does not
    take are (disk/writeback.py: a full queue, a cache with a size limit), whatever
    piece is written first: the path these tests are about. A piece written behind
    is trusted and readable from ``Storage.unwritten`` at once, which
    tests/disk/test_writeback.py covers."""
    monkeypatch.setattr(t.cache.behind, "takes", lambda size, hashed=False: False)


def hold_writes(monkeypatch, t, pieces: set[int]) -> trio.Event:
    """Storage work in the trio thread (as ``fakepeer.inline``), but the store of
    ``pieces`` waits until the returned event is set: a write still under way."""
    let_go = trio.Event()

    async def offload(fn, *args, limiter=None):
        store = getattr(fn, "func", None) == t.storage.store
        if store and fn.args[0] in pieces:
            await let_go.wait()
        return fn(*args)
    monkeypatch.setattr(t, "offload", offload)
    return let_go


async def test_a_lone_read_is_answered_before_its_piece_is_written(
        make_swarm, autojump_clock, monkeypatch):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=400 * 32768)
        t = s.torrent
        no_write_behind(monkeypatch, t)
        let_go = hold_writes(monkeypatch, t, {0})
        s.add()
        h = t.open_handle(0)
        with trio.fail_after(30):  # (the write never ends until let go)
            assert await t.read(0, 0, 1000, h) == s.payload[:1000]  # a first read: alone
        assert 0 not in t.have and t.reads._in_memory == {0}  # still being written
        let_go.set()
        with trio.fail_after(5):
            while 0 not in t.have:
                await trio.sleep(0.01)
        assert not t.reads._in_memory
        assert await t.read(0, 1000, 1000, h) == s.payload[1000:2000]
        h.close()
        n.cancel_scope.cancel()


async def test_a_lone_read_never_gets_a_piece_that_fails_its_hash(
        make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=40 * 32768, read_timeout=30)
        t = s.torrent
        liar = s.add(Behaviour(corrupt={0}))
        h = t.open_handle(0)
        got = []
        async with trio.open_nursery() as reads:
            async def read() -> None:
                got.append(await t.read(0, 0, 1000, h))
            reads.start_soon(read)
            await trio.sleep(1)
            assert not got and liar.sent_bytes  # its piece failed: nothing returned
            s.add()
        assert got == [s.payload[:1000]]
        assert not t.reads._in_memory
        h.close()
        n.cancel_scope.cancel()


async def test_a_read_beyond_memory_waits_for_the_write(make_swarm, autojump_clock,
                                                        monkeypatch):
    """A read that also needs a piece on disk and not in memory is not answered
    from memory: it waits for the write of the piece verified in memory."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=40 * 32768)
        t = s.torrent
        no_write_behind(monkeypatch, t)
        s.add()
        assert await t.read(0, 0, 1000) == s.payload[:1000]  # piece 0 on disk
        t.reads.recent.clear()  # ... and not in memory
        let_go = hold_writes(monkeypatch, t, {1})

        async def write_later() -> None:
            await trio.sleep(1)
            let_go.set()
        n.start_soon(write_later)
        h = t.open_handle(0)
        h.advance(0, 1000)  # not fresh: the next read is a seek, alone
        off = 32768 - 500
        t0 = trio.current_time()
        data = await t.read(0, off, 1000, h)  # pieces 0 (disk) and 1 (in memory)
        assert data == s.payload[off:off + 1000]
        assert trio.current_time() - t0 >= 1 and 1 in t.have
        h.close()
        n.cancel_scope.cancel()


async def test_a_failed_write_after_the_answer_leaves_nothing_in_memory(
        make_swarm, autojump_clock, monkeypatch):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=40 * 32768, read_timeout=5)
        t = s.torrent
        no_write_behind(monkeypatch, t)
        let_go = trio.Event()
        attempts = []

        async def offload(fn, *args, limiter=None):
            if getattr(fn, "func", None) == t.storage.store and fn.args[0] == 0:
                attempts.append(fn)
                if len(attempts) == 1:
                    await let_go.wait()
                else:  # the piece fetched again (the file's edge): left under way
                    await trio.sleep_forever()
            return fn(*args)
        monkeypatch.setattr(t, "offload", offload)

        real = t.storage.write_piece

        def write_piece(index, data, how=True):
            if index == 0:
                raise OSError(errno.EIO, "no")
            real(index, data, how)
        monkeypatch.setattr(t.storage, "write_piece", write_piece)
        s.add()
        h = t.open_handle(0)
        assert await t.read(0, 0, 1000, h) == s.payload[:1000]  # verified, in memory
        let_go.set()
        await trio.testing.wait_all_tasks_blocked()
        assert 0 not in t.have and not t.reads._in_memory
        assert t.reads.recent.block(0, 0, 10) is None  # not on disk: not answered
        h.close()
        n.cancel_scope.cancel()


async def test_no_answer_before_the_write_where_the_disk_has_no_room(
        make_swarm, autojump_clock, monkeypatch):
    """On a full disk the reads waiting on a piece fail with ENOSPC (disk/cache.py):
    none is answered from memory first, to fail only on the next read."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=400 * 32768)
        t = s.torrent
        no_write_behind(monkeypatch, t)
        monkeypatch.setattr(t.cache, "room_for", lambda size: False)
        let_go = hold_writes(monkeypatch, t, {0})
        s.add()
        h = t.open_handle(0)
        got = []

        async def read() -> None:
            got.append(await t.read(0, 0, 1000, h))
        n.start_soon(read)
        await trio.sleep(5)
        assert not got and not t.reads._in_memory  # verified, but waits for its write
        let_go.set()
        with trio.fail_after(5):
            while not got:
                await trio.sleep(0.01)
        assert got == [s.payload[:1000]] and 0 in t.have
        h.close()
        n.cancel_scope.cancel()
