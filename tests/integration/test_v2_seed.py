"""Integration: libtorrent 2.0 leeches BEP 52 torrents (v2-only and hybrid, made by
libtorrent) from ``torrentfs seed`` as the only seeder, byte-exact."""

from __future__ import annotations

import pytest

from tests.harness.mounts import Seed
from tests.harness.payload import make_payload, same_tree
from tests.harness.swarm import free_port, lt_create, lt_leecher

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
