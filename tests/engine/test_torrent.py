"""The torrent shell (swarm, reads, verification) against scripted fake peers over
in-memory streams, on trio's autojump clock: no sockets, no real waiting."""

from __future__ import annotations

import errno
import os

import pytest
import trio

from tests.harness.fakepeer import Behaviour, Swarm, start
from torrentfs.core.picker import READAHEAD
from torrentfs.disk.storage import StorageError
from torrentfs.engine.reads import ReadTimeout


async def test_read_gets_exact_bytes_from_several_peers(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm)
        a, b = s.add(), s.add()
        data = await s.torrent.read(0, 0, len(s.payload))
        assert data == s.payload
        assert a.sent_bytes > 0 and b.sent_bytes > 0  # blocks spread over both
        n.cancel_scope.cancel()


async def test_read_waits_only_for_what_it_needs(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=40 * 32768)
        peer = s.add()
        off = 20 * 32768 + 5
        assert await s.torrent.read(0, off, 100) == s.payload[off:off + 100]
        pieces = {i for i, _, _ in peer.requests}
        assert 20 in pieces
        assert len(pieces) <= 2  # no handle: no readahead, no prefetch
        n.cancel_scope.cancel()


async def test_stalled_peer_is_routed_around(make_swarm, autojump_clock):
    """A peer that swallows requests cannot hold a read: its late blocks are asked
    of the other peer, and the stalled requests are cancelled."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm)
        stalled = s.add(Behaviour(answer=False))
        await trio.sleep(0.01)
        good = s.add()
        t0 = trio.current_time()
        assert await s.torrent.read(0, 0, 32768) == s.payload[:32768]
        assert trio.current_time() - t0 < 3
        assert stalled.requests, "the stalled peer was asked first"
        assert good.sent_bytes >= 32768
        await trio.sleep(0.001)
        # Every request of the stalled peer for that piece was cancelled.
        assert set(stalled.cancels) == {r for r in stalled.requests if r[0] == 0}
        assert stalled.cancels
        n.cancel_scope.cancel()


async def test_corrupt_data_never_returned(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, read_timeout=30)
        liar = s.add(Behaviour(corrupt=set(range(11))))
        with pytest.raises(ReadTimeout):
            await s.torrent.read(0, 0, 32768)
        assert liar.closed, "a peer that keeps sending bad pieces is dropped"
        assert s.torrent.have.count == 0
        good = s.add()
        assert await s.torrent.read(0, 0, 32768) == s.payload[:32768]
        assert good.sent_bytes >= 32768
        n.cancel_scope.cancel()


async def test_a_pieces_sha1_is_taken_as_its_blocks_come(make_swarm, autojump_clock,
                                                          monkeypatch):
    """No piece of a v1 torrent is hashed whole after its last block (core/runhash):
    the storage is only asked to write it; a piece whose running hash does not match
    is still refused, and its peer dropped."""
    from torrentfs.disk.storage import Storage
    hashed_whole = []
    real_verify = Storage.verify
    monkeypatch.setattr(Storage, "verify", lambda self, i, data: (
        hashed_whole.append(i), real_verify(self, i, data))[1])
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=20 * 32768 + 100, read_timeout=30)
        t = s.torrent
        liar = s.add(Behaviour(corrupt=set(range(21))))
        with pytest.raises(ReadTimeout):
            await t.read(0, 0, 32768)
        assert liar.closed and t.have.count == 0
        s.add()
        assert await t.read(0, 0, len(s.payload)) == s.payload
        assert t.have.count == 21 and hashed_whole == []
        assert not t._hashing  # each dropped with its piece's buffer
        n.cancel_scope.cancel()


async def test_large_pieces_hashed_as_they_came_are_written_behind(make_swarm,
                                                                  autojump_clock,
                                                                  monkeypatch):
    """Pieces larger than write-behind hashes itself (256 KiB here) go to it once
    their running SHA-1 matched: written in batches, ours before their write; only
    the first piece (which proves the disk takes our writes) is written alone."""
    from torrentfs.disk.cache import DiskCache
    from torrentfs.disk.writeback import INLINE_MAX
    alone = []
    real_store = DiskCache._store

    async def store(self, index, *args, **kw):
        alone.append(index)
        return await real_store(self, index, *args, **kw)

    monkeypatch.setattr(DiskCache, "_store", store)
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=6 * (256 << 10) + 100, piece_length=256 << 10)
        t = s.torrent
        assert t.geometry.piece_length > INLINE_MAX
        s.add()
        assert await t.read(0, 0, 256 << 10) == s.payload[:256 << 10]  # proves the disk
        assert alone == [0]
        assert await t.read(0, 0, len(s.payload)) == s.payload
        await trio.sleep(1)
        assert alone == [0] and t.cache.behind.batches >= 1 and not t.storage.unwritten
        assert all(t.storage.has_data(i) for i in range(t.geometry.num_pieces))
        n.cancel_scope.cancel()


async def test_read_timeout_without_peers(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, read_timeout=20)
        t0 = trio.current_time()
        with pytest.raises(ReadTimeout, match="no progress for 20 s"):
            await s.torrent.read(0, 0, 10)
        assert 20 <= trio.current_time() - t0 < 21
        n.cancel_scope.cancel()


async def test_readahead_grows_and_close_undoes_it(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=400 * 32768)
        t = s.torrent
        h = t.open_handle(0)
        assert t.picker.waiting() == []  # opening alone asks for nothing
        # A first read at the file's start raises the first and last pieces.
        h.advance(0, 65536)
        first = {i for i, tier, _ in t.picker.waiting() if tier == READAHEAD}
        assert {0, 399} <= first  # the window moving on keeps the first and last
        h.advance(65536, 65536)
        h.advance(131072, 65536)
        grown = {i for i, tier, _ in t.picker.waiting() if tier == READAHEAD}
        assert max(grown - {399}) > max(first - {399})  # contiguous reads grew the window
        h.advance(300 * 32768, 100)  # a seek: the window restarts there
        after = {i for i, tier, _ in t.picker.waiting() if tier == READAHEAD}
        assert min(after - {0, 399}) >= 300
        assert len(after - {0, 399}) <= len(first - {0, 399}) + 1
        h.close()
        assert t.picker.waiting() == []
        n.cancel_scope.cancel()


async def test_a_files_first_read_is_asked_alone(make_swarm, autojump_clock):
    """A fresh file's first read waits for its own pieces alone: at the file's
    start, its readahead and the last piece are asked once they are in; in the
    middle (a random reader, maybe), nothing more is asked until a read continues
    it."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=400 * 32768)
        t = s.torrent
        peer = s.add(Behaviour(delay=0.5))
        h = t.open_handle(0)
        got = []

        async def first_read() -> None:
            got.append(await t.read(0, 0, 1000, h))
        async with trio.open_nursery() as reading:
            reading.start_soon(first_read)
            await trio.sleep(0.25)  # the read waits: only its piece is asked
            assert {i for i, _, _ in peer.requests} == {0}
            assert {i for i, *_ in t.picker.waiting()} == {0}
        assert got == [s.payload[:1000]]
        ahead = {i for i, tier, _ in t.picker.waiting() if tier == READAHEAD}
        assert 399 in ahead and 1 in ahead  # after it: the last piece, the window
        h.close()
        await trio.sleep(1)
        peer.requests.clear()
        h = t.open_handle(0)
        off = 200 * 32768 + 5
        assert await t.read(0, off, 1000, h) == s.payload[off:off + 1000]
        await trio.sleep(1)
        assert {i for i, _, _ in peer.requests} == {200}
        assert t.picker.waiting() == []
        assert await t.read(0, off + 1000, 1000, h) == s.payload[off + 1000:off + 2000]
        assert 201 in {i for i, tier, _ in t.picker.waiting() if tier == READAHEAD}
        h.close()
        n.cancel_scope.cancel()


