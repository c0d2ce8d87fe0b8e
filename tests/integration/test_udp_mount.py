"""Integration: a torrent whose only tracker is opentracker's UDP port (BEP 15). A
libtorrent seeder announces there; a torrentfs mount finds it only through that
tracker (no --peer) and reads every file byte-exact."""

from __future__ import annotations

import pytest

from tests.harness.payload import cmp_tree, make_payload
from tests.harness.swarm import lt_create, lt_seeder, opentracker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_mount_finds_its_seeder_through_a_udp_tracker(tmp_path, mount_torrent):
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 3 * 1024 * 1024 + 321, seed=15)
    torrent = tmp_path / "udp.torrent"
    with opentracker() as tracker:
        info_hash = lt_create(payload, torrent, tracker.udp_url, piece_size=64 * 1024)
        tracker.add(info_hash)
        with lt_seeder(torrent, data, ip="127.0.0.6") as seeder:
            tracker.wait_peers(info_hash, 1, timeout=20)
            m = mount_torrent(torrent)
            cmp_tree(payload, m.path / "payload", m)
            assert m.unmount().returncode == 0
    log = m.log
    assert f"announced to {tracker.udp_url}" in log, log[-3000:]
    assert f"<peer 127.0.0.6:{seeder.port}>" in log, log[-3000:]


def test_mount_a_magnet_whose_only_tracker_is_udp(tmp_path, mount_torrent):
    from tests.harness.payload import magnet_of
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 2 * 1024 * 1024 + 77, seed=16)
    torrent = tmp_path / "udp.torrent"
    with opentracker() as tracker:
        info_hash = lt_create(payload, torrent, tracker.udp_url, piece_size=64 * 1024)
        tracker.add(info_hash)
        with lt_seeder(torrent, data, ip="127.0.0.7") as seeder:
            tracker.wait_peers(info_hash, 1, timeout=20)
            m = mount_torrent(magnet_of(info_hash, trackers=[tracker.udp_url]),
                              "--metadata-timeout", "60")
            cmp_tree(payload, m.path / "payload", m)
            assert m.unmount().returncode == 0
    assert f"announced to {tracker.udp_url}" in m.log, m.log[-3000:]
    assert f"<peer 127.0.0.7:{seeder.port}>" in m.log, m.log[-3000:]
