"""``Torrent.schedule_soon``: a read that raised its readahead is answered before the
peers pick; the picking follows at the next checkpoint, once however often asked."""

from __future__ import annotations

import trio

from tests.harness.fakepeer import start


async def test_schedule_soon_runs_once_after_the_task_yields(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm)
        t = s.torrent
        runs = []
        t.schedule = lambda *a, **k: runs.append(trio.current_time())
        for _ in range(3):
            t.schedule_soon()
        assert runs == []  # not in the caller's step: its read is answered first
        assert t.requests.soon  # meanwhile a block arriving makes no peer pick
        await trio.sleep(0)
        await trio.sleep(0)
        assert len(runs) == 1
        assert not t.requests.soon
        t.schedule_soon()
        await trio.sleep(0)
        await trio.sleep(0)
        assert len(runs) == 2  # a later ask is a new run
        n.cancel_scope.cancel()


async def test_a_sequential_reader_still_gets_its_readahead(make_swarm, autojump_clock):
    """Reads through a handle raise the window; the peers are asked for it after each
    read (not before it returns), and the next reads find it downloaded."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=40 * 32768)
        peer = s.add()
        handle = s.torrent.open_handle(0)
        chunk = 32768
        for off in range(0, 8 * chunk, chunk):
            assert await s.torrent.read(0, off, chunk, handle) == s.payload[off:off + chunk]
        await trio.sleep(0.5)
        asked = {i for i, _, _ in peer.requests}
        assert set(range(8)) < asked  # the window ahead of the reader was asked for
        assert 8 in s.torrent.have
        n.cancel_scope.cancel()


async def test_schedule_soon_of_a_torrent_not_running_schedules_at_once(make_swarm):
    _, _, t = make_swarm()
    runs = []
    t.schedule = lambda *a, **k: runs.append(1)
    t.schedule_soon()  # not started yet: no nursery
    assert runs == [1] and not t.requests.soon
    async with trio.open_nursery() as closed:
        pass
    t.requests.schedule_soon(closed)  # a nursery closed to new tasks (shutting down)
    assert runs == [1, 1] and not t.requests.soon


async def test_schedule_of_one_piece_lets_only_its_holders_pick(make_swarm, autojump_clock):
    """A read's next piece raised to NOW (``schedule(piece=)``): the peers that have
    it pick, the others are not asked (the raise changes nothing for them)."""
    from tests.harness.fakepeer import Behaviour
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm)
        t = s.torrent
        pieces = t.geometry.num_pieces
        s.add()
        s.add(Behaviour(have=set(range(pieces)) - {3}))
        await trio.sleep(1)
        assert len([p for p in t.sessions.values() if p.registered]) == 2
        filled = []
        t._fill = lambda p, batch=False: filled.append(p)
        t.schedule(piece=3)
        assert [t.picker.peer_has(p, 3) for p in filled] == [True]
        filled.clear()
        t.schedule()
        assert len(filled) == 2
        n.cancel_scope.cancel()
