"""fs.pagecache: a listed video's head-start pieces that came quickly are handed to
the kernel's page cache (pyfuse3.notify_store, faked here), whole pages of the
video only, each piece once, in a worker thread; a piece a read brought, or a head
start on a slow swarm, is not; a multi-torrent mount's torrents share one. Fake
peers over memory streams, trio's autojump clock."""

from __future__ import annotations

import threading

import pyfuse3
import trio

from tests.engine.test_early_reads import hold_writes, no_write_behind
from tests.harness.fakepeer import Behaviour, inline, quiet, small_tree_torrent, start
from torrentfs.core.geometry import Geometry
from torrentfs.core.tree import Tree
from torrentfs.engine.torrent import Torrent
from torrentfs.fs.fuse import TorrentFS
from torrentfs.fs.pagecache import PAGE, PageCacheFill, Store, page_stores

PIECE = 32768


def test_only_whole_pages_of_the_listed_files_are_stored():
    # files: 5000 bytes (not listed), the video (70000), 3000 bytes (not listed)
    g = Geometry(PIECE, (5000, 70000, 3000))
    assert page_stores(g, 0, {1}) == [Store(1, 0, 5000, PAGE * 6)]  # 27768 -> 6 pages
    # piece 1 lies inside the video, from its byte 27768 (not a page boundary)
    start = 7 * PAGE
    assert page_stores(g, 1, {1}) == [Store(1, start, start - 27768,
                                           (27768 + PIECE) // PAGE * PAGE - start)]
    # piece 2 holds the video's end (kept whole: the kernel takes a partial last page)
    # and the third file, not listed
    start = -(-(2 * PIECE - 5000) // PAGE) * PAGE
    assert page_stores(g, 2, {1}) == [Store(1, start, start - (2 * PIECE - 5000),
                                           70000 - start)]
    assert page_stores(g, 2, {0}) == []
    assert page_stores(Geometry(PIECE, (100,)), 0, {0}) == [Store(0, 0, 0, 100)]


def wire(t, meta, nursery, monkeypatch):
    """A TorrentFS over ``t`` whose stores are recorded: (inode, offset, bytes, run
    through the stores' own one-thread limiter?). They run inline: the autojump
    clock would jump past a worker thread."""
    fs = TorrentFS(t, Tree.from_metainfo(meta))
    stored = []
    fill = fs.page_cache

    def store(inode, offset, data):
        stored.append((inode, offset, bytes(data), fill.limiter.borrowed_tokens == 1))

    async def run_sync(fn, *args, limiter):
        async with limiter:
            return fn(*args)
    fill.store, fill.run_sync = store, run_sync
    nursery.start_soon(fill.run)
    monkeypatch.setattr(pyfuse3, "trio_token", trio.lowlevel.current_trio_token())
    monkeypatch.setattr(pyfuse3, "invalidate_inode", lambda *a, **k: None)
    return fs, stored


async def test_quick_head_start_pieces_go_to_the_page_cache(make_swarm, autojump_clock,
                                                            monkeypatch):
    async with trio.open_nursery() as n:
        size = 400 * PIECE + 1000  # the last piece short: the file's end
        s = await start(n, make_swarm, size=size)
        t = s.torrent
        fs, stored = wire(t, s.meta, n, monkeypatch)
        s.add(Behaviour(delay=0.001))
        await trio.sleep(1)
        # a piece a read brings is the read's (answered by us), even of a listed video
        fs.page_cache.listed(t, [0])
        assert await t.read(0, 200 * PIECE, 10) == s.payload[200 * PIECE:200 * PIECE + 10]
        await trio.sleep(1)
        assert stored == []
        assert t.reads.head_start.listed("folder", [0]) == [0, 400]
        await trio.sleep(1)
        inode = fs.base + fs.tree.root.children[s.meta.name]
        assert sorted(stored) == [(inode, 0, s.payload[:PIECE], True),
                                  (inode, 400 * PIECE, s.payload[400 * PIECE:], True)]
        fs._piece_changed(0)  # (again: a piece left the cache, say) each piece once
        await trio.sleep(1)
        assert len(stored) == 2
        n.cancel_scope.cancel()


async def test_a_quick_head_start_piece_is_stored_before_its_write_ends(
        make_swarm, autojump_clock, monkeypatch):
    """Verified in memory, a quick head start's piece goes to the kernel at once
    (``Reads.in_memory_listeners``), while its write is still under way; the
    kernel's pages are verified bytes, so its write need not be waited for."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=400 * PIECE)
        t = s.torrent
        fs, stored = wire(t, s.meta, n, monkeypatch)
        no_write_behind(monkeypatch, t)
        let_go = hold_writes(monkeypatch, t, {0, 399})
        s.add(Behaviour(delay=0.001))
        await trio.sleep(1)
        fs.page_cache.listed(t, [0])
        t.reads.head_start.listed("folder", [0])
        await trio.sleep(1)
        assert not {0, 399} & set(t.have)  # both still being written
        assert t.reads.in_memory(0) and t.reads.in_memory(399)
        inode = fs.base + fs.tree.root.children[s.meta.name]
        assert sorted(stored) == [(inode, 0, s.payload[:PIECE], True),
                                  (inode, 399 * PIECE, s.payload[399 * PIECE:], True)]
        let_go.set()
        await trio.sleep(1)
        assert {0, 399} <= set(t.have) and len(stored) == 2  # each piece once
        n.cancel_scope.cancel()


async def test_a_piece_a_read_brought_before_the_lull_is_the_reads(
        make_swarm, autojump_clock, monkeypatch):
    """A listed video's piece that a read fetched before the head start raised it
    (the read came within the lull) was not the head start's: not stored. The
    other piece, raised after the read's lull, is."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=400 * PIECE)
        t = s.torrent
        fs, stored = wire(t, s.meta, n, monkeypatch)
        s.add(Behaviour(delay=0.001))
        await trio.sleep(1)
        fs.page_cache.listed(t, [0])
        assert t.reads.head_start.listed("folder", [0]) == [0, 399]
        h = t.open_handle(0)
        assert await t.read(0, 0, 10, h) == s.payload[:10]  # a first read: alone
        h.close()
        await trio.sleep(1)
        assert {0, 399} <= set(t.have)
        assert [offset for _, offset, _, _ in stored] == [399 * PIECE]
        n.cancel_scope.cancel()


async def test_a_head_start_piece_that_fails_its_hash_is_never_stored(
        make_swarm, autojump_clock, monkeypatch):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=400 * PIECE)
        t = s.torrent
        fs, stored = wire(t, s.meta, n, monkeypatch)
        liar = s.add(Behaviour(delay=0.001, corrupt={0}))
        await trio.sleep(1)
        fs.page_cache.listed(t, [0])
        t.reads.head_start.listed("folder", [0])
        await trio.sleep(1)
        assert liar.sent_bytes and 0 not in t.have
        assert [offset for _, offset, _, _ in stored] == [399 * PIECE]
        s.add(Behaviour(delay=0.001))  # an honest peer: piece 0 comes (not quick now)
        await trio.sleep(2)
        assert 0 in t.have
        assert all(data == s.payload[offset:offset + len(data)]
                   for _, offset, data, _ in stored)
        n.cancel_scope.cancel()


async def test_a_slow_head_start_leaves_the_reads_to_us(make_swarm, autojump_clock,
                                                         monkeypatch):
    """A head start that was not quick (a slow swarm): the program's first read opens
    the readahead window as usual, so nothing goes to the page cache."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=400 * PIECE)
        t = s.torrent
        fs, stored = wire(t, s.meta, n, monkeypatch)
        s.add(Behaviour(delay=0.3))
        await trio.sleep(1)
        fs.page_cache.listed(t, [0])
        t.reads.head_start.listed("folder", [0])
        await trio.sleep(5)
        assert {0, 399} <= set(t.have)
        assert stored == []
        n.cancel_scope.cancel()


async def test_a_failed_store_is_only_logged(make_swarm, autojump_clock, monkeypatch):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=40 * PIECE)
        t = s.torrent
        fs, _ = wire(t, s.meta, n, monkeypatch)

        def store(inode, offset, data):
            raise OSError(2, "the kernel forgot the inode")
        fs.page_cache.store = store
        s.add(Behaviour(delay=0.001))
        await trio.sleep(1)
        fs.page_cache.listed(t, [0])
        t.reads.head_start.listed("folder", [0])
        await trio.sleep(1)
        assert fs.page_cache.given == {(t, 0), (t, 39)} and fs.page_cache.stored == 2
        assert await t.read(0, 0, 10) == s.payload[:10]  # and reads go on
        n.cancel_scope.cancel()


async def test_a_listing_tells_the_page_cache_its_videos(tmp_path, monkeypatch):
    meta, _ = small_tree_torrent(tmp_path, {"a.mkv": 70000, "b.txt": 5000})
    t = Torrent(meta, tmp_path / "cache", quiet(), offload=inline)
    fs = TorrentFS(t, Tree.from_metainfo(meta))
    monkeypatch.setattr(pyfuse3, "readdir_reply", lambda *a: True)
    [top] = fs.tree.children(fs.tree.root.inode)
    await fs.readdir(top.inode, 0, None)
    files = {tuple(f.path): i for i, f in enumerate(meta.files)}
    assert fs.page_cache.videos == {t: {files[("a.mkv",)]}}


def test_a_multi_torrent_mount_shares_one_page_cache_fill(tmp_path):
    from torrentfs.fs.multifs import MultiFS
    a, _ = small_tree_torrent(tmp_path / "a", {"a.mkv": 70000})
    b, _ = small_tree_torrent(tmp_path / "b", {"b.mkv": 70000})
    fs = MultiFS()
    for name, meta in (("a", a), ("b", b)):
        fs.add(name, Torrent(meta, tmp_path / name / "cache", quiet(), offload=inline),
               Tree.from_metainfo(meta))
    assert all(child.page_cache is fs.page_cache for child in fs._children.values())


async def test_a_store_runs_in_a_worker_thread():
    """Not in the trio thread, which must stay free to answer the read whose pages
    the kernel may hold locked meanwhile."""
    fill = PageCacheFill(lambda inode, offset, data: threads.append(
        (inode, offset, bytes(data), threading.current_thread())))
    threads = []
    with trio.fail_after(30):
        async with trio.open_nursery() as n:
            n.start_soon(fill.run)
            fill._queue.append((5, 0, memoryview(b"x" * PAGE)))
            fill._wake.set()
            while not fill.stored:
                await trio.sleep(0.01)
            n.cancel_scope.cancel()
    [(inode, offset, data, thread)] = threads
    assert (inode, offset, data) == (5, 0, b"x" * PAGE)
    assert thread is not threading.current_thread()