async def test_a_fast_first_read_reads_ahead_at_the_readers_pace(make_swarm, autojump_clock):
    """A file's first read answered fast (a fast swarm) restarts its window at twice
    its size, and each read that continues doubles it: a program that reads a few
    hundred KiB (ffprobe) does not share the CPU with a download of megabytes it
    will not read. A slow one keeps the full window (the test above)."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=400 * 32768)
        t = s.torrent
        s.add(Behaviour(delay=0.001))
        h = t.open_handle(0)
        await trio.sleep(1)  # connected
        assert await t.read(0, 0, 32768, h) == s.payload[:32768]

        def ahead() -> set[int]:
            return {i for i, tier, _ in t.picker.waiting() if tier == READAHEAD} - {399}
        assert ahead() == {1, 2}  # 64 KiB past the read, not READAHEAD_MIN
        assert await t.read(0, 32768, 32768, h) == s.payload[32768:65536]
        assert max((ahead() | set(t.have)) - {399}) == 5  # doubled: 128 KiB past it
        h.close()
        n.cancel_scope.cancel()
    # The same read on a slow swarm gets the full window (READAHEAD_MIN: 2 MiB).
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=400 * 32768)
        t = s.torrent
        s.add(Behaviour(delay=0.5))
        h = t.open_handle(0)
        assert await t.read(0, 0, 32768, h) == s.payload[:32768]
        assert max(ahead()) == 64
        h.close()
        n.cancel_scope.cancel()


async def test_a_piece_a_lone_read_waits_on_is_written_through_the_page_cache(
        make_swarm, autojump_clock, monkeypatch):
    """A file's first read and a seek wait alone for their pieces: those are written
    through the page cache (it returns sooner than O_DIRECT); the readahead's are
    written past it, as every piece was."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=400 * 32768)
        t = s.torrent
        real = t.storage.write_piece
        direct: dict[int, bool] = {}

        def write_piece(index, data, how=True):
            direct[index] = how
            real(index, data, how)
        monkeypatch.setattr(t.storage, "write_piece", write_piece)
        s.add(Behaviour(delay=0.5))
        h = t.open_handle(0)
        assert await t.read(0, 0, 1000, h) == s.payload[:1000]
        assert await t.read(0, 1000, 1000, h) == s.payload[1000:2000]
        off = 200 * 32768
        assert await t.read(0, off, 1000, h) == s.payload[off:off + 1000]  # a seek
        await trio.sleep(5)
        assert direct[0] is False and direct[200] is False
        assert direct[399] is True and direct[201] is True  # the last piece, the window
        assert not t.reads._alone
        h.close()
        n.cancel_scope.cancel()


