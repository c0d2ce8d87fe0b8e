"""Streaming over a slow swarm, on trio's autojump clock: two fake seeds whose
uplinks serve 1 MB/s each, in the order asked (``Behaviour.rate``), with some of
their queue past the reach of a cancel (``committed``, like libtorrent's send
buffer); a reader paced at 1 MB/s like ``ffmpeg -re`` (a read is due when the
bytes before it have played; a late one is made at once). The link is twice the
bitrate: after its first read the reader never waits long, from the start of the
file or after a seek."""

from __future__ import annotations

import pytest
import trio

from tests.harness.fakepeer import Behaviour, start

MB = 1_000_000
CHUNK = 128 << 10          # what the kernel asks of a FUSE file at a time


async def play(t, handle, start_at: int, seconds: float, bitrate: float = MB):
    """Read ``seconds`` of a ``bitrate`` stream from ``start_at``, paced; returns
    each read's wait, in order."""
    t0 = trio.current_time()
    waits = []
    pos = start_at
    while pos < start_at + bitrate * seconds:
        due = t0 + (pos - start_at) / bitrate
        if due > trio.current_time():
            await trio.sleep(due - trio.current_time())
        r0 = trio.current_time()
        data = await t.read(0, pos, CHUNK, handle)
        waits.append(trio.current_time() - r0)
        pos += len(data)
    return waits


@pytest.mark.parametrize("piece", [128 << 10, 512 << 10])
@pytest.mark.parametrize("fast", [True, False])
async def test_stream_from_a_slow_swarm_does_not_stall(make_swarm, autojump_clock, piece,
                                                       fast):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=24 << 20, piece_length=piece)
        for _ in range(2):
            s.add(Behaviour(rate=MB, committed=128 << 10, fast=fast))
        await trio.sleep(0.5)
        t = s.torrent
        h = t.open_handle(0)
        waits = await play(t, h, 0, 6)
        assert waits[0] < 1.0, waits[0]            # the first frame
        assert max(waits[1:]) < 0.5, waits          # then no stall worth the name
        assert sum(waits[1:]) < 1.0, waits
        waits = await play(t, h, 16 << 20, 6)       # a seek
        assert waits[0] < 1.5, waits[0]
        assert max(waits[1:]) < 0.5, waits
        assert sum(waits[1:]) < 1.0, waits
        h.close()
        n.cancel_scope.cancel()


async def test_a_read_overtakes_the_readahead_queued_at_a_peer(make_swarm, autojump_clock):
    """A peer asked for readahead: a read elsewhere has its blocks served next,
    not after it (the readahead is cancelled, rejected by
    the peer, and asked again after the read's blocks)."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=16 << 20, piece_length=256 << 10)
        slow = s.add(Behaviour(rate=MB / 2))
        await trio.sleep(0.5)
        t = s.torrent
        h = t.open_handle(0)
        await t.read(0, 0, CHUNK, h)                # the window fills the queue
        await trio.sleep(0.1)
        assert t.picker.outstanding(next(iter(t.sessions.values()))) >= 4
        t0 = trio.current_time()
        await t.read(0, 12 << 20, CHUNK)            # its 256 KiB piece: 0.52 s
        assert trio.current_time() - t0 < 0.75
        read_piece = (12 << 20) // (256 << 10)
        assert slow.cancels                          # the readahead made way ...
        assert all(i != read_piece for i, _, _ in slow.cancels)  # ... for the read
        # The cancelled readahead is asked again and arrives.
        await t.read(0, CHUNK, 2 * CHUNK, h)
        h.close()
        n.cancel_scope.cancel()
