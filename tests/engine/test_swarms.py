"""A hybrid torrent's two swarms (engine.swarms, engine.connector): a peer found only
under the v2 info-hash is dialed naming that hash, and a client that knows the
torrent only by it (a urn:btmh magnet) then serves it; named by the v1 hash, that
client hangs up."""

from __future__ import annotations

import dataclasses
import math

import trio
import trio.testing

from tests.harness.fakepeer import Stats, fake_peer, inline, quiet
from torrentfs.core.metainfo import parse
from torrentfs.disk.create import create_torrent
from torrentfs.engine.swarms import adder
from torrentfs.engine.torrent import Torrent


async def test_a_peer_of_the_v2_swarm_only_is_dialed_naming_the_v2_hash(tmp_path,
                                                                          autojump_clock):
    src = tmp_path / "hy.bin"
    src.write_bytes(bytes(range(256)) * 300)
    meta = parse(create_torrent(src, piece_length=32768, creation_date=0, version="hybrid"))
    v2_cut = meta.info_hash_v2[:20]
    v2_only_client = dataclasses.replace(meta, info_hash=v2_cut)  # knows no v1 hash
    payload = b"".join(bytes(f.length) if f.padding else src.read_bytes()
                       for f in meta.files)
    async with trio.open_nursery() as n:
        t = Torrent(meta, tmp_path / "cache", quiet(), offload=inline)
        await n.start(t.run)
        adder(t)(v2_cut, [("10.0.0.2", 6881)])     # found under the v2 hash only
        t.connector.add(("10.0.0.3", 6881))       # found under the v1 hash
        assert t.candidates[("10.0.0.2", 6881)].swarm == v2_cut
        assert t.candidates[("10.0.0.3", 6881)].swarm is None
        for cand in t.candidates.values():
            cand.next_try = math.inf  # the test connects them itself, by memory streams
        runs = {}
        for k, addr in enumerate((("10.0.0.2", 6881), ("10.0.0.3", 6881))):
            ours, theirs = trio.testing.memory_stream_pair()
            runs[addr] = Stats()
            n.start_soon(fake_peer, theirs, v2_only_client, payload, None, runs[addr],
                         b"-FK0001-%012d" % k)
            n.start_soon(t.attach, ours, addr)
        with trio.fail_after(10):
            data = await t.read(0, 0, len(payload))
        assert bytes(data[:src.stat().st_size]) == src.read_bytes()
        await trio.sleep(1)
        v2_peer, v1_named = runs[("10.0.0.2", 6881)], runs[("10.0.0.3", 6881)]
        assert v2_peer.handshaken and v2_peer.requests        # it took our v2 hash, served
        assert v1_named.closed and not v1_named.handshaken     # it refused the v1 hash
        assert not v1_named.requests
        n.cancel_scope.cancel()
