"""Integration: uTP (BEP 29) against libtorrent with TCP off both ways, so every
byte crosses our uTP. A uTP-only libtorrent seeder -> mount (cmp every file, 50
random ranges); a uTP-only libtorrent leecher <- ``torrentfs seed`` and <- a mount."""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.harness.mounts import Seed
from tests.harness.payload import cmp_tree, dd_random_ranges, make_payload, same_tree
from tests.harness.swarm import free_port, lt_create, lt_leecher, lt_seeder, opentracker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

SIZE = 6 * 1024 * 1024 + 4321
PIECE = 128 * 1024


@pytest.fixture(scope="module")
def utp_swarm(tmp_path_factory):
    """A payload, its torrent, opentracker and a libtorrent seeder that speaks only
    uTP (TCP off in and out), announced through the tracker."""
    base = tmp_path_factory.mktemp("utp")
    payload = make_payload(base / "data" / "payload", SIZE, seed=29)
    with opentracker() as tracker:
        torrent = base / "payload.torrent"
        info_hash = lt_create(payload, torrent, tracker.announce_url, piece_size=PIECE)
        tracker.add(info_hash)
        with lt_seeder(torrent, base / "data", ip="127.0.0.29", utp=True, tcp=False) as s:
            yield {"payload": payload, "torrent": torrent, "seeder": s, "base": base}


def _blocks_by_peer(log: str) -> dict[str, int]:
    return {ip: int(n) for ip, n in re.findall(
        r"<peer (127\.0\.0\.\d+):\d+> closed: .* \(received (\d+) bytes", log)}


def test_mount_reads_everything_from_a_utp_only_seeder(utp_swarm, mount_torrent):
    m = mount_torrent(utp_swarm["torrent"])
    cmp_tree(utp_swarm["payload"], m.path / "payload", m)
    assert m.unmount().returncode == 0
    assert _blocks_by_peer(m.log).get("127.0.0.29", 0) >= SIZE, m.log[-3000:]
    assert "<peer 127.0.0.29:" in m.log and "over uTP (outgoing)" in m.log


def test_fifty_random_ranges_over_utp(utp_swarm, mount_torrent):
    m = mount_torrent(utp_swarm["torrent"], "--peer", utp_swarm["seeder"].endpoint,
                      "--no-tcp")
    big = next(p for p in utp_swarm["payload"].rglob("*") if p.stat().st_size > SIZE // 2)
    rel = big.relative_to(utp_swarm["payload"])
    original = big.read_bytes()
    dd_random_ranges(m.path / "payload" / rel, original, 29, PIECE)


def test_utp_only_libtorrent_leeches_from_torrentfs_seed(tmp_path):
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 3 * 1024 * 1024 + 17, seed=30)
    torrent = tmp_path / "t.torrent"
    lt_create(payload, torrent, None, piece_size=64 * 1024)
    port = free_port()
    with Seed(torrent, data, tmp_path / "cache", port, "--no-tcp") as seed:
        out = tmp_path / "out"
        r = lt_leecher(torrent, out, ip="127.0.0.30", peers=[f"127.0.0.1:{port}"],
                       utp=True, tcp=False, timeout=90)
        assert r.returncode == 0, r.stderr + seed.log.read_text()[-3000:]
    same_tree(payload, out / "payload")


def test_utp_only_libtorrent_leeches_from_a_mount(tmp_path, mount_torrent):
    """The mount reads everything from a uTP-only seeder, which then goes away; a
    uTP-only leecher gets the whole torrent from the mount alone."""
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 2 * 1024 * 1024 + 5, seed=31)
    torrent = tmp_path / "t.torrent"
    lt_create(payload, torrent, None, piece_size=64 * 1024)
    port = free_port()
    with lt_seeder(torrent, data, ip="127.0.0.31", utp=True, tcp=False) as origin:
        m = mount_torrent(torrent, "--peer", origin.endpoint, "--port", str(port))
        same_tree(payload, m.path / "payload")
    out = tmp_path / "out"
    r = lt_leecher(torrent, out, ip="127.0.0.32", peers=[f"127.0.0.1:{port}"],
                   utp=True, tcp=False, timeout=90)
    assert r.returncode == 0, r.stderr + m.log[-2000:]
    same_tree(payload, out / "payload")


