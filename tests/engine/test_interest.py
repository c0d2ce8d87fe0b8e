"""Interest in a peer that has nothing more for us is given up only once that has
lasted NOT_INTERESTED_AFTER seconds (engine/pieces.py ``lose_interest``): among
leechers at a trickle each NotInterested and Interested again made the peer choke
and unchoke us. A running Torrent and fake peers on the autojump clock."""

from __future__ import annotations

import trio

from tests.harness.fakepeer import Behaviour, start
from torrentfs.core import wire
from torrentfs.engine.pieces import NOT_INTERESTED_AFTER

PIECE = 32768


async def _fetched(t, index: int) -> float:
    """Read piece ``index`` through the torrent; the time it was ours."""
    await t.read(0, index * PIECE, PIECE)
    assert index in t.have
    return trio.current_time()


def _session(t):
    (s,) = t.sessions.values()
    return s


def _record(s) -> list:
    """The interest messages ``s`` sends from now on."""
    sent: list = []
    send = s.send

    def recording(msg):
        if type(msg) in (wire.Interested, wire.NotInterested):
            sent.append(type(msg).__name__)
        return send(msg)

    s.send = recording
    return sent


async def test_a_peer_with_nothing_more_is_told_so_once_that_lasts(make_swarm,
                                                                     autojump_clock):
    async with trio.open_nursery() as n:
        swarm = await start(n, make_swarm, size=4 * PIECE)
        t = swarm.torrent
        swarm.add(Behaviour(have={0}))   # a leecher with piece 0 alone
        await trio.sleep(0.5)
        s = _session(t)
        sent = _record(s)
        got = await _fetched(t, 0)
        assert s.am_interested and sent == []   # not at once
        while s.am_interested:
            await trio.sleep(0.25)
        waited = trio.current_time() - got
        assert NOT_INTERESTED_AFTER <= waited <= NOT_INTERESTED_AFTER + 1.5  # the ticker's
        assert sent == ["NotInterested"]
        n.cancel_scope.cancel()


async def test_a_peer_that_gets_a_new_piece_meanwhile_keeps_our_interest(make_swarm,
                                                                          autojump_clock):
    async with trio.open_nursery() as n:
        swarm = await start(n, make_swarm, size=4 * PIECE)
        t = swarm.torrent
        swarm.add(Behaviour(have={0}))
        await trio.sleep(0.5)            # connected, and Interested said
        s = _session(t)
        sent = _record(s)
        await _fetched(t, 0)
        await trio.sleep(NOT_INTERESTED_AFTER / 2)
        t.on_haves(s, [2])               # it announces a piece we lack
        t.on_received(s)
        await trio.sleep(NOT_INTERESTED_AFTER * 3)
        assert s.am_interested and t.picker.is_interesting(s)
        assert sent == []                # neither NotInterested nor Interested again
        n.cancel_scope.cancel()


async def test_a_complete_torrent_is_not_interested_at_once(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        swarm = await start(n, make_swarm, size=2 * PIECE)
        t = swarm.torrent
        swarm.add(Behaviour())           # a seed
        await _fetched(t, 0)
        assert _session(t).am_interested
        await _fetched(t, 1)
        assert not _session(t).am_interested
        n.cancel_scope.cancel()
