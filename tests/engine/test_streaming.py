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
from torrentfs.core.picker import NOW, READAHEAD
from torrentfs.core.priorities import SPLIT_LEECHERS
from torrentfs.engine import reads

MB = 1_000_000
CHUNK = 128 << 10          # what the kernel asks of a FUSE file at a time


async def play(t, handle, start_at: int, seconds: float, bitrate: float = MB,
               chunk: int = CHUNK):
    """Read ``seconds`` of a ``bitrate`` stream from ``start_at``, paced, in reads of
    ``chunk`` (the kernel's readahead), the clock started before the first read (as
    ``ffmpeg -re``, also after a seek); returns each read's wait, in order."""
    t0 = trio.current_time()
    waits = []
    pos = start_at
    while pos < start_at + bitrate * seconds:
        due = t0 + (pos - start_at) / bitrate
        if due > trio.current_time():
            await trio.sleep(due - trio.current_time())
        r0 = trio.current_time()
        data = await t.read(0, pos, chunk, handle)
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


async def test_a_video_plays_in_order_among_leechers(make_swarm, autojump_clock):
    """Other leechers about (a busy swarm): readahead is asked rarest first, in an
    order jittered per node over LEECHER_JITTER (10 s), so that a cluster's nodes
    fetch different pieces. A video's window keeps its order: played at 2/3 of the
    link (three 250 kB/s seeds, 32 KiB pieces), it stands still about as long as
    with no leechers about (0.9 s of waits in 8 s), where shuffled it waited 7 s."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=8 << 20, piece_length=32 << 10)
        for _ in range(3):
            s.add(Behaviour(rate=MB / 4))
        await trio.sleep(0.5)
        t = s.torrent
        for k in range(SPLIT_LEECHERS):  # nothing yet: every piece equally rare
            t.picker.add_peer(f"leecher{k}")
        h = t.open_handle(0, stream=True)
        waits = await play(t, h, 0, 8, bitrate=MB / 2)
        assert waits[0] < 0.6, waits[0]
        assert max(waits[1:]) < 0.5, waits
        assert sum(waits[1:]) < 1.5, waits
        # Its window is asked in file order: what it lacks is the window's end.
        window = [i for i, tier, _ in t.picker.waiting() if tier == READAHEAD]
        assert window == sorted(window)
        h.close()
        n.cancel_scope.cancel()


@pytest.mark.parametrize("stream", [True, False])
async def test_a_seek_in_a_video_holds_for_a_buffer_against_bursty_seeds(
        make_swarm, autojump_clock, stream):
    """Two seeds capped at 1 MB/s each send in bursts every half second, one 0.15 s
    after the other (a capped libtorrent seeder's tick), with a burst's worth past
    the reach of a cancel; a 1 MB/s reader seeks and plays with its clock started before its first
    read there (``ffmpeg -re``), in the 256 KiB reads the kernel makes of a video.
    A video's handle (``stream``) holds that first read until more is in (at most
    SEEK_HOLD_MAX): the reads after it never stand still for 0.3 s (the bench's
    stall). Without the hold the reader catches up with its clock at the edge of
    what has come, and stands still between bursts."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=24 << 20, piece_length=256 << 10)
        s.add(Behaviour(rate=MB, tick=0.5, phase=0.1, committed=256 << 10))
        s.add(Behaviour(rate=MB, tick=0.5, phase=0.25, committed=256 << 10))
        await trio.sleep(0.5)
        t = s.torrent
        h = t.open_handle(0, stream=stream)
        await t.read(0, 0, 256 << 10, h)            # the header, then a seek
        waits = await play(t, h, 16 << 20, 8, chunk=256 << 10)
        assert waits[0] <= reads.SEEK_HOLD_MAX + 0.1, waits[0]  # the first frame
        if stream:
            assert max(waits[1:]) < 0.3, waits
        else:
            assert max(waits[1:]) >= 0.3, waits     # what the hold is for
        h.close()
        n.cancel_scope.cancel()


async def test_a_seek_leaves_the_reads_of_the_old_place_behind(make_swarm, autojump_clock):
    """Reads through a file still waiting at the old place when the reader seeks
    (the kernel's readahead of a file's start, after a player probed it) drop
    from NOW to READAHEAD, so the seek's pieces come first; they are still
    answered. Another file's reads, and a read that follows on, keep NOW."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=24 << 20, piece_length=256 << 10)
        s.add(Behaviour(rate=MB / 4))                 # reads wait
        await trio.sleep(0.5)
        t = s.torrent
        h, other = t.open_handle(0), t.open_handle(0)
        done = []

        async def read(handle, offset):
            await t.read(0, offset, CHUNK, handle)
            done.append(offset)

        n.start_soon(read, h, 4 << 20)
        n.start_soon(read, other, 8 << 20)
        await trio.sleep(0.01)
        n.start_soon(read, h, (4 << 20) + CHUNK)      # follows on: still NOW
        await trio.sleep(0.01)
        piece = 256 << 10
        assert t.picker.priority((4 << 20) // piece)[0] == NOW
        n.start_soon(read, h, 16 << 20)               # a seek
        await trio.sleep(0.01)
        assert t.picker.priority((4 << 20) // piece)[0] == READAHEAD  # left behind
        assert t.picker.priority((16 << 20) // piece)[0] == NOW
        assert t.picker.priority((8 << 20) // piece)[0] == NOW  # another file's read
        assert not done
        with trio.fail_after(30):
            while len(done) < 4:
                await trio.sleep(0.1)
        assert done.index(16 << 20) < done.index(4 << 20)  # the seek's read came first
        n.cancel_scope.cancel()