def test_utp_through_a_dropping_rate_limited_link(tmp_path, mount_torrent):
    """`torrentfs seed --no-tcp` in a namespace whose link out is a tbf of 8 Mbit/s
    with a queue of a few packets (netem is not in this kernel: the drops are the
    queue's); a mount over uTP reads everything byte-exact, and packets were dropped."""
    from tests.harness.command import TORRENTFS
    from tests.harness.netns import netns_host
    from tests.harness.swarm import stop_process, wait_until

    data = tmp_path / "data"
    payload = make_payload(data / "payload", 3 * 1024 * 1024 + 3, seed=32)
    torrent = tmp_path / "t.torrent"
    lt_create(payload, torrent, None, piece_size=64 * 1024)
    port = free_port()
    with netns_host() as host:
        r = subprocess.run(["tc", "-n", host.ns, "qdisc", "replace", "dev", host.ns_if,
                            "root", "tbf", "rate", "8mbit", "burst", "12kb",
                            "limit", "15kb"], capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        log = tmp_path / "seed.log"
        with open(log, "wb") as err:
            seed = host.popen([TORRENTFS, "seed", str(torrent), str(data), "--port", str(port),
                               "--cache-dir", str(tmp_path / "seed-cache"), "--no-lsd",
                               "--no-dht", "--no-tcp"], stdout=subprocess.DEVNULL,
                              stderr=err, stdin=subprocess.DEVNULL)
        try:
            wait_until(lambda: b"seeding " in log.read_bytes() or seed.poll() is not None,
                       timeout=60)
            assert seed.poll() is None, log.read_text()
            m = mount_torrent(torrent, "--peer", f"{host.ns_ip}:{port}", "--no-tcp")
            cmp_tree(payload, m.path / "payload", m)
            stats = host.run(["tc", "-s", "qdisc", "show", "dev", host.ns_if],
                             capture_output=True, text=True).stdout
            dropped = int(re.search(r"dropped (\d+)", stats).group(1))
            assert dropped > 0, stats
            assert "over uTP (outgoing)" in m.log
        finally:
            stop_process(seed)


def test_watch_mount_reads_from_a_utp_only_seeder(utp_swarm, mount_torrent, tmp_path):
    """mount --watch: its torrents dial uTP from the mount's one UDP socket."""
    import shutil
    watched = tmp_path / "watched"
    watched.mkdir()
    shutil.copy(utp_swarm["torrent"], watched / "p.torrent")
    m = mount_torrent(watched, watch=True)
    cmp_tree(utp_swarm["payload"], m.path / "payload", m)
    assert "over uTP (outgoing)" in m.log


def test_utp_only_libtorrent_leeches_from_a_watch_mount(tmp_path, mount_torrent):
    """Incoming uTP to a watch mount is routed by the handshake's info-hash."""
    import shutil
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 1024 * 1024 + 7, seed=33)
    torrent = tmp_path / "t.torrent"
    lt_create(payload, torrent, None, piece_size=64 * 1024)
    watched = tmp_path / "watched"
    watched.mkdir()
    shutil.copy(torrent, watched / "t.torrent")
    port = free_port()
    with lt_seeder(torrent, data, ip="127.0.0.33", utp=True, tcp=False) as origin:
        m = mount_torrent(watched, "--peer", origin.endpoint, "--port", str(port),
                          watch=True)
        same_tree(payload, m.path / "payload")
    out = tmp_path / "out"
    r = lt_leecher(torrent, out, ip="127.0.0.34", peers=[f"127.0.0.1:{port}"],
                   utp=True, tcp=False, timeout=90)
    assert r.returncode == 0, r.stderr + m.log[-2000:]
    same_tree(payload, out / "payload")
    assert "over uTP (incoming)" in m.log
