"""The torrent shell (swarm, reads, verification) against scripted fake peers over
in-memory streams, on trio's autojump clock: no sockets, no real waiting."""

from __future__ import annotations

import trio
import pytest

from fakepeer import Behaviour, start
from torrentfs.picker import READAHEAD
from torrentfs.torrent import ReadTimeout


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
        # Opening raises the first and last pieces.
        assert {i for i, tier, _ in t.picker.waiting()} == {0, 399}
        h.advance(0, 65536)
        first = {i for i, tier, _ in t.picker.waiting() if tier == READAHEAD}
        h.advance(65536, 65536)
        h.advance(131072, 65536)
        grown = {i for i, tier, _ in t.picker.waiting() if tier == READAHEAD}
        assert max(grown) > max(first)  # contiguous reads grew the window
        h.advance(300 * 32768, 100)  # a seek: the window restarts there
        after = {i for i, tier, _ in t.picker.waiting() if tier == READAHEAD}
        assert min(after - {0, 399}) >= 300
        assert len(after - {0, 399}) <= len(first - {0, 399}) + 1
        h.close()
        assert t.picker.waiting() == []
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
