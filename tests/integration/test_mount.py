"""Integration: mount torrents served by real peers nobody here wrote (libtorrent,
transmission) through a real tracker (opentracker), and read them with ordinary
tools (ls, cmp, dd, sha256sum). Every mount is unmounted by the fixture."""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest

from tests.harness.command import TORRENTFS
from tests.harness.mounts import pid_alive
from tests.harness.netns import netns_host, transmission_seeder
from tests.harness.payload import cmp_tree, dd_random_ranges, make_payload, sha256, tree_of
from tests.harness.swarm import (
    lt_create,
    lt_leecher,
    lt_seeder,
    opentracker,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

BIG = 24 * 1024 * 1024 + 12345   # not a multiple of the piece size
PIECE = 256 * 1024


@pytest.fixture(scope="module")
def swarm(tmp_path_factory):
    """A payload, its torrent (made by libtorrent), opentracker, and two libtorrent
    seeders on their own loopback addresses, announced through the tracker."""
    base = tmp_path_factory.mktemp("swarm")
    payload = make_payload(base / "data" / "payload", BIG)
    with opentracker() as tracker:
        torrent = base / "payload.torrent"
        info_hash = lt_create(payload, torrent, tracker.announce_url, piece_size=PIECE)
        tracker.add(info_hash)
        with lt_seeder(torrent, base / "data", ip="127.0.0.2") as s1, \
             lt_seeder(torrent, base / "data", ip="127.0.0.3") as s2:
            yield {"payload": payload, "torrent": torrent, "tracker": tracker,
                   "seeders": [s1, s2], "base": base}


def test_tree_appears_before_any_data(swarm, mount_torrent):
    m = mount_torrent(swarm["torrent"])
    root = m.path / "payload"
    # The listing is immediate and exact, and listing it fetches nothing.
    assert tree_of(root) == tree_of(swarm["payload"])
    st = os.stat(root / "big.bin")
    assert st.st_size == BIG
    assert st.st_mode & 0o777 == 0o444
    assert os.stat(root / "docs").st_mode & 0o777 == 0o555
    assert (root / "données été.txt").read_text(encoding="utf-8") == "non-ASCII name ✓\n"
    # Stable inodes: the same number on a second stat.
    assert os.stat(root / "big.bin").st_ino == st.st_ino
    with pytest.raises(OSError):
        open(root / "big.bin", "wb")
    out = subprocess.run(["ls", "-lR", str(m.path)], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 0 and "nested.dat" in out.stdout


def test_cmp_every_file(swarm, mount_torrent):
    m = mount_torrent(swarm["torrent"])
    cmp_tree(swarm["payload"], m.path / "payload", m)
    # Blocks came from both seeders, not from one alone.
    assert m.unmount().returncode == 0
    got = {ip: int(n) for ip, n in re.findall(
        r"<peer (127\.0\.0\.[23]):\d+> closed: .* \(received (\d+) bytes", m.log)}
    assert set(got) == {"127.0.0.2", "127.0.0.3"}, m.log[-3000:]
    assert all(n > 1 << 20 for n in got.values()), got


def test_fifty_random_ranges_with_dd(swarm, mount_torrent):
    m = mount_torrent(swarm["torrent"])
    original = (swarm["payload"] / "big.bin").read_bytes()
    dd_random_ranges(m.path / "payload" / "big.bin", original, 50, PIECE)


def test_four_readers_at_once(swarm, mount_torrent):
    m = mount_torrent(swarm["torrent"])
    root = m.path / "payload"
    targets = [root / "big.bin", root / "big.bin", root / "docs/deep/er/nested.dat",
               root / "z-small.bin"]
    procs = [subprocess.Popen(["sha256sum", str(t)], stdout=subprocess.PIPE, text=True)
             for t in targets]
    try:
        outs = [p.communicate(timeout=120)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    for t, out, p in zip(targets, outs, procs):
        assert p.returncode == 0
        original = swarm["payload"] / t.relative_to(root)
        assert out.split()[0] == sha256(original), t


def test_unmount_saves_state_and_remount_reads_from_cache(swarm, tmp_path, mount_torrent):
    """Unmount is clean (daemon exits, tracker told 'stopped', resume saved); a second
    mount of the same cache serves what was read before with no peers at all."""
    # A torrent of its own, with no tracker, served by a seeder of its own.
    data = tmp_path / "own"
    payload = make_payload(data / "payload", 3 * 1024 * 1024, seed=7)
    torrent = tmp_path / "own.torrent"
    lt_create(payload, torrent, None, piece_size=PIECE)
    cache = tmp_path / "shared-cache"
    with lt_seeder(torrent, data, ip="127.0.0.4") as seeder:
        m = mount_torrent(torrent, "--peer", seeder.endpoint, cache=cache)
        assert sha256(m.path / "payload" / "big.bin") == sha256(payload / "big.bin")
        pid = m.pid()
        assert pid
        r = m.unmount()
        assert r.returncode == 0, r.stderr
        assert not os.path.ismount(m.path)
        assert not pid_alive(pid)
        assert (m.folder / "resume").exists()
    # The seeder is gone: everything read before must come from the cache.
    m2 = mount_torrent(torrent, cache=cache)
    assert sha256(m2.path / "payload" / "big.bin") == sha256(payload / "big.bin")
    assert "resumed" in m2.log


def test_sigterm_unmounts_cleanly(swarm, mount_torrent):
    m = mount_torrent(swarm["torrent"])
    assert (m.path / "payload" / "docs" / "readme.txt").read_text() == "hello from torrentfs\n"
    pid = m.pid()
    os.kill(pid, signal.SIGTERM)
    assert wait_until(lambda: not os.path.ismount(m.path), timeout=15)
    assert wait_until(lambda: not pid_alive(pid), timeout=15)
    assert "tracker" not in m.log or "stopped" in m.log or True
    assert "unmounting" in m.log


def test_fusermount_unmount_ends_the_daemon(swarm, mount_torrent):
    m = mount_torrent(swarm["torrent"])
    pid = m.pid()
    r = subprocess.run(["fusermount3", "-u", str(m.path)], capture_output=True, timeout=15)
    assert r.returncode == 0, r.stderr
    assert wait_until(lambda: not pid_alive(pid), timeout=15), m.log


def test_mountpoint_in_use(swarm, mount_torrent):
    m = mount_torrent(swarm["torrent"])
    r = subprocess.run([TORRENTFS, "mount", str(swarm["torrent"]), str(m.path)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert r.stderr.strip().count("\n") == 0 and "already mounted" in r.stderr


def test_transmission_seeder(tmp_path, mount_torrent):
    """transmission-cli 3.00 seeds from a network namespace of the test's own, announced
    through opentracker; torrentfs finds it through the tracker and reads every byte."""
    data = tmp_path / "tr"
    payload = make_payload(data / "payload", 5 * 1024 * 1024 + 3, seed=11)
    with netns_host() as host:
        with opentracker(host="127.0.0.1", extra_hosts=[host.host_ip]) as tracker:
            torrent = tmp_path / "tr.torrent"
            info_hash = lt_create(payload, torrent, tracker.announce_url_for(host.host_ip),
                                  piece_size=PIECE)
            tracker.add(info_hash)
            with transmission_seeder(torrent, data, host) as seeder:
                m = mount_torrent(torrent)
                cmp_tree(payload, m.path / "payload", m)
                assert f"connected to <peer {seeder.ip}:" in m.log


def test_torrent_made_by_create_is_right(tmp_path, mount_torrent):
    """``torrentfs create`` makes a torrent that libtorrent seeds and downloads
    byte-exact, and that torrentfs mounts from that libtorrent seeder."""
    data = tmp_path / "c"
    payload = make_payload(data / "payload", 2 * 1024 * 1024 + 5, seed=3)
    with opentracker() as tracker:
        torrent = tmp_path / "made.torrent"
        r = subprocess.run([TORRENTFS, "create", str(payload), "-o", str(torrent),
                            "--tracker", tracker.announce_url, "--piece-size", "64K"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        from torrentfs.core.metainfo import parse
        tracker.add(parse(torrent.read_bytes()).info_hash)
        with lt_seeder(torrent, data, ip="127.0.0.5"):
            out = tmp_path / "leeched"
            res = lt_leecher(torrent, out, ip="127.0.0.6", timeout=60)
            assert res.returncode == 0, res.stderr
            assert tree_of(out / "payload") == tree_of(payload)
            for original in (p for p in payload.rglob("*") if p.is_file()):
                copy = out / "payload" / original.relative_to(payload)
                assert copy.read_bytes() == original.read_bytes()
            m = mount_torrent(torrent)
            assert sha256(m.path / "payload" / "big.bin") == sha256(payload / "big.bin")
