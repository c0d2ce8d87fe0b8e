"""The connector's dialing (engine/connector.py): over memory streams on the
autojump clock, with the dials recorded instead of made."""

from __future__ import annotations

import trio
import trio.testing

from tests.harness.fakepeer import ExtBehaviour, ExtStats, ext_peer, quiet, small_torrent
from torrentfs.engine.torrent import Torrent


async def inline(fn, *args, limiter=None):
    return fn(*args)


async def test_a_peer_that_reached_us_is_not_dialed_at_its_listen_address(tmp_path,
                                                                           autojump_clock):
    """A peer connected to us names its listen port in its extension handshake:
    dialing that address (learned from PEX or a tracker) would only make a twin
    connection, refused after both handshakes, again at every retry."""
    meta, _ = small_torrent(tmp_path, 1 << 20, piece_length=16384)
    t = Torrent(meta, tmp_path / "cache", quiet(), offload=inline)
    dialed = []

    async def dial(addr, cand):
        dialed.append(addr)
        t.connector.connecting.discard(addr)

    t.connector._dial = dial
    async with trio.open_nursery() as n:
        await n.start(t.run)
        ours, theirs = trio.testing.memory_stream_pair()
        n.start_soon(ext_peer, theirs, meta.info_hash, ExtBehaviour(listen_port=7000),
                     ExtStats(), b"-FX0001-" + bytes(12))
        n.start_soon(t.accept, ours, ("127.0.0.5", 50123))
        await trio.sleep(1)
        t.add_peer(("127.0.0.5", 7000))   # the peer that connected to us
        t.add_peer(("127.0.0.6", 7000))   # another
        await trio.sleep(5)
        assert ("127.0.0.6", 7000) in dialed
        assert ("127.0.0.5", 7000) not in dialed
        n.cancel_scope.cancel()
