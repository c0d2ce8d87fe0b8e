"""Integration: libtorrent 2.0 leeches BEP 52 torrents (v2-only and hybrid, made by
libtorrent) from ``torrentfs seed`` as the only seeder, byte-exact."""

from __future__ import annotations

import pytest

from tests.harness.mounts import Seed
from tests.harness.payload import make_payload, same_tree
from tests.harness.swarm import free_port, lt_create, lt_leecher
from torrentfs.core.metainfo import parse

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PIECE = 64 * 1024


@pytest.mark.parametrize("version", ["v2", "hybrid"])
def test_libtorrent_leeches_v2_from_torrentfs_seed(tmp_path, version):
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 3 * 1024 * 1024 + 17, seed=25)
    torrent = tmp_path / "t.torrent"
    lt_create(payload, torrent, None, piece_size=PIECE, version=version)
    port = free_port()
    with Seed(torrent, data, tmp_path / "cache", port):
        out = tmp_path / "out"
        r = lt_leecher(torrent, out, ip="127.0.0.14", peers=[f"127.0.0.1:{port}"], timeout=60)
        assert r.returncode == 0, r.stderr
    same_tree(payload, out / "payload")


def test_libtorrent_leeches_a_btmh_magnet_from_torrentfs_seed(tmp_path):
    """libtorrent starts from a v2 magnet link (urn:btmh): it gets the metadata (BEP 9)
    and then every piece layer from our answers to its hash requests, and would
    fail any piece whose hashes we got wrong."""
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 3 * 1024 * 1024 + 17, seed=26)
    torrent = tmp_path / "t.torrent"
    lt_create(payload, torrent, None, piece_size=PIECE, version="v2")
    meta = parse(torrent.read_bytes())
    magnet = f"magnet:?xt=urn:btmh:1220{meta.info_hash_v2.hex()}&dn=payload"
    port = free_port()
    with Seed(torrent, data, tmp_path / "cache", port) as seed:
        out = tmp_path / "out"
        r = lt_leecher(None, out, ip="127.0.0.15", peers=[f"127.0.0.1:{port}"], timeout=60,
                       magnet=magnet)
        assert r.returncode == 0, r.stderr
        log = seed.log.read_text()
    # The piece layers came from us (big.bin is 49 pieces: one run of 64 hashes).
    assert "hash request for 64 hashes at layer 2 from 0: answered" in log, log[-3000:]
    same_tree(payload, out / "payload")


def test_libtorrent_in_the_v2_swarm_of_a_hybrid_leeches_from_torrentfs_seed(tmp_path):
    """A hybrid torrent's v2 swarm: libtorrent knows it only by a v2 magnet link
    (urn:btmh, no btih), so it connects naming the v2 info-hash cut to 20 bytes.
    ``torrentfs seed`` of the hybrid takes that handshake, answers it with the same
    hash, serves the metadata and every piece, each checked by libtorrent against
    both hash kinds."""
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 3 * 1024 * 1024 + 17, seed=27)
    torrent = tmp_path / "t.torrent"
    lt_create(payload, torrent, None, piece_size=PIECE, version="hybrid")
    meta = parse(torrent.read_bytes())
    assert meta.version == "hybrid" and meta.info_hash != meta.info_hash_v2[:20]
    magnet = f"magnet:?xt=urn:btmh:1220{meta.info_hash_v2.hex()}&dn=payload"
    port = free_port()
    with Seed(torrent, data, tmp_path / "cache", port):
        out = tmp_path / "out"
        r = lt_leecher(None, out, ip="127.0.0.16", peers=[f"127.0.0.1:{port}"], timeout=60,
                       magnet=magnet)
        assert r.returncode == 0, r.stderr
    same_tree(payload, out / "payload")
