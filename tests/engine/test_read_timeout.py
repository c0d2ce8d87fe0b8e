"""``--read-timeout S`` counts from a read's first attempt (issue 12): the kernel
retries a failed read at once on the same open file, and the retry fails within a
small slack rather than wait S again; a piece that comes meanwhile is still read.
A read of another file (or with no open file) waits its full timeout."""

from __future__ import annotations

import pytest
import trio

from tests.harness.fakepeer import Behaviour, start
from torrentfs.engine.reads import RETRY_SLACK, RETRY_WINDOW, ReadTimeout

PIECE = 32768


async def test_a_retried_read_fails_within_the_slack(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, read_timeout=10)
        t = s.torrent
        s.add(Behaviour(answer=False))  # has every piece, sends none
        f = t.open_handle(0)  # an open file, as FUSE reads come through one
        t0 = trio.current_time()
        with pytest.raises(ReadTimeout, match="no progress for 10 s waiting for piece 2"):
            await t.read(0, 2 * PIECE, 100, f)
        assert trio.current_time() - t0 == pytest.approx(10, abs=0.1)
        t1 = trio.current_time()
        with pytest.raises(ReadTimeout, match="waiting for piece 2"):
            await t.read(0, 2 * PIECE + 4096, 100, f)  # the kernel's retry: same piece
        assert trio.current_time() - t1 == pytest.approx(RETRY_SLACK, abs=0.01)
        # the same piece through another open file, or none: a read of its own
        for other in (t.open_handle(0), None):
            t2 = trio.current_time()
            with pytest.raises(ReadTimeout, match="piece 2"):
                await t.read(0, 2 * PIECE, 100, other)
            assert trio.current_time() - t2 == pytest.approx(10, abs=0.1)
        # another piece through the same file: its full timeout
        t2 = trio.current_time()
        with pytest.raises(ReadTimeout, match="piece 5"):
            await t.read(0, 5 * PIECE, 100, f)
        assert trio.current_time() - t2 == pytest.approx(10, abs=0.1)
        # well after the failure, piece 2 is waited for again, for the full timeout
        await trio.sleep(RETRY_WINDOW)
        t3 = trio.current_time()
        with pytest.raises(ReadTimeout, match="piece 2"):
            await t.read(0, 2 * PIECE, 100, f)
        assert trio.current_time() - t3 == pytest.approx(10, abs=0.1)
        n.cancel_scope.cancel()


async def test_a_piece_that_arrives_after_a_timeout_is_read(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, read_timeout=5)
        t = s.torrent
        s.add(Behaviour(answer=False))
        f = t.open_handle(0)
        with pytest.raises(ReadTimeout):
            await t.read(0, 0, 100, f)
        for session in list(t.sessions.values()):
            session.close("gone (test)")  # the stalled peer leaves ...
        s.add()  # ... and one that answers comes: the retry is served
        t0 = trio.current_time()
        assert await t.read(0, 0, 100, f) == s.payload[:100]
        assert trio.current_time() - t0 < RETRY_SLACK
        n.cancel_scope.cancel()
