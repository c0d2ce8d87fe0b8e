"""Integration: torrentfs seeds back. Real leechers nobody here wrote (libtorrent,
transmission) download whole torrents byte-exact from a torrentfs mount that is the
only seeder (its pieces read through the mount first) and from ``torrentfs seed``."""

from __future__ import annotations

import subprocess

import pytest

from tests.harness.command import TORRENTFS
from tests.harness.mounts import Seed, pid_alive
from tests.harness.netns import netns_host, transmission_download
from tests.harness.payload import make_payload, same_tree
from tests.harness.swarm import (
    free_port,
    lt_create,
    lt_leecher,
    lt_seeder,
    opentracker,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PIECE = 64 * 1024


def test_libtorrent_leeches_everything_from_torrentfs_seed(tmp_path):
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 3 * 1024 * 1024 + 17, seed=21)
    torrent = tmp_path / "t.torrent"
    lt_create(payload, torrent, None, piece_size=PIECE)
    port = free_port()
    with Seed(torrent, data, tmp_path / "cache", port):
        out = tmp_path / "out"
        r = lt_leecher(torrent, out, ip="127.0.0.11", peers=[f"127.0.0.1:{port}"], timeout=60)
        assert r.returncode == 0, r.stderr
    same_tree(payload, out / "payload")


def test_seed_refuses_data_that_does_not_verify(tmp_path):
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 300_000, seed=22)
    torrent = tmp_path / "t.torrent"
    lt_create(payload, torrent, None, piece_size=PIECE)
    for f in payload.rglob("*"):
        if f.is_file() and f.stat().st_size:
            f.write_bytes(b"\0" * f.stat().st_size)  # same sizes, wrong bytes
    r = subprocess.run([TORRENTFS, "seed", str(torrent), str(data), "--cache-dir",
                        str(tmp_path / "c"), "--no-lsd", "--no-port-mapping"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "no piece" in r.stderr and "Traceback" not in r.stderr


def test_libtorrent_leeches_everything_from_a_mount(tmp_path, mount_torrent):
    """The mount reads everything from a libtorrent seeder, which then goes away;
    a libtorrent leecher gets the whole torrent from the mount alone."""
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 2 * 1024 * 1024 + 5, seed=23)
    torrent = tmp_path / "t.torrent"
    lt_create(payload, torrent, None, piece_size=PIECE)
    port = free_port()
    with lt_seeder(torrent, data, ip="127.0.0.12") as origin:
        m = mount_torrent(torrent, "--peer", origin.endpoint, "--port", str(port))
        same_tree(payload, m.path / "payload")  # reads every byte through the mount
    out = tmp_path / "out"
    r = lt_leecher(torrent, out, ip="127.0.0.13", peers=[f"127.0.0.1:{port}"], timeout=60)
    assert r.returncode == 0, r.stderr + m.log[-2000:]
    same_tree(payload, out / "payload")


def test_transmission_leeches_from_torrentfs_seed(tmp_path):
    """transmission-cli 3.00 in a namespace of the test's own finds `torrentfs seed`
    through opentracker and downloads the whole torrent from it."""
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 2 * 1024 * 1024 + 9, seed=24)
    with netns_host() as host:
        with opentracker(host="127.0.0.1", extra_hosts=[host.host_ip]) as tracker:
            torrent = tmp_path / "t.torrent"
            tracker.add(lt_create(payload, torrent, tracker.announce_url_for(host.host_ip),
                                  piece_size=PIECE))
            with Seed(torrent, data, tmp_path / "cache", free_port()):
                out = tmp_path / "out"
                transmission_download(torrent, out, host, timeout=120)
    same_tree(payload, out / "payload", empty_files=False)  # transmission makes none


def test_seed_after_keeps_serving_once_unmounted(tmp_path, mount_torrent):
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 1024 * 1024 + 3, seed=25)
    torrent = tmp_path / "t.torrent"
    lt_create(payload, torrent, None, piece_size=PIECE)
    port = free_port()
    with lt_seeder(torrent, data, ip="127.0.0.14") as origin:
        m = mount_torrent(torrent, "--peer", origin.endpoint, "--port", str(port),
                          "--seed-after", "time=120")
        same_tree(payload, m.path / "payload")
        pid = m.pid()
        r = m.unmount()
        assert r.returncode == 0 and "still" not in r.stderr, r.stderr
    assert pid_alive(pid), "the daemon stays on to seed"
    try:
        out = tmp_path / "out"
        res = lt_leecher(torrent, out, ip="127.0.0.15", peers=[f"127.0.0.1:{port}"],
                         timeout=60)
        assert res.returncode == 0, res.stderr + m.log[-2000:]
        same_tree(payload, out / "payload")
        assert "seeding on until time 120" in m.log
    finally:
        import os
        import signal
        os.kill(pid, signal.SIGTERM)
        wait_until(lambda: not pid_alive(pid), timeout=15)


def test_upload_rate_cap_holds(tmp_path):
    """With --upload-rate 512K a 2 MiB download cannot finish in under ~3.5 s."""
    import time
    data = tmp_path / "data"
    (data / "payload").mkdir(parents=True)
    (data / "payload" / "blob").write_bytes(bytes(range(256)) * 8192)  # 2 MiB
    torrent = tmp_path / "t.torrent"
    lt_create(data / "payload", torrent, None, piece_size=PIECE)
    port = free_port()
    with Seed(torrent, data, tmp_path / "cache", port, "--upload-rate", "512K"):
        t0 = time.monotonic()
        r = lt_leecher(torrent, tmp_path / "out", ip="127.0.0.16",
                       peers=[f"127.0.0.1:{port}"], timeout=60)
        elapsed = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
    # 2 MiB at 512 KiB/s with a 128 KiB burst: at least (2048 - 128) / 512 = 3.75 s.
    assert elapsed >= 3.5, elapsed


def test_transmission_leeches_everything_from_a_mount(tmp_path, mount_torrent):
    """The mount reads everything from a libtorrent seeder, which then goes away;
    transmission-cli, in a namespace of the test's own, finds the mount through
    opentracker and downloads the whole torrent from it alone."""
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 2 * 1024 * 1024 + 11, seed=26)
    with netns_host() as host:
        with opentracker(host="127.0.0.1", extra_hosts=[host.host_ip]) as tracker:
            torrent = tmp_path / "t.torrent"
            tracker.add(lt_create(payload, torrent, tracker.announce_url_for(host.host_ip),
                                  piece_size=PIECE))
            with lt_seeder(torrent, data, ip="127.0.0.17") as origin:
                m = mount_torrent(torrent, "--peer", origin.endpoint)
                same_tree(payload, m.path / "payload")
            out = tmp_path / "out"
            transmission_download(torrent, out, host, timeout=120)
            assert m.unmount().returncode == 0
    same_tree(payload, out / "payload", empty_files=False)  # transmission makes none
    import re
    sent = [int(n) for n in re.findall(rf"<peer {re.escape(host.ns_ip)}:\d+> closed: .*"
                                       r"sent (\d+)\)", m.log)]
    assert sum(sent) >= 2 * 1024 * 1024, m.log[-2000:]
