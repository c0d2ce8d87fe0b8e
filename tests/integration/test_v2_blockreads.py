"""Integration: block-level reads of a v2 torrent (BEP 52) from a libtorrent seeder.

A v2 torrent of 16 MiB pieces made and seeded by python3-libtorrent: a 64 KiB read
at a random offset returns once its own blocks are verified against leaf hashes
libtorrent sent (proved to the piece layer), after fetching far less than the
16 MiB piece a v1 torrent would need; the bytes match. The same read of a v1
torrent of the same payload and piece size fetches the whole piece."""

from __future__ import annotations

import random

import pytest
import trio

from tests.harness.payload import data_of
from tests.harness.swarm import lt_create, lt_seeder
from torrentfs.core.metainfo import parse
from torrentfs.engine.options import TorrentOptions
from torrentfs.engine.torrent import Torrent

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PIECE = 16 << 20
SIZE = 3 * PIECE + 777_777   # 4 pieces, the last short
READ = 64 << 10


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    base = tmp_path_factory.mktemp("v2blocks")
    payload = base / "data" / "big.bin"
    payload.parent.mkdir()
    payload.write_bytes(data_of(SIZE, 14))
    return base, payload


def endpoint(seeder) -> tuple[str, int]:
    host, port = seeder.endpoint.rsplit(":", 1)
    return host, int(port)


async def timed_reads(meta, folder, peer, offsets):
    """Each read's (bytes, bytes downloaded when it returned), on a fresh Torrent."""
    options = TorrentOptions(listen=False, announce=False, utp=False, peers=(peer,),
                             read_timeout=60.0)
    t = Torrent(meta, folder, options)
    out = []
    async with trio.open_nursery() as n:
        await n.start(t.run)
        for offset in offsets:
            before = t.downloaded
            data = await t.read(0, offset, READ)
            out.append((bytes(data), t.downloaded - before))
        n.cancel_scope.cancel()
    return out, t


def offsets_in_distinct_pieces(seed: int) -> list[int]:
    rng = random.Random(seed)
    return [i * PIECE + rng.randrange(0, PIECE - READ) for i in (0, 1, 2)]


def test_a_v2_read_fetches_its_blocks_not_its_16_mib_piece(big, tmp_path):
    base, payload = big
    torrent = tmp_path / "v2.torrent"
    lt_create(payload, torrent, piece_size=PIECE, version="v2")
    meta = parse(torrent.read_bytes())
    assert meta.version == "v2" and meta.piece_length == PIECE
    original = payload.read_bytes()
    offsets = offsets_in_distinct_pieces(52)
    with lt_seeder(torrent, payload.parent, ip="127.0.0.61") as seeder:
        results, t = trio.run(timed_reads, meta, tmp_path / "cache", endpoint(seeder),
                              offsets)
    for offset, (data, fetched) in zip(offsets, results):
        assert data == original[offset:offset + READ], offset
        assert fetched < 4 << 20, (offset, fetched)  # v1 must fetch 16 MiB
    assert t.reads.blocks.served == len(offsets)
    assert t.reads.blocks.verified >= len(offsets) * READ // (16 << 10)


def test_the_same_read_of_a_v1_torrent_fetches_its_piece(big, tmp_path):
    base, payload = big
    torrent = tmp_path / "v1.torrent"
    lt_create(payload, torrent, piece_size=PIECE, version="v1")
    meta = parse(torrent.read_bytes())
    original = payload.read_bytes()
    offset = offsets_in_distinct_pieces(53)[1]
    with lt_seeder(torrent, payload.parent, ip="127.0.0.62") as seeder:
        results, t = trio.run(timed_reads, meta, tmp_path / "cache", endpoint(seeder),
                              [offset])
    data, fetched = results[0]
    assert data == original[offset:offset + READ]
    assert fetched >= PIECE
    assert not t.reads.blocks.enabled
