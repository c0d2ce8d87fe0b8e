"""The harness of real peers works on its own (no torrentfs code involved).

A libtorrent leecher downloads, byte-exact, from libtorrent seeders found
through opentracker, and from transmission seeding inside a network namespace.
"""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness import netns, swarm

pytestmark = pytest.mark.integration

needs_tools = pytest.mark.skipif(
    not (os.path.exists(swarm.SYSTEM_PYTHON) and shutil.which("opentracker")),
    reason="needs /usr/bin/python3 (python3-libtorrent) and opentracker (scripts/install)")
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("transmission-cli"),
    reason="network namespaces need root; needs transmission-cli")


def make_content(root: Path) -> Path:
    """~8 MiB random file plus a small tree, all under root/'content'."""
    content = root / "content"
    (content / "docs" / "deep").mkdir(parents=True)
    (content / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024 + 12345))
    (content / "docs" / "readme.txt").write_text("hello from the harness\n")
    (content / "docs" / "deep" / "odd.bin").write_bytes(os.urandom(40_001))
    return content


def assert_same_tree(expected: Path, actual: Path) -> None:
    want = sorted(p.relative_to(expected) for p in expected.rglob("*") if p.is_file())
    got = sorted(p.relative_to(actual) for p in actual.rglob("*") if p.is_file())
    assert got == want
    for rel in want:
        assert (actual / rel).read_bytes() == (expected / rel).read_bytes(), rel


def check_leech(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"leech failed:\n{result.stderr[-4000:]}"


@needs_tools
@pytest.mark.timeout(90)
def test_libtorrent_swarm_via_opentracker(tmp_path):
    content = make_content(tmp_path / "seed")
    torrent = tmp_path / "content.torrent"
    with swarm.opentracker(workdir=tmp_path / "tracker") as tracker:
        info_hash = swarm.lt_create(content, torrent, tracker.announce_url,
                                    piece_size=64 * 1024)
        assert info_hash == swarm.info_hash_of(torrent)
        assert not tracker.is_authorized(info_hash)
        tracker.add(info_hash)  # whitelist reload on SIGHUP

        with swarm.lt_seeder(torrent, content.parent, ip="127.0.0.2",
                             workdir=tmp_path / "s2") as s2, \
             swarm.lt_seeder(torrent, content.parent, ip="127.0.0.3",
                             workdir=tmp_path / "s3") as s3:
            assert s2.port > 0 and s3.port > 0
            tracker.wait_peers(info_hash, 2)
            assert tracker.scrape(info_hash)["complete"] == 2  # they announced as seeds

            out = tmp_path / "leech"
            out.mkdir()
            # No --peer: the leecher finds both seeders through the tracker only.
            check_leech(swarm.lt_leecher(torrent, out, ip="127.0.0.9", timeout=40))
            assert_same_tree(content, out / "content")
        # Both seeders were stopped by PID and exited cleanly on SIGTERM.
        assert s2.proc.returncode == 0 and s3.proc.returncode == 0


@needs_tools
@needs_root
@pytest.mark.timeout(90)
def test_transmission_in_netns_seeds_to_libtorrent(tmp_path):
    content = make_content(tmp_path / "seed")
    torrent = tmp_path / "content.torrent"
    with netns.netns_host("tfs-harness") as host, \
         swarm.opentracker(extra_hosts=[host.host_ip], workdir=tmp_path / "tracker") as tracker:
        # transmission, in the namespace, reaches the tracker on the veth address.
        info_hash = swarm.lt_create(content, torrent, tracker.announce_url_for(host.host_ip))
        tracker.add(info_hash)
        with netns.transmission_seeder(torrent, content.parent, host, port=51413,
                                       workdir=tmp_path / "tr") as seeder:
            assert seeder.ip == host.ns_ip
            # transmission announced itself (from ns_ip); if it announced
            # while still verifying, the tracker counts it as a leecher.
            tracker.wait_peers(info_hash, 1)

            out = tmp_path / "leech"
            out.mkdir()
            # Via the tracker, no --peer: the leecher listens on the root-side
            # veth address (a socket bound to 127.x cannot reach the namespace,
            # and libtorrent only uses routes its listen socket can take), so
            # it announces to the tracker there and gets ns_ip:51413 back.
            check_leech(swarm.lt_leecher(torrent, out, ip=host.host_ip, timeout=40))
            assert_same_tree(content, out / "content")
        ns = host.ns
    assert ns not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                    text=True, timeout=10).stdout


@needs_tools
@pytest.mark.timeout(90)
def test_a_gated_libtorrent_node_waits_for_its_gate_then_seeds_on_when_done(tmp_path):
    """scripts/cluster --libtorrent's node: it meets its peer but downloads nothing
    until the gate file exists, writes its done file when complete, and seeds on
    (the process lives) until stopped by its PID."""
    content = make_content(tmp_path / "seed")
    torrent = tmp_path / "content.torrent"
    swarm.lt_create(content, torrent, piece_size=64 * 1024)
    gate, done, out = tmp_path / "gate", tmp_path / "done", tmp_path / "leech"
    out.mkdir()
    log = tmp_path / "node.log"
    with swarm.lt_seeder(torrent, content.parent, ip="127.0.0.2",
                         workdir=tmp_path / "s2") as seed:
        argv = [swarm.SYSTEM_PYTHON, str(swarm.LT_PEER), "leech", "--torrent", str(torrent),
                "--save-path", str(out), "--listen", "127.0.0.9:0", "--timeout", "60",
                "--peer", seed.endpoint, "--gate", str(gate), "--done-file", str(done)]
        with open(log, "wb") as err:
            node = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err,
                                    env=swarm.child_env())
        try:
            # Connected, with two status lines since (two seconds at 1 byte/s).
            swarm.wait_until(lambda: log.read_text().count("peers=1") >= 2, timeout=30)
            assert not done.exists()
            status = [ln for ln in log.read_text().splitlines() if "progress=" in ln]
            assert "progress=0.0%" in status[-1]
            gate.touch()
            swarm.wait_until(done.exists, timeout=40)
            assert node.poll() is None  # seeding on
            assert_same_tree(content, out / "content")
        finally:
            code = swarm.stop_process(node)
        assert code == 0, log.read_text()[-2000:]
