"""Integration: the upload path of issue 13 against a real leecher nobody here wrote.
A libtorrent leecher downloads a multi-file torrent of 2 MiB pieces (so an upload
chunk of 1 MiB is half a piece, and files straddle chunks and pieces) from
``torrentfs seed`` alone, byte-exact: over plain TCP (blocks read from the page
cache in the trio thread, many per round, sent with ``sendmsg``) and with forced
RC4 (the encrypted stream gets the queue joined)."""

from __future__ import annotations

import pytest

from tests.harness.mounts import Seed
from tests.harness.payload import make_payload, same_tree
from tests.harness.swarm import free_port, lt_create, lt_leecher

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PIECE = 2 * 1024 * 1024


@pytest.mark.parametrize("encryption", [None, "forced"], ids=["plain", "rc4"])
def test_libtorrent_leeches_big_pieces_from_torrentfs_seed(tmp_path, encryption):
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 9 * 1024 * 1024 + 4099, seed=131)
    torrent = tmp_path / "t.torrent"
    lt_create(payload, torrent, None, piece_size=PIECE)
    port = free_port()
    extra = ("--encryption", "prefer") if encryption else ()
    with Seed(torrent, data, tmp_path / "cache", port, *extra) as seed:
        out = tmp_path / "out"
        r = lt_leecher(torrent, out, ip="127.0.0.131", peers=[f"127.0.0.1:{port}"],
                       encryption=encryption, timeout=90)
        assert r.returncode == 0, r.stderr + seed.log.read_text()[-3000:]
        log = seed.log.read_text()
    same_tree(payload, out / "payload")
    assert ("(RC4)" in log) == (encryption == "forced")
