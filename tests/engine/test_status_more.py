"""What issue 12 added to the status snapshot, on the autojump clock with fake peers:
the shown rates fall to 0 within 2 s of the traffic stopping, each tracker's last
answer, and a full disk (counted, logged once a minute, shown)."""

from __future__ import annotations

import errno
import logging

import pytest
import trio

from tests.harness.fakepeer import start
from torrentfs.net.tracker import TrackerState

PIECE = 32768


async def test_shown_rates_fall_to_zero_within_two_seconds(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm)
        s.add()
        t = s.torrent
        assert await t.read(0, 0, 5 * PIECE) == s.payload[:5 * PIECE]
        st = t.status()
        assert st["rates"]["download"] > 0
        assert any(p["download_rate"] > 0 for p in st["peers"]["list"])
        await trio.sleep(2.0 + 0.15)  # nothing more is read: the traffic stopped
        st = t.status()
        assert st["rates"] == {"download": 0, "upload": 0}
        assert all(p["download_rate"] == 0 for p in st["peers"]["list"])
        assert t.sessions  # the peer is still there: only its traffic stopped
        n.cancel_scope.cancel()


async def test_snapshot_lists_each_trackers_last_answer(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm)
        t = s.torrent
        assert t.status()["trackers"] == []  # this one announces to nobody
        refused = TrackerState("http://t/announce")
        refused.failed("tracker refused: unregistered torrent", 1000.0)
        t.announcer.tiers = [["http://t/announce"]]
        t.announcer.states = {"http://t/announce": refused}
        assert t.status()["trackers"] == [{
            "url": "http://t/announce", "status": "error", "peers": 0, "at": 1000.0,
            "message": "tracker refused: unregistered torrent", "warning": None}]
        n.cancel_scope.cancel()


async def test_a_full_disk_is_logged_once_a_minute_and_shown(make_swarm, autojump_clock,
                                                            caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, read_timeout=1000)
        t = s.torrent

        def full(*args, **kw):
            raise OSError(errno.ENOSPC, "No space left on device")
        monkeypatch.setattr(t.storage, "store", full)
        s.add()
        for k in range(5):  # five reads, each failing for the full disk
            with pytest.raises(OSError) as e:
                await t.read(0, k * PIECE, 10)
            assert e.value.errno == errno.ENOSPC
            await trio.sleep(5)
        await trio.sleep(60)
        with pytest.raises(OSError):
            await t.read(0, 6 * PIECE, 10)
        lines = [r for r in caplog.records if "disk full" in r.getMessage()
                 or "cannot write piece" in r.getMessage()]
        assert len(lines) == 2, [r.getMessage() for r in lines]
        import re
        unlogged = int(re.search(r"; (\d+) more since the last such line",
                                 lines[1].getMessage()).group(1))
        assert unlogged >= 4  # the reads' pieces, and any readahead piece besides
        st = t.status()["cache"]
        assert st["disk_full"]["count"] == unlogged + 2
        assert st["disk_full"]["last"] is not None
        assert st["limit"] is None and st["limit_from"] is None
        n.cancel_scope.cancel()


async def test_a_limit_from_the_free_space_says_so(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, cache_size=4 * PIECE, cache_size_auto=True)
        c = s.torrent.status()["cache"]
        assert (c["limit"], c["limit_from"]) == (4 * PIECE, "free space")
        n.cancel_scope.cancel()
