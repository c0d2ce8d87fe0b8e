"""Integration: magnet links and peer exchange against real libtorrent peers and
opentracker. torrentfs mounts a magnet (metadata from a libtorrent seeder found
through the tracker, or through an x.pe hint alone), mounts it again offline from
its cache, serves a libtorrent magnet leecher, and learns a peer through PEX."""

from __future__ import annotations

import re
import time

import pytest

from tests.harness.mounts import Seed
from tests.harness.payload import cmp_tree, magnet_of, make_payload, same_tree, tree_of
from tests.harness.swarm import (
    free_port,
    lt_create,
    lt_leecher,
    lt_leeching,
    lt_seeder,
    opentracker,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PIECE = 64 * 1024


def test_mount_magnet_through_tracker_then_again_from_cache(tmp_path, mount_torrent):
    """The metadata comes from a libtorrent seeder found through opentracker; every
    file reads byte-exact; a second mount with the same cache, nobody reachable,
    lists the tree at once."""
    payload = make_payload(tmp_path / "data" / "payload", 2 * 1024 * 1024 + 99, seed=31)
    torrent = tmp_path / "t.torrent"
    with opentracker() as tracker:
        info_hash = lt_create(payload, torrent, tracker.announce_url, piece_size=PIECE)
        tracker.add(info_hash)
        with lt_seeder(torrent, tmp_path / "data", ip="127.0.0.21"):
            tracker.wait_peers(info_hash)
            uri = magnet_of(info_hash, trackers=[tracker.announce_url], name="payload")
            cache = tmp_path / "cache"
            m = mount_torrent(uri, "--metadata-timeout", "60", cache=cache)
            t_listed = time.monotonic()
            assert tree_of(m.path / "payload") == tree_of(payload)
            listed = m.elapsed + (time.monotonic() - t_listed)
            print(f"\nmagnet mount to listed tree: {listed:.2f} s")
            assert re.search(r"metadata of \w+ \(payload\) fetched in", m.log), m.log[-2000:]
            cmp_tree(payload, m.path / "payload", m)
            assert m.unmount().returncode == 0
            info = cache / info_hash.hex() / "info.bencode"
            assert info.stat().st_mode & 0o777 == 0o600
        # No seeder now, and the tracker is gone too once we leave this block.
    dead = magnet_of(info_hash, trackers=[f"http://127.0.0.1:{free_port()}/announce"])
    t0 = time.monotonic()
    m2 = mount_torrent(dead, "--metadata-timeout", "60", cache=cache)
    assert tree_of(m2.path / "payload") == tree_of(payload)
    assert time.monotonic() - t0 < 10
    assert "from the cache" in m2.log
    # What was read before reads again with nobody to ask.
    assert (m2.path / "payload" / "docs" / "readme.txt").read_text() == "hello from torrentfs\n"


def test_mount_magnet_with_only_a_peer_hint(tmp_path, mount_torrent):
    payload = make_payload(tmp_path / "data" / "payload", 1024 * 1024 + 5, seed=32)
    torrent = tmp_path / "t.torrent"
    info_hash = lt_create(payload, torrent, None, piece_size=PIECE)
    with lt_seeder(torrent, tmp_path / "data", ip="127.0.0.22") as seeder:
        m = mount_torrent(magnet_of(info_hash, peers=[seeder.endpoint]),
                          "--metadata-timeout", "60")
        assert tree_of(m.path / "payload") == tree_of(payload)
        cmp_tree(payload, m.path / "payload", m)


def test_mount_magnet_times_out_with_one_clear_line(tmp_path, mount_torrent):
    uri = magnet_of(bytes(range(20)), peers=[f"127.0.0.1:{free_port()}"])
    m = mount_torrent(uri, "--metadata-timeout", "2", expect_ok=False)
    r = m.result
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert lines[0].startswith("torrentfs: error: no metadata for 000102") and "2 s" in lines[0]


def test_libtorrent_magnet_leecher_gets_metadata_and_data_from_torrentfs(tmp_path):
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 1024 * 1024 + 77, seed=33)
    torrent = tmp_path / "t.torrent"
    info_hash = lt_create(payload, torrent, None, piece_size=PIECE)
    port = free_port()
    with Seed(torrent, data, tmp_path / "cache", port):
        out = tmp_path / "out"
        r = lt_leecher(None, out, ip="127.0.0.23", peers=[f"127.0.0.1:{port}"], timeout=60,
                       magnet=magnet_of(info_hash))
        assert r.returncode == 0, r.stderr[-3000:]
    same_tree(payload, out / "payload")


def test_pex_brings_a_peer_torrentfs_was_not_given(tmp_path, mount_torrent):
    """torrentfs knows only libtorrent peer A; A is connected to libtorrent peer B;
    through A's ut_pex torrentfs learns B and connects to it."""
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 4 * 1024 * 1024, seed=34)
    torrent = tmp_path / "t.torrent"
    lt_create(payload, torrent, None, piece_size=PIECE)
    with lt_seeder(torrent, data, ip="127.0.0.24") as a, \
         lt_leeching(torrent, tmp_path / "b", ip="127.0.0.25", peers=[a.endpoint],
                     download_rate=64 * 1024) as b:
        m = mount_torrent(torrent, "--peer", a.endpoint)
        wait_until(lambda: re.search(rf"connected to <peer {re.escape(b.ip)}:{b.port}> \(out\)",
                                     m.log), timeout=60,
                   message=f"torrentfs never connected to B\n{m.log[-3000:]}")
        assert re.search(rf"pex: \d+ new peers from <peer {re.escape(a.ip)}:{a.port}>", m.log)
        # And the data is right, from whoever gives it.
        assert (m.path / "payload" / "z-small.bin").read_bytes() == \
            (payload / "z-small.bin").read_bytes()
