"""Integration: BEP 52 torrents made and seeded by libtorrent 2.0 (python3-libtorrent):
a v2-only one (create_torrent's v2-only flag) and a hybrid one (its default), mounted
by torrentfs from a libtorrent seeder: every file cmp'd, 50 random dd ranges."""

from __future__ import annotations

import random

import pytest

from tests.harness.command import run
from tests.harness.payload import cmp_tree, dd_random_ranges, make_payload, tree_of
from tests.harness.swarm import lt_create, lt_info_hashes, lt_seeder
from torrentfs.core.metainfo import parse

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

BIG = 3 * 1024 * 1024 + 12345   # not a multiple of the piece size
PIECE = 64 * 1024


@pytest.fixture(scope="module", params=["v2", "hybrid"])
def v2swarm(request, tmp_path_factory):
    version = request.param
    base = tmp_path_factory.mktemp(f"swarm-{version}")
    payload = make_payload(base / "data" / "payload", BIG, seed=52)
    torrent = base / f"payload-{version}.torrent"
    lt_create(payload, torrent, piece_size=PIECE, version=version)
    meta = parse(torrent.read_bytes())
    assert meta.version == version
    ip = "127.0.0.2" if version == "v2" else "127.0.0.3"
    with lt_seeder(torrent, base / "data", ip=ip) as seeder:
        yield {"payload": payload, "torrent": torrent, "seeder": seeder, "meta": meta}


def test_cmp_every_file(v2swarm, mount_torrent):
    m = mount_torrent(v2swarm["torrent"], "--peer", v2swarm["seeder"].endpoint)
    root = m.path / "payload"
    assert tree_of(root) == tree_of(v2swarm["payload"])
    cmp_tree(v2swarm["payload"], root, m)


def test_fifty_random_ranges_with_dd(v2swarm, mount_torrent):
    m = mount_torrent(v2swarm["torrent"], "--peer", v2swarm["seeder"].endpoint)
    original = (v2swarm["payload"] / "big.bin").read_bytes()
    dd_random_ranges(m.path / "payload" / "big.bin", original, 52, PIECE)


@pytest.mark.parametrize("version", ["v2", "hybrid"])
def test_torrentfs_create_loaded_and_seeded_by_libtorrent(version, tmp_path, mount_torrent):
    """``torrentfs create --v2/--hybrid``: libtorrent reads the same info-hashes, checks
    the original files against it (it seeds only if every hash is right), and a
    mount reads them back from it byte for byte."""
    payload = make_payload(tmp_path / "data" / "payload", 1024 * 1024 + 999, seed=53)
    torrent = tmp_path / f"made-{version}.torrent"
    r = run("create", payload, "-o", torrent, f"--{version}", "--piece-size", "32K",
            timeout=120)
    assert r.returncode == 0, r.stderr
    meta = parse(torrent.read_bytes())
    assert meta.version == version
    v1, v2 = lt_info_hashes(torrent)
    assert v2 == meta.info_hash_v2
    assert v1 == (meta.info_hash if version == "hybrid" else bytes(20))
    assert f"info-hash v2: {meta.info_hash_v2.hex()}" in r.stdout
    with lt_seeder(torrent, tmp_path / "data", ip="127.0.0.4") as seeder:
        m = mount_torrent(torrent, "--peer", seeder.endpoint)
        cmp_tree(payload, m.path / "payload", m)


def test_magnet_link_gets_metadata_and_piece_layers_from_libtorrent(v2swarm, mount_torrent):
    """A urn:btmh magnet (v2; with urn:btih too for the hybrid): the info dictionary
    comes by BEP 9 and the piece layers by BEP 52 hash requests, then every file
    reads back byte-exact, and 50 random ranges too."""
    from torrentfs.core.magnet import link
    meta = v2swarm["meta"]
    uri = link(meta)
    assert "xt=urn:btmh:1220" in uri and ("urn:btih" in uri) == (meta.version == "hybrid")
    m = mount_torrent(uri, "--peer", v2swarm["seeder"].endpoint)
    root = m.path / "payload"
    cmp_tree(v2swarm["payload"], root, m)
    original = (v2swarm["payload"] / "big.bin").read_bytes()
    rng = random.Random(53)
    for _ in range(50):
        size = rng.choice([1, 4096, 65536, PIECE + 1])
        offset = rng.randrange(0, BIG - 1)
        with open(root / "big.bin", "rb") as f:
            f.seek(offset)
            assert f.read(size) == original[offset:offset + size], (offset, size)
    if meta.version == "v2":
        assert "asking for the piece layers of" in m.log


@pytest.mark.parametrize("version", ["v2", "hybrid"])
def test_v2_symlinks_are_links_in_the_mount(version, tmp_path, mount_torrent):
    """Symlinks in a BEP 52 file tree (libtorrent's symlinks flag): links in the mount,
    a target inside the torrent followed, one leaving it shown broken (a loop to
    itself), never followed outside; the data around them reads back verified."""
    import os
    src = tmp_path / "data" / "links"
    (src / "d" / "e").mkdir(parents=True)
    (src / "d" / "a.bin").write_bytes(random.Random(47).randbytes(100_000))
    (src / "link").symlink_to("d/a.bin")
    # libtorrent writes a link's text as its 'symlink path', which BEP 47 reads from
    # the torrent's root: "../a.bin" leaves it (libtorrent drops the ".."; we show
    # it broken, as for v1 links).
    (src / "d" / "e" / "up").symlink_to("../a.bin")
    (src / "evil").symlink_to("/etc/passwd")
    torrent = tmp_path / f"links-{version}.torrent"
    lt_create(src, torrent, piece_size=32768, version=version, symlinks=True)
    meta = parse(torrent.read_bytes())
    assert meta.version == version
    seed = tmp_path / "seed" / "links" / "d"  # the data alone: libtorrent makes the links
    seed.mkdir(parents=True)
    (seed / "a.bin").write_bytes((src / "d" / "a.bin").read_bytes())
    with lt_seeder(torrent, tmp_path / "seed", ip="127.0.0.5") as seeder:
        m = mount_torrent(torrent, "--peer", seeder.endpoint)
        top = m.path / "links"
        link = top / "link"
        assert os.lstat(link).st_mode & 0o170000 == 0o120000
        assert os.readlink(link) == "d/a.bin"
        assert os.readlink(top / "evil") == "evil"  # outside the torrent: nowhere
        assert os.readlink(top / "d" / "e" / "up") == "up"
        with pytest.raises(OSError):
            (top / "evil").read_bytes()
        original = (src / "d" / "a.bin").read_bytes()
        assert (top / "d" / "a.bin").read_bytes() == original
        assert link.read_bytes() == original  # followed inside the mount
