"""A v2 magnet link (urn:btmh): after the metadata, the piece layers come from the
peers by BEP 52 hash requests, a peer whose hashes do not prove to the root is
dropped, and the layers are cached beside the metadata (scripted in-memory peers,
trio's autojump clock)."""

from __future__ import annotations

import logging
from pathlib import Path

import trio
import trio.testing

from tests.harness.fakepeer import ExtBehaviour, ExtStats, ext_peer
from torrentfs.core import magnet as magnet_mod
from torrentfs.core.metainfo import parse
from torrentfs.net.magnetfetch import LAYERS_FILE, fetch_metadata, resolve, static_source

TORRENT = parse((Path(__file__).resolve().parent.parent / "data" / "v2" / "multi-v2.torrent")
                .read_bytes())
MAGNET = magnet_mod.parse(magnet_mod.link(TORRENT))
PEER_ID = b"-TF0001-" + b"2" * 12
A, B = ("127.0.0.1", 2001), ("127.0.0.1", 2002)


class FakeNet:
    def __init__(self, nursery, peers):
        self.nursery, self.peers, self.stats = nursery, peers, {}

    async def connect(self, addr):
        behaviour = self.peers.get(addr)
        if behaviour is None:
            raise OSError("connection refused")
        ours, theirs = trio.testing.memory_stream_pair()
        stats = self.stats[addr] = ExtStats()
        self.nursery.start_soon(ext_peer, theirs, MAGNET.info_hash, behaviour, stats)
        return ours


def test_magnet_is_v2_only():
    assert MAGNET.v2_only and MAGNET.info_hash == TORRENT.info_hash


async def test_piece_layers_come_by_hash_requests_and_a_liar_is_dropped(autojump_clock, caplog):
    caplog.set_level(logging.INFO)
    info = TORRENT.info_bytes
    peers = {A: ExtBehaviour(info, v2=TORRENT.v2, bad_hashes=True),
             B: ExtBehaviour(info, v2=TORRENT.v2)}

    async def honest_later(add):
        await trio.sleep(1)
        add([B])

    layers: dict = {}
    async with trio.open_nursery() as n:
        net = FakeNet(n, peers)
        with trio.fail_after(300):
            got, found = await fetch_metadata(MAGNET, peer_id=PEER_ID, port=6881,
                                              sources=[static_source([A]), honest_later],
                                              connect=net.connect, layers_out=layers)
        n.cancel_scope.cancel()
    assert got == info
    assert layers == TORRENT.v2.piece_layers
    assert "do not prove to the root" in caplog.text
    assert net.stats[B].hash_requests
    meta = MAGNET.metainfo(got, layers)
    assert meta.info_hash_v2 == TORRENT.info_hash_v2 and meta.v2.piece_layers == layers


async def test_layers_are_cached_with_the_metadata(autojump_clock, tmp_path):
    async with trio.open_nursery() as n:
        net = FakeNet(n, {A: ExtBehaviour(TORRENT.info_bytes, v2=TORRENT.v2)})
        meta, _ = await resolve(MAGNET, tmp_path, peer_id=PEER_ID, port=6881, timeout=60,
                                sources=[static_source([A])], connect=net.connect)
        n.cancel_scope.cancel()
    assert (tmp_path / LAYERS_FILE).exists()
    # The next mount needs no peer: the metadata and its layers come from the cache.
    again, _ = await resolve(MAGNET, tmp_path, peer_id=PEER_ID, port=6881, timeout=1,
                             sources=[])
    assert again.v2.piece_layers == meta.v2.piece_layers == TORRENT.v2.piece_layers


async def test_a_peer_without_the_layers_rejects_and_another_gives_them(autojump_clock):
    peers = {A: ExtBehaviour(TORRENT.info_bytes), B: ExtBehaviour(TORRENT.info_bytes,
                                                                  v2=TORRENT.v2)}
    layers: dict = {}
    async with trio.open_nursery() as n:
        net = FakeNet(n, peers)
        with trio.fail_after(300):
            await fetch_metadata(MAGNET, peer_id=PEER_ID, port=6881,
                                 sources=[static_source([A, B])], connect=net.connect,
                                 layers_out=layers)
        n.cancel_scope.cancel()
    assert layers == TORRENT.v2.piece_layers
