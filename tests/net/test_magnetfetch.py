"""Fetching a magnet's metadata from scripted peers over in-memory streams, on
trio's autojump clock: several peers at once, liars, refusers, silent peers, peers
found by PEX, the timeout and the cache."""

from __future__ import annotations

import hashlib
import logging

import bencodepy
import pytest
import trio
import trio.testing

from tests.harness.fakepeer import ExtBehaviour, ExtStats, ext_peer
from torrentfs.core.magnet import Magnet
from torrentfs.net.magnetfetch import (
    INFO_FILE,
    MetadataTimeout,
    fetch_metadata,
    resolve,
    static_source,
)

PIECES = 2000  # 40 000 bytes of hashes: 3 metadata pieces
INFO = bencodepy.encode({b"length": PIECES * 16384, b"name": b"film.mkv",
                         b"piece length": 16384,
                         b"pieces": b"".join(hashlib.sha1(bytes([i % 251, i // 251])).digest()
                                             for i in range(PIECES))})
MAGNET = Magnet(hashlib.sha1(INFO).digest(), "film", ("http://127.0.0.1:1/announce",))
PEER_ID = b"-TF0001-" + b"1" * 12


class FakeNet:
    """``connect(addr)`` gives a memory stream to a scripted peer, or refuses."""

    def __init__(self, nursery: trio.Nursery, peers: dict) -> None:
        self.nursery = nursery
        self.peers = peers
        self.stats: dict = {}
        self.connects: list = []

    async def connect(self, addr):
        self.connects.append(addr)
        behaviour = self.peers.get(addr)
        if behaviour is None:
            raise OSError("connection refused")
        ours, theirs = trio.testing.memory_stream_pair()
        stats = self.stats[addr] = ExtStats()
        self.nursery.start_soon(ext_peer, theirs, MAGNET.info_hash, behaviour, stats)
        return ours


async def fetch(peers: dict, addrs, **kw):
    async with trio.open_nursery() as n:
        net = FakeNet(n, peers)
        with trio.fail_after(300):  # virtual seconds: a hang fails, it does not stall
            info, found = await fetch_metadata(MAGNET, peer_id=PEER_ID, port=6881,
                                               sources=[static_source(addrs)],
                                               connect=net.connect, **kw)
        n.cancel_scope.cancel()
    return info, found, net


A, B, C, D = (("127.0.0.1", p) for p in (1001, 1002, 1003, 1004))


async def test_from_two_peers_at_once(autojump_clock):
    lines = []
    info, found, net = await fetch({A: ExtBehaviour(INFO), B: ExtBehaviour(INFO)}, [A, B],
                                   progress=lines.append)
    assert info == INFO and set(found) == {A, B}
    asked = [net.stats[a].metadata_requests for a in (A, B)]
    assert all(asked) and set(asked[0] + asked[1]) == {0, 1, 2}
    assert lines[-1].startswith("fetching metadata:") and "pieces" in lines[-1]


async def test_a_liar_among_honest_peers_does_not_stop_the_fetch(autojump_clock, caplog):
    """The liar is known first (so it surely gives pieces: with both known at once,
    trio's scheduling may let the honest one give them all), the honest peer a
    second later."""
    caplog.set_level(logging.INFO)

    async def honest_later(add):
        await trio.sleep(1)
        add([B])

    async with trio.open_nursery() as n:
        net = FakeNet(n, {A: ExtBehaviour(INFO, corrupt=True), B: ExtBehaviour(INFO)})
        with trio.fail_after(300):
            info, found = await fetch_metadata(MAGNET, peer_id=PEER_ID, port=6881,
                                               sources=[static_source([A]), honest_later],
                                               connect=net.connect)
        n.cancel_scope.cancel()
    assert info == INFO and B in found
    assert "metadata failed its hash check" in caplog.text


async def test_a_lone_liar_is_caught_and_never_tried_again(autojump_clock, caplog):
    caplog.set_level(logging.INFO)
    with trio.move_on_after(100):
        await fetch({A: ExtBehaviour(INFO, corrupt=True)}, [A])
    assert "closed: gave metadata that fails the hash check" in caplog.text
    assert caplog.text.count("metadata: connected to <peer 127.0.0.1:1001>") == 1


async def test_useless_peers_make_way_and_pex_brings_the_one_that_has_it(autojump_clock,
                                                                         caplog):
    caplog.set_level(logging.INFO)
    peers = {A: ExtBehaviour(None, pex=[D]),                   # no metadata, knows D
             B: ExtBehaviour(INFO, reject=True),               # says no to everything
             C: ExtBehaviour(INFO, answer=False),              # sits on requests
             D: ExtBehaviour(INFO)}
    t0 = trio.current_time()
    info, found, net = await fetch(peers, [A, B, C])
    assert info == INFO and D in found
    assert trio.current_time() - t0 < 20
    assert "rejected every metadata piece" in caplog.text


async def test_a_silent_peer_is_dropped_after_the_request_timeout(autojump_clock, caplog):
    caplog.set_level(logging.INFO)
    with trio.move_on_after(30):
        await fetch({C: ExtBehaviour(INFO, answer=False)}, [C])
    assert "no answer to our metadata requests" in caplog.text


@pytest.mark.parametrize("size, why", [(1 << 30, "metadata_size 1073741824 not in"),
                                       (0, "does not offer the metadata")])
async def test_hostile_metadata_size_is_refused(autojump_clock, size, why, caplog):
    caplog.set_level(logging.INFO)
    with trio.move_on_after(30):
        await fetch({A: ExtBehaviour(INFO, size=size)}, [A])
    assert f"closed: {why}" in caplog.text


async def test_resolve_times_out_with_one_line_then_caches(autojump_clock, tmp_path):
    with pytest.raises(MetadataTimeout) as e:
        await resolve(MAGNET, tmp_path, peer_id=PEER_ID, port=6881, timeout=5,
                      sources=[static_source([])])
    assert str(e.value) == (f"no metadata for {MAGNET.info_hash_hex} after 5 s "
                            "(asked 1 tracker)")
    async with trio.open_nursery() as n:
        net = FakeNet(n, {A: ExtBehaviour(INFO)})

        async def via_fake(add):
            add([A])
        meta, found = await resolve(MAGNET, tmp_path, peer_id=PEER_ID, port=6881,
                                    timeout=30, sources=[via_fake], connect=net.connect)
        n.cancel_scope.cancel()
    assert meta.name == "film.mkv" and meta.announce_list == (("http://127.0.0.1:1/announce",),)
    cached = tmp_path / INFO_FILE
    assert cached.read_bytes() == INFO and cached.stat().st_mode & 0o777 == 0o600

    async def no_source(add):
        raise AssertionError("the cache should have answered")
    meta2, _ = await resolve(MAGNET, tmp_path, peer_id=PEER_ID, port=6881, timeout=1,
                             sources=[no_source])
    assert meta2 == meta


async def test_a_corrupt_cache_is_not_trusted(autojump_clock, tmp_path):
    (tmp_path / INFO_FILE).write_bytes(INFO[:-1] + b"x")
    with pytest.raises(MetadataTimeout):
        await resolve(MAGNET, tmp_path, peer_id=PEER_ID, port=6881, timeout=2,
                      sources=[static_source([])])
