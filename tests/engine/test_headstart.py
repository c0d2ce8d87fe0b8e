"""engine/headstart: a listed folder's videos get their first and last pieces in the
next lull of reads, within a budget, and a first read answered by such a piece reads
ahead at the reader's pace. Fake peers over memory streams, trio's autojump clock."""

from __future__ import annotations

import trio

from tests.harness.fakepeer import Behaviour, start
from torrentfs.core.picker import READAHEAD
from torrentfs.engine import headstart

PIECE = 32768


def raised(t) -> set[int]:
    return {i for i, tier, _ in t.picker.waiting() if tier == READAHEAD}


async def test_a_listed_video_gets_its_first_and_last_pieces_in_a_lull(
        make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=400 * PIECE)
        t = s.torrent
        peer = s.add(Behaviour(delay=0.001))
        await trio.sleep(1)  # connected
        assert t.reads.head_start.listed("folder", [0]) == [0, 399]
        assert raised(t) == set() and not peer.requests  # not before the lull
        await trio.sleep(headstart.LISTED_LULL / 2)
        assert raised(t) == set() and not peer.requests
        await trio.sleep(headstart.LISTED_LULL)  # less than LULL after the listing
        assert {i for i, _, _ in peer.requests} == {0, 399}
        await trio.sleep(1)
        assert {0, 399} <= set(t.have)
        assert {i for i, _, _ in peer.requests} == {0, 399}  # nothing else
        assert t.reads.head_start.listed("folder", [0]) == []  # each folder once
        assert await t.read(0, 0, 1000) == s.payload[:1000]  # verified, read as any
        n.cancel_scope.cancel()


async def test_a_read_right_after_the_listing_has_the_peers_to_itself(
        make_swarm, autojump_clock):
    """The head start waits for a lull: a read of another part of the torrent that
    comes right after the listing is asked alone, and the head start follows it."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=400 * PIECE)
        t = s.torrent
        peer = s.add(Behaviour(delay=0.2))
        await trio.sleep(1)
        t.reads.head_start.listed("folder", [0])
        await trio.sleep(headstart.LISTED_LULL / 2)
        got = []

        async def read() -> None:
            got.append(await t.read(0, 200 * PIECE, 1000))
        async with trio.open_nursery() as reading:
            reading.start_soon(read)
            await trio.sleep(0.15)  # the read waits (0.2 s a block): alone, past the lull
            assert {i for i, _, _ in peer.requests} == {200}
            assert raised(t) == set()
        assert got == [s.payload[200 * PIECE:200 * PIECE + 1000]]
        await trio.sleep(headstart.LULL * 2)
        assert raised(t) == {0, 399}  # after it
        n.cancel_scope.cancel()


async def test_a_read_keeps_the_head_start_off_for_the_longer_lull(
        make_swarm, autojump_clock):
    """The lull after a listing is LISTED_LULL, after a read LULL: a read that came
    right after the listing (and was answered at once) holds the head start until
    LULL after it began, past the listing's own lull."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=400 * PIECE)
        t = s.torrent
        peer = s.add(Behaviour(delay=0.001))
        await trio.sleep(1)
        t.reads.head_start.listed("folder", [0])
        began = trio.current_time()
        assert await t.read(0, 200 * PIECE, 1000) == s.payload[200 * PIECE:200 * PIECE + 1000]
        assert trio.current_time() - began < headstart.LISTED_LULL
        await trio.sleep_until(began + (headstart.LISTED_LULL + headstart.LULL) / 2)
        assert {i for i, _, _ in peer.requests} == {200} and raised(t) == set()
        await trio.sleep_until(began + headstart.LULL * 2)
        assert {0, 399} <= {i for i, _, _ in peer.requests}
        n.cancel_scope.cancel()


async def test_the_head_start_keeps_to_its_budget(make_swarm, autojump_clock, monkeypatch):
    """First pieces before last ones, and never past the budget of the mount."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=400 * PIECE)
        t = s.torrent
        t.reads.head_start.budget = PIECE
        assert t.reads.head_start.listed("a", [0]) == [0]
        assert t.reads.head_start.listed("b", [0]) == []
        assert t.reads.head_start.spent == PIECE
        await trio.sleep(1)
        assert raised(t) == {0}
        n.cancel_scope.cancel()


async def test_a_first_read_from_a_quick_head_start_reads_ahead_at_its_pace(
        make_swarm, autojump_clock):
    """A file's first read answered at once by a head start that came quickly (a
    fast swarm) restarts its window at twice the read, as a first read answered
    fast does; one answered by a slow head start gets the full window."""
    for delay, window_end in ((0.001, 2), (0.5, 64)):
        async with trio.open_nursery() as n:
            s = await start(n, make_swarm, size=400 * PIECE)
            t = s.torrent
            s.add(Behaviour(delay=delay))
            await trio.sleep(1)
            t.reads.head_start.listed("folder", [0])
            await trio.sleep(5)
            assert {0, 399} <= set(t.have)
            h = t.open_handle(0)
            assert await t.read(0, 0, PIECE, h) == s.payload[:PIECE]
            assert max(raised(t) | {0}) == window_end, delay
            h.close()
            n.cancel_scope.cancel()


async def test_a_complete_or_seeding_torrent_gets_no_head_start(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=4 * PIECE)
        t = s.torrent
        s.add()
        await t.read(0, 0, 4 * PIECE)
        assert t.have.complete
        assert t.reads.head_start.listed("folder", [0]) == []
        n.cancel_scope.cancel()


async def test_a_head_start_of_zero_fetches_nothing(make_swarm, autojump_clock):
    """``--head-start 0``: a listed folder's videos are not fetched."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=400 * PIECE)
        t = s.torrent
        t.reads.head_start.budget = 0
        peer = s.add(Behaviour(delay=0.001))
        await trio.sleep(1)
        assert t.reads.head_start.listed("folder", [0]) == []
        await trio.sleep(headstart.LULL * 4)
        assert raised(t) == set() and not peer.requests
        n.cancel_scope.cancel()
