"""Integration: mounts that fetch from a web seed (BEP 19), a real range-capable HTTP
server on loopback (``webseeds.range_server``), alone or beside a libtorrent seeder;
read with cmp-style comparisons. Every mount is unmounted by the fixture."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness.command import TORRENTFS
from tests.harness.payload import make_payload
from tests.harness.swarm import free_port, lt_seeder
from tests.harness.webseeds import SeedBehaviour, files_on_disk, range_server
from torrentfs.core.metainfo import parse

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

HOST = "127.0.19.1"   # the web seed; libtorrent seeders on 127.0.19.2, ...


def create(src: Path, out: Path, *web_seeds: str, piece_size: str = "64K") -> Path:
    argv = [TORRENTFS, "create", str(src), "-o", str(out), "--piece-size", piece_size]
    for url in web_seeds:
        argv += ["--web-seed", url]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return out


def files_under(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def assert_same_tree(mounted: Path, original: Path) -> None:
    originals = files_under(original)
    assert [p.relative_to(mounted) for p in files_under(mounted)] == \
        [p.relative_to(original) for p in originals]
    for p in originals:
        assert (mounted / p.relative_to(original)).read_bytes() == p.read_bytes(), p


@pytest.fixture
def tree(tmp_path):
    """A multi-file payload (nested folders, an empty file, a non-ASCII name)."""
    return make_payload(tmp_path / "data" / "payload", 3 * 1024 * 1024 + 4321, seed=11)


def test_single_file_from_the_web_seed_alone(tmp_path, mount_torrent):
    src = tmp_path / "data" / "one file.bin"
    src.parent.mkdir()
    src.write_bytes(make_bytes(2 * 1024 * 1024 + 77))
    with range_server({}, HOST) as server:
        torrent = create(src, tmp_path / "one.torrent", server.url)  # url + name
        server.files.update(files_on_disk(parse(torrent.read_bytes()), src.parent))
        m = mount_torrent(torrent)
        assert (m.path / "one file.bin").read_bytes() == src.read_bytes()
        assert server.requests
        assert all(r is not None and r.startswith("bytes=") for _, r in server.requests)
        assert {p for p, _ in server.requests} == {"/one%20file.bin"}
        # Connections are kept alive: far fewer than requests (a request cancelled
        # mid-body, when a reader moves on, costs its connection).
        assert len(server.requests) >= 16
        assert server.connections < len(server.requests) / 2, m.log[-3000:]


def test_single_file_url_naming_the_file(tmp_path, mount_torrent):
    src = tmp_path / "data" / "f.bin"
    src.parent.mkdir()
    src.write_bytes(make_bytes(700_001))
    with range_server({"/mirror/renamed.bin": src.read_bytes()}, HOST) as server:
        torrent = create(src, tmp_path / "f.torrent", server.url + "mirror/renamed.bin")
        m = mount_torrent(torrent)
        assert (m.path / "f.bin").read_bytes() == src.read_bytes()


def test_multi_file_from_the_web_seed_alone(tmp_path, tree, mount_torrent):
    with range_server({}, HOST) as server:
        torrent = create(tree, tmp_path / "tree.torrent", server.url.rstrip("/"))
        server.files.update(files_on_disk(parse(torrent.read_bytes()), tree.parent))
        m = mount_torrent(torrent)
        assert_same_tree(m.path / "payload", tree)
        paths = {p for p, _ in server.requests}
        assert "/payload/donn%C3%A9es%20%C3%A9t%C3%A9.txt" in paths
        assert "/payload/docs/empty" not in paths


def test_web_seed_and_libtorrent_peer_both_serve(tmp_path, tree, mount_torrent):
    with range_server({}, HOST) as server:
        torrent = create(tree, tmp_path / "tree.torrent", server.url, piece_size="16K")
        server.files.update(files_on_disk(parse(torrent.read_bytes()), tree.parent))
        with lt_seeder(torrent, tree.parent, ip="127.0.19.2") as seeder:
            m = mount_torrent(torrent, "--peer", f"{seeder.ip}:{seeder.port}")
            wait_connected(m, seeder.ip)
            assert_same_tree(m.path / "payload", tree)
            assert m.unmount().returncode == 0
    assert server.requests
    received = re.search(rf"<peer {re.escape(seeder.ip)}:\d+> closed: .*\(received (\d+) "
                         "bytes of blocks", m.log)
    assert received and int(received[1]) > 0, m.log[-3000:]


def test_web_seed_sending_wrong_data_is_dropped(tmp_path, tree, mount_torrent):
    with range_server({}, HOST, SeedBehaviour(corrupt=True)) as server:
        torrent = create(tree, tmp_path / "tree.torrent", server.url)
        server.files.update(files_on_disk(parse(torrent.read_bytes()), tree.parent))
        with lt_seeder(torrent, tree.parent, ip="127.0.19.3") as seeder:
            m = mount_torrent(torrent, "--peer", f"{seeder.ip}:{seeder.port}")
            assert_same_tree(m.path / "payload", tree)
            assert re.search(r"<web seed http://[^>]*> dropped: sent", m.log), m.log[-3000:]
            assert "failed its hash check" in m.log


def test_web_seed_that_is_down_does_not_hang_reads(tmp_path, tree, mount_torrent):
    dead = f"http://{HOST}:{free_port(HOST)}/"  # nothing listens there
    torrent = create(tree, tmp_path / "tree.torrent", dead)
    with lt_seeder(torrent, tree.parent, ip="127.0.19.4") as seeder:
        m = mount_torrent(torrent, "--peer", f"{seeder.ip}:{seeder.port}")
        t0 = time.monotonic()
        assert_same_tree(m.path / "payload", tree)
        assert time.monotonic() - t0 < 30
        assert re.search(r"<web seed http://[^>]*> failed \(.*\): retrying in \d+ s", m.log), \
            m.log[-3000:]


def test_mount_web_seed_options(tmp_path, mount_torrent):
    """--web-seed adds a seed to a torrent that has none; --no-web-seeds ignores the
    torrent's (a read then waits: no peer, no seed)."""
    src = tmp_path / "data" / "f.bin"
    src.parent.mkdir()
    src.write_bytes(make_bytes(300_000))
    with range_server({}, HOST) as server:
        plain = create(src, tmp_path / "plain.torrent")
        server.files.update(files_on_disk(parse(plain.read_bytes()), src.parent))
        m = mount_torrent(plain, "--web-seed", server.url)
        assert (m.path / "f.bin").read_bytes() == src.read_bytes()
        seeded = create(src, tmp_path / "seeded.torrent", server.url)
        before = len(server.requests)
        m2 = mount_torrent(seeded, "--no-web-seeds", "--read-timeout", "2")
        r = subprocess.run(["cat", str(m2.path / "f.bin")], capture_output=True, timeout=30)
        assert r.returncode != 0 and len(server.requests) == before


def wait_connected(m, ip: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while f"connected to <peer {ip}:" not in m.log:
        assert time.monotonic() < deadline, m.log[-3000:]
        time.sleep(0.1)


def make_bytes(n: int) -> bytes:
    from tests.harness.payload import data_of
    return data_of(n, n)
