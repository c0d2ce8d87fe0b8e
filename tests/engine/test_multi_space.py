"""multi: a watch mount's torrents get the cache limit from the disk's free space that
a single mount gets (issue 12): with no --cache-size, a torrent that does not fit in
what is free gets a limit (one warning line, shown in status), what the mount's other
torrents may still write is not counted as free, and one that not even two pieces of
fit is skipped saying why. The disk's free space is the test's (``free_bytes``
patched); no FUSE (a recording stand-in for the filesystem)."""

from __future__ import annotations

import logging

import trio

from tests.engine.test_multi import LIMIT, start_multi, write_torrent
from torrentfs.disk import space
from torrentfs.engine.status import snapshot

MiB = 1 << 20


async def test_a_watch_mount_gets_a_limit_from_free_space(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, "torrentfs.multi")
    watched = tmp_path / "watched"
    watched.mkdir()
    write_torrent(tmp_path / "p1", "big", 600_000, 1, watched / "a-big.torrent")
    write_torrent(tmp_path / "p2", "second", 600_000, 2, watched / "b-second.torrent")
    free = space.HEADROOM_MIN + 400_000  # room for 400,000 bytes of the first
    monkeypatch.setattr(space, "free_bytes", lambda folder: free)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            mm = await start_multi(nursery, watched, tmp_path / "cache")
            assert mm.fs.names() == ["big"]
            big = mm.fs.shown["big"]
            # (what its folder holds already, a few KiB, counts as room)
            assert 400_000 <= big.cache.limit < 400_000 + 64 * 1024
            assert big.options.cache_size_auto
            cache = snapshot(big)["cache"]
            assert cache["limit"] == big.cache.limit and cache["limit_from"] == "free space"
            # the second: what the first may still write is not free for it
            why = mm.skipped["b-second.torrent"]
            assert why.startswith("cache folder ") and "KiB free (1.4 MiB on the disk, less what this mount" in why
            assert "two pieces" in why
            nursery.cancel_scope.cancel()
    warned = [r.getMessage() for r in caplog.records if "free for the cache" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("a-big.torrent: only "), warned


async def test_torrents_that_fit_get_no_limit(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.WARNING, "torrentfs.multi")
    watched = tmp_path / "watched"
    watched.mkdir()
    write_torrent(tmp_path / "p1", "one", 600_000, 1, watched / "a.torrent")
    write_torrent(tmp_path / "p2", "two", 600_000, 2, watched / "b.torrent")
    # room for both and their headroom: neither is limited
    monkeypatch.setattr(space, "free_bytes", lambda folder: 2 * 600_000 + 2 * MiB)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            mm = await start_multi(nursery, watched, tmp_path / "cache")
            assert sorted(mm.fs.names()) == ["one", "two"]
            for t in mm.fs.shown.values():
                assert t.cache.limit is None and not t.options.cache_size_auto
                assert snapshot(t)["cache"]["limit_from"] is None
            nursery.cancel_scope.cancel()
    assert "free for the cache" not in caplog.text


async def test_a_given_cache_size_is_kept(tmp_path, monkeypatch):
    """--cache-size given: the free space is not asked (as for a single mount)."""
    from tests.engine.test_multi import RecordingFS
    from torrentfs.engine.multi import MultiMount, Shared
    from torrentfs.engine.options import TorrentOptions
    watched = tmp_path / "watched"
    watched.mkdir()
    write_torrent(tmp_path / "p1", "one", 600_000, 1, watched / "a.torrent")
    monkeypatch.setattr(space, "free_bytes", lambda folder: 0)
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            mm = MultiMount(watched, RecordingFS(), tmp_path / "cache", Shared(10),
                            listen_host="127.0.0.1",
                            torrent_options=TorrentOptions(announce=False,
                                                           cache_size=300_000))
            mm.poll = 3600
            await nursery.start(mm.run)
            t = mm.fs.shown["one"]
            assert t.cache.limit == 300_000 and not t.options.cache_size_auto
            nursery.cancel_scope.cancel()
