"""``create_torrent(version="v2" | "hybrid")``: the torrents libtorrent 2.0 makes of the
same files (tests/data/v2/, info-hashes from its torrent_info), and every piece of
them verifying against the files."""

from __future__ import annotations

import hashlib
import os

import pytest

from tests.core.test_metainfo_v2 import LIBTORRENT, MULTI, PL, SINGLE
from torrentfs.core.geometry import Geometry
from torrentfs.core.metainfo import parse
from torrentfs.disk.create import CreateError, create_torrent


@pytest.fixture
def files(tmp_path):
    d = tmp_path / "d"
    for path, body in MULTI.items():
        target = d.joinpath(*path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
        os.chmod(target, 0o644)
    single = tmp_path / "single.bin"
    single.write_bytes(SINGLE)
    os.chmod(single, 0o644)
    return d, single


@pytest.mark.parametrize("name", sorted(LIBTORRENT))
def test_same_torrent_as_libtorrent(files, name):
    d, single = files
    version = "hybrid" if "hybrid" in name else "v2"
    data = create_torrent(d if "multi" in name else single, piece_length=PL, version=version)
    meta = parse(data)
    v1, v2, pieces = LIBTORRENT[name]
    assert meta.version == version
    assert meta.info_hash_v2.hex() == v2
    if version == "hybrid":
        assert meta.info_hash.hex() == v1
    assert meta.num_pieces == pieces


@pytest.mark.parametrize("version", ["v2", "hybrid"])
@pytest.mark.parametrize("piece_length", [16384, 32768, 1 << 20])
def test_every_piece_verifies(tmp_path, version, piece_length):
    root = tmp_path / "t"
    bodies = {("big",): os.urandom(5 * 16384 + 77), ("e",): b"",
              ("x", "one-block"): os.urandom(16384), ("x", "tiny"): b"t",
              ("z",): os.urandom(3 * piece_length)}
    for path, body in bodies.items():
        root.joinpath(*path).parent.mkdir(parents=True, exist_ok=True)
        root.joinpath(*path).write_bytes(body)
    meta = parse(create_torrent(root, piece_length=piece_length, version=version))
    stream = b"".join(bytes(f.length) if f.padding else bodies[f.path] for f in meta.files)
    g = Geometry(meta.piece_length, tuple(f.length for f in meta.files))
    assert g.num_pieces == meta.num_pieces
    for i in range(g.num_pieces):
        piece = stream[g.piece_offset(i):g.piece_offset(i) + g.piece_size(i)]
        assert meta.v2.verify(i, piece), i
        if version == "hybrid":
            assert hashlib.sha1(piece).digest() == meta.piece_hash(i), i


def test_unknown_version_refused(files):
    with pytest.raises(CreateError, match="unknown torrent version"):
        create_torrent(files[1], version="v3")