async def test_a_seek_that_waits_is_asked_alone(make_swarm, autojump_clock):
    """A read that jumps away (a player seeking) and has to wait drops the old
    place's window at once and waits for its own pieces alone: its new window is
    asked once they are in (on a fast link the read would otherwise wait for the
    window's blocks arriving beside its own)."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=400 * 32768)
        t = s.torrent
        s.add(Behaviour(delay=0.5))
        h = t.open_handle(0)
        assert await t.read(0, 0, 1000, h) == s.payload[:1000]
        assert await t.read(0, 1000, 1000, h) == s.payload[1000:2000]
        assert 1 in {i for i, tier, _ in t.picker.waiting() if tier == READAHEAD}
        got = []
        off = 200 * 32768 + 5

        async def seek_read() -> None:
            got.append(await t.read(0, off, 1000, h))
        async with trio.open_nursery() as reading:
            reading.start_soon(seek_read)
            await trio.sleep(0.25)  # the read waits: only its piece is wanted (and
            # the last piece, asked after the first read, kept until the close)
            assert {i for i, *_ in t.picker.waiting()} == {200, 399}
        assert got == [s.payload[off:off + 1000]]
        ahead = {i for i, tier, _ in t.picker.waiting() if tier == READAHEAD}
        assert 201 in ahead and 1 not in ahead  # after it: the new window only
        h.close()
        n.cancel_scope.cancel()


async def test_two_handles_undo_only_their_own(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=400 * 32768)
        t = s.torrent
        h1, h2 = t.open_handle(0), t.open_handle(0)
        h1.advance(0, 32768)
        h2.advance(0, 32768)
        before = t.picker.waiting()
        h1.close()
        assert {i for i, *_ in t.picker.waiting()} == {i for i, *_ in before}
        h2.close()
        assert t.picker.waiting() == []
        n.cancel_scope.cancel()


async def test_peer_breaking_the_protocol_mid_stream_only_loses_itself(make_swarm,
                                                                       autojump_clock):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, read_timeout=30)
        rogue = s.add(Behaviour(garbage_after=3))
        good = s.add()
        assert await s.torrent.read(0, 0, len(s.payload)) == s.payload
        assert rogue.requests and good.sent_bytes
        await trio.sleep(1)
        # The rogue was dropped for its oversized message; the torrent lives on.
        assert [p.addr for p in s.torrent.sessions.values()] == [("fake2", 6881)]
        n.cancel_scope.cancel()


# -- the disk cache: crash leftovers, damaged pieces, a size limit, a full disk ------

def prefill(tmp_path, meta, payload, pieces, resume=()):
    """Write ``pieces`` into the cache as an earlier run would have, with a resume
    file naming only ``resume`` (a kill -9 before the rest were recorded)."""
    from torrentfs.core.bitfield import Bitfield
    from torrentfs.core.geometry import Geometry
    from torrentfs.disk.storage import Storage
    g = Geometry(meta.piece_length, tuple(f.length for f in meta.files))
    st = Storage(tmp_path / "cache", meta, g)
    st.open()
    for i in pieces:
        off = g.piece_offset(i)
        assert st.verify_and_write(i, payload[off:off + g.piece_size(i)])
    recorded = Bitfield(g.num_pieces)
    for i in resume:
        recorded.add(i)
    st.save_resume(recorded)
    st.close()
    return st


async def test_pieces_written_but_not_recorded_are_not_fetched_again(make_swarm,
                                                                     autojump_clock, caplog):
    caplog.set_level("INFO")
    meta, payload, torrent = make_swarm()
    prefill(torrent.storage.folder.parent, meta, payload, range(6), resume=[0, 1])
    async with trio.open_nursery() as n:
        await n.start(torrent.run)
        s = Swarm(n, torrent, meta, payload)
        peer = s.add()
        assert await torrent.read(0, 0, len(payload)) == payload
        assert {i for i, _, _ in peer.requests} == set(range(6, meta.num_pieces))
        assert torrent.cache.recovered == 4
        n.cancel_scope.cancel()
    torrent.storage.open()
    assert torrent.storage.load_resume().count == meta.num_pieces
    torrent.storage.close()
    assert "recovered 4 of 4 unrecorded pieces" in caplog.text


async def test_a_read_checks_an_unrecorded_piece_before_fetching_it(make_swarm,
                                                                    autojump_clock):
    """The background check has not reached the piece yet: the read checks it."""
    meta, payload, torrent = make_swarm(size=40 * 32768)
    prefill(torrent.storage.folder.parent, meta, payload, [0, 39])
    async with trio.open_nursery() as n:
        await n.start(torrent.run)
        s = Swarm(n, torrent, meta, payload)
        peer = s.add()
        off = 39 * 32768
        assert await torrent.read(0, off, 32768) == payload[off:]
        assert 39 not in {i for i, _, _ in peer.requests}
        n.cancel_scope.cancel()


async def test_damaged_cached_piece_is_dropped_and_fetched_again(make_swarm,
                                                                  autojump_clock, caplog):
    meta, payload, torrent = make_swarm()
    st = prefill(torrent.storage.folder.parent, meta, payload, range(4), resume=range(4))
    with open(st.paths[0], "r+b") as f:  # bit rot, or a hand that edited the cache
        f.seek(2 * 32768 + 7)
        f.write(b"\xde\xad")
    async with trio.open_nursery() as n:
        await n.start(torrent.run)
        assert torrent.have.count == 4  # trusted at start, checked on first read
        s = Swarm(n, torrent, meta, payload)
        peer = s.add()
        assert await torrent.read(0, 0, 4 * 32768) == payload[:4 * 32768]
        assert {i for i, _, _ in peer.requests} == {2}
        n.cancel_scope.cancel()
    assert "piece 2: the cached copy failed its hash check" in caplog.text
    st.open()
    assert st.check_piece(2) == payload[2 * 32768:3 * 32768]
    st.close()


async def test_cache_size_limit_streams_a_bigger_torrent(make_swarm, autojump_clock):
    """A 64-piece file read through a 6-piece cache: exact bytes; the books and the
    disk never hold more than the limit; evicted pieces leave have and resume."""
    limit = 6 * 32768
    meta, payload, torrent = make_swarm(size=64 * 32768, cache_size=limit)
    path = torrent.storage.paths[0]
    async with trio.open_nursery() as n:
        await n.start(torrent.run)
        s = Swarm(n, torrent, meta, payload)
        s.add()
        h = torrent.open_handle(0)
        peak = 0
        for off in range(0, len(payload), 16384):
            assert await torrent.read(0, off, 16384, h) == payload[off:off + 16384]
            assert torrent.cache.books.used <= limit
            peak = max(peak, os.stat(path).st_blocks * 512)
        h.close()
        assert peak <= limit + 8192
        assert torrent.have.count <= 6 and torrent.cache.evicted >= 58
        # Evicted pieces are fetched again when read again.
        assert await torrent.read(0, 0, 100) == payload[:100]
        n.cancel_scope.cancel()
    torrent.storage.open()
    assert 0 < torrent.storage.load_resume().count <= 6
    torrent.storage.close()


async def test_upload_of_an_evicted_piece_is_refused(make_swarm, autojump_clock):
    meta, payload, torrent = make_swarm(size=16 * 32768, cache_size=2 * 32768)
    async with trio.open_nursery() as n:
        await n.start(torrent.run)
        Swarm(n, torrent, meta, payload).add()
        for i in range(4):
            await torrent.read(0, i * 32768, 32768)
        assert 0 not in torrent.have
        with pytest.raises(StorageError):
            await torrent.block(0, 0, 16384)
        torrent.reads.recent.clear()
        assert await torrent.block(3, 0, 16384) == payload[3 * 32768:3 * 32768 + 16384]
        # The rest of the piece comes from the chunk that read kept ...
        assert torrent.reads.upload_chunks.get(3, 16384, 16384) is not None
        assert await torrent.block(3, 16384, 16384) == payload[3 * 32768 + 16384:4 * 32768]
        # ... until the piece leaves the cache.
        torrent.piece_gone(3)
        assert torrent.reads.upload_chunks.get(3, 16384, 16384) is None
        n.cancel_scope.cancel()


async def test_block_now_only_from_memory_or_the_page_cache_of_checked_pieces(
        make_swarm, autojump_clock, monkeypatch):
    """``block_now`` (an upload's block without waiting): from memory, or read
    from the page cache in the trio thread, but only of a piece in ``have`` already
    checked on disk in this run; anything else is None (``block`` does the rest)."""
    from torrentfs.disk import nowait
    monkeypatch.setattr(nowait._State, "supported", nowait.RWF_NOWAIT is not None)
    meta, payload, torrent = make_swarm(size=8 * 32768)
    async with trio.open_nursery() as n:
        await n.start(torrent.run)
        Swarm(n, torrent, meta, payload).add()
        await torrent.read(0, 0, 2 * 32768)
        block = payload[2 * 32768 + 16384:3 * 32768]
        await torrent.read(0, 2 * 32768, 100)  # piece 2 stays in memory (not read to its end)
        assert bytes(torrent.block_now(2, 16384, 16384)) == block
        assert torrent.reads.upload_chunks.get(2, 16384, 16384) is None  # memory's
        torrent.reads.recent.clear()
        torrent.cache.trusted.discard(2)  # as if resumed, not yet checked
        assert torrent.block_now(2, 16384, 16384) is None
        assert await torrent.block(2, 16384, 16384) == block  # checks it first
        torrent.reads.upload_chunks.forget(2)
        if nowait._State.supported:  # just written and read: in the page cache
            assert bytes(torrent.block_now(2, 16384, 16384)) == block
            assert torrent.reads.upload_chunks.get(2, 0, 16384) is not None
        assert torrent.block_now(5, 0, 16384) is None  # not here
        torrent.piece_gone(2)
        assert torrent.block_now(2, 16384, 16384) is None
        n.cancel_scope.cancel()


async def test_full_disk_evicts_then_fails_reads_cleanly(make_swarm, autojump_clock,
                                                         monkeypatch):
    """ENOSPC: the cache makes room by evicting what was read, and when there is
    nothing to evict the read fails with ENOSPC at once; nothing half-written stays."""
    meta, payload, torrent = make_swarm()
    st = torrent.storage
    real = st.write_piece
    room = {"pieces": 3}

    def write_piece(index, data, direct=True):
        on_disk = sum(st.has_data(i) for i in range(meta.num_pieces))
        if on_disk >= room["pieces"]:
            g = st.geometry  # a partial write, then the disk is full
            with st.pool.use(0, create=True) as fd:
                os.pwrite(fd, bytes(data[:100]), g.piece_offset(index))
            raise OSError(errno.ENOSPC, "No space left on device")
        real(index, data, direct)

    monkeypatch.setattr(st, "write_piece", write_piece)
    async with trio.open_nursery() as n:
        await n.start(torrent.run)
        Swarm(n, torrent, meta, payload).add()
        for i in range(6):  # each read evicts an older piece to make room
            off = i * 32768
            assert await torrent.read(0, off, 32768) == payload[off:off + 32768]
        await torrent.cache.drain()  # the writes verified pieces wait for (writeback)
        assert torrent.cache.evicted >= 3
        room["pieces"] = 0  # something else filled the disk
        t0 = trio.current_time()
        with torrent.cache.pinned(range(meta.num_pieces)):  # nothing may be evicted
            with pytest.raises(OSError) as e:
                await torrent.read(0, 8 * 32768, 10)
        assert e.value.errno == errno.ENOSPC
        assert trio.current_time() - t0 < 5
        assert not st.has_data(8)
        room["pieces"] = 100  # space again: the mount goes on
        assert await torrent.read(0, 8 * 32768, 10) == payload[8 * 32768:8 * 32768 + 10]
        for i in torrent.have:
            assert st.check_piece(i) is not None
        n.cancel_scope.cancel()


async def test_read_timeout_says_why(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, read_timeout=5)
        with pytest.raises(ReadTimeout, match="piece 0: no peers connected"):
            await s.torrent.read(0, 0, 10)
        s.add(Behaviour(have={1}))
        await trio.sleep(1)
        with pytest.raises(ReadTimeout, match="piece 0: none of the 1 peers connected has it"):
            await s.torrent.read(0, 0, 10)
        s.add(Behaviour(have={0}, answer=False))
        await trio.sleep(1)
        with pytest.raises(ReadTimeout, match="piece 0: 1 of 2 peers connected have it, "
                                              "1 of them unchoked us"):
            await s.torrent.read(0, 0, 10)
        n.cancel_scope.cancel()


async def test_a_piece_being_written_is_never_picked_to_make_room(make_swarm, autojump_clock):
    """Writes run in worker threads, so several stores overlap: one making room must
    not evict a piece another is still writing (its fresh bytes would be punched out
    while it is trusted and served from disk: zeros)."""
    meta, payload, torrent = make_swarm(size=8 * 32768, cache_size=2 * 32768)

    async def slow(fn, *args, limiter=None):  # a worker thread that takes a while
        await trio.sleep(1)
        return fn(*args)

    torrent.offload = slow
    await trio.to_thread.run_sync(torrent.storage.open)
    pieces = [payload[i * 32768:(i + 1) * 32768] for i in range(3)]
    async with trio.open_nursery() as n:
        for i, data in enumerate(pieces):
            n.start_soon(torrent.cache.store, i, data)
            await trio.sleep(0.1)
    for i in torrent.cache.trusted:
        assert torrent.storage.check_piece(i) is not None, f"piece {i} was punched out"
