"""``Torrent.schedule(piece=)`` (a read's next piece raised to NOW): its holders pick,
fastest first, until every block of it is asked; after that only the peers asked
for its blocks do (``Picker.askers``): a pick elsewhere would find none of them."""

from __future__ import annotations

import trio

from tests.harness.fakepeer import start
from torrentfs.core.asked import askers, unasked
from torrentfs.core.picker import NOW


async def three_peers_recorded(n, make_swarm):
    """A torrent of a fake swarm in nursery ``n`` with 3 fake peers registered, and
    the list every peer it lets fill (``Torrent._fill``) is appended to."""
    s = await start(n, make_swarm)
    t = s.torrent
    for _ in range(3):
        s.add()
    await trio.sleep(1)
    peers = [p for p in t.sessions.values() if p.registered]
    assert len(peers) == 3
    filled = []
    fill = t._fill

    def recorded(p, batch=False):
        filled.append(p)
        fill(p, batch)

    t._fill = recorded
    return t, peers, filled


async def test_schedule_of_one_piece_stops_at_the_peers_asked_for_it(make_swarm,
                                                                     autojump_clock):
    async with trio.open_nursery() as n:
        t, peers, filled = await three_peers_recorded(n, make_swarm)
        assert t.spread == 3 and t.geometry.num_blocks(3) == 2
        t.picker.raise_priority("read", [3], NOW, trio.current_time() + 0.05)
        t.schedule(piece=3)
        # Its 2 blocks split over the spread: the first two peers take one each,
        # the third is not asked to pick.
        asked = askers(t.picker, 3, trio.current_time())
        assert len(filled) == 2 and asked == set(filled)
        filled.clear()
        t.schedule(piece=3)
        assert set(filled) == asked                     # the askers only (to make way)
        filled.clear()
        t.schedule()
        assert len(filled) == 3                         # (everyone, as before)
        n.cancel_scope.cancel()


async def test_a_schedule_for_freed_blocks_stops_once_they_are_asked_again(
        make_swarm, autojump_clock):
    """The blocks that answered cancels freed (``Requests.rejected``) are asked
    again by the fastest peers; once none is free the others are not asked to
    pick (``freed``). A schedule for everything still reaches every peer."""
    async with trio.open_nursery() as n:
        t, peers, filled = await three_peers_recorded(n, make_swarm)
        t.picker.raise_priority("read", [3], NOW, trio.current_time() + 0.05)
        t.schedule(piece=3)
        for p in peers:  # as if rejected: the piece's 2 blocks are free again
            for index, begin in list(t.picker._outstanding[p]):
                t.picker.request_dropped(p, index, begin)
        assert unasked(t.picker, 3)
        filled.clear()
        t.schedule(freed={3})
        assert len(filled) == 2 and not unasked(t.picker, 3)
        filled.clear()
        t.schedule(freed={3})
        assert filled == []                             # nothing of it left to ask
        t.schedule()
        assert len(filled) == 3
        filled.clear()
        t.schedule(skip={peers[0], peers[2]})           # (peers that just rejected)
        assert filled == [peers[1]]
        n.cancel_scope.cancel()
