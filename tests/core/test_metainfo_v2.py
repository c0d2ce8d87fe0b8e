"""BEP 52 parsing (core.metainfo_v2 through metainfo.parse): v2-only and hybrid
torrents made by python3-libtorrent 2.0 (tests/data/v2/), and hostile v2 inputs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import bencodepy
import pytest

from torrentfs.core import merkle
from torrentfs.core.geometry import Geometry
from torrentfs.core.metainfo import MetainfoError, parse

DATA = Path(__file__).resolve().parent.parent / "data" / "v2"
PL = 32768


def data(n: int, seed: int) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(n))


# What libtorrent made them from (piece length 32 KiB): d/ and single.bin.
MULTI = {("a.bin",): data(100000, 1), ("c.txt",): b"hello", ("empty",): b"",
         ("sub", "b"): data(16384, 2)}
SINGLE = data(70000, 3)
# name: (v1 info-hash, v2 info-hash, pieces), as libtorrent's torrent_info says.
LIBTORRENT = {
    "multi-v2": ("0" * 40, "2e1aa3cb08b3354f64abb5ca8f67c0057979c7d5b1ec3433e232b375a99bd940", 6),
    "multi-hybrid": ("56a8133c31cb2d0a434f22ef5a21e80ac95742ba",
                     "e8e7a622ffd9c9af0bab9b5e881ba8c4e01934a7ad196ea97d5e63c937d135dc", 6),
    "single-v2": ("0" * 40, "790fd5de36bee42adbc8714659c995b2443b0287b74af1a265ce7ecb9f5bf848", 3),
    "single-hybrid": ("131eae7106afed781144123f633e089bfb75dbb6",
                      "10a840c2d25cba14ef791ca3e52a92cea62abd3067b6e4b01d727260428c13d2", 3),
}


def stream(meta) -> bytes:
    """The torrent's byte stream built from the known file contents."""
    out = b""
    for f in meta.files:
        if f.padding:
            out += bytes(f.length)
        else:
            out += MULTI[f.path] if meta.multi_file else SINGLE
    return out


@pytest.mark.parametrize("name", sorted(LIBTORRENT))
def test_libtorrent_torrents_parse_with_its_info_hashes(name):
    v1, v2, pieces = LIBTORRENT[name]
    meta = parse((DATA / f"{name}.torrent").read_bytes())
    assert meta.version == ("hybrid" if "hybrid" in name else "v2")
    assert meta.info_hash_v2.hex() == v2
    if meta.version == "hybrid":
        assert meta.info_hash.hex() == v1
    else:
        assert meta.info_hash == bytes.fromhex(v2)[:20]  # the truncated v2 hash
    assert meta.num_pieces == pieces
    shown = sorted(f.path for f in meta.files if not f.padding)
    if "multi" in name:
        assert meta.multi_file and meta.name == "d"
        assert shown == sorted(MULTI)
    else:
        assert not meta.multi_file and shown == [("single.bin",)]
    # Every file with data starts on a piece boundary.
    for f in meta.files:
        if f.length and not f.padding:
            assert f.offset % PL == 0


@pytest.mark.parametrize("name", sorted(LIBTORRENT))
def test_every_piece_verifies_and_a_flipped_byte_fails(name):
    meta = parse((DATA / f"{name}.torrent").read_bytes())
    body = stream(meta)
    g = Geometry(meta.piece_length, tuple(f.length for f in meta.files))
    assert g.num_pieces == meta.num_pieces
    for i in range(meta.num_pieces):
        piece = body[g.piece_offset(i):g.piece_offset(i) + g.piece_size(i)]
        assert meta.v2.verify(i, piece), i
        bad = bytearray(piece)
        bad[0] ^= 1
        assert not meta.v2.verify(i, bytes(bad)), i
        assert not meta.v2.verify(i, piece[:meta.v2.piece_file(i)[2] - 1])  # short
        if meta.version == "hybrid":
            assert hashlib.sha1(piece).digest() == meta.piece_hash(i)


def test_piece_to_file_mapping():
    meta = parse((DATA / "multi-v2.torrent").read_bytes())
    files = {f.path: i for i, f in enumerate(meta.files)}
    # a.bin is pieces 0-3 (100000 bytes), c.txt piece 4, sub/b piece 5; empty has none.
    assert meta.v2.piece_file(0) == (files[("a.bin",)], 0, PL)
    assert meta.v2.piece_file(3) == (files[("a.bin",)], 3, 100000 - 3 * PL)
    assert meta.v2.piece_file(4) == (files[("c.txt",)], 0, 5)
    assert meta.v2.piece_file(5) == (files[("sub", "b")], 0, 16384)
    with pytest.raises(IndexError):
        meta.v2.piece_file(6)


# -- hostile and broken v2 torrents -------------------------------------------------


def v2_torrent(tree_files: dict, piece_length: int = PL, layers: bool = True,
               name: bytes = b"t", **info_extra) -> bytes:
    """A v2-only torrent of ``{path tuple: bytes}``, built with core.merkle."""
    tree: dict = {}
    piece_layers = {}
    for path, body in tree_files.items():
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part.encode(), {})
        root, layer = merkle.file_root(body, piece_length)
        entry = {b"length": len(body)}
        if root is not None:
            entry[b"pieces root"] = root
        if layer and layers:
            piece_layers[root] = b"".join(layer)
        node[path[-1].encode()] = {b"": entry}
    info = {b"name": name, b"piece length": piece_length, b"meta version": 2,
            b"file tree": tree, **info_extra}
    return bencodepy.encode({b"info": info, b"piece layers": piece_layers})


def edit(raw: bytes, fn) -> bytes:
    top = bencodepy.decode(raw)
    fn(top)
    return bencodepy.encode(top)


def refused(raw: bytes, expect: str) -> None:
    with pytest.raises(MetainfoError, match=expect):
        parse(raw)


def test_built_v2_torrent_parses():
    meta = parse(v2_torrent({("x", "big"): data(5 * PL + 3, 4), ("y",): b"z"}))
    assert meta.version == "v2" and meta.num_pieces == 7
    # Padding after every file not ending on a piece boundary, the last one too
    # (libtorrent takes every v2 piece as whole).
    assert [f.path for f in meta.files] == [("x", "big"), (".pad", str(PL - 3)), ("y",),
                                            (".pad", str(PL - 1))]
    assert meta.total_length == 7 * PL


def test_meta_version_other_than_2_is_refused():
    raw = v2_torrent({("a",): b"1"})
    refused(edit(raw, lambda t: t[b"info"].update({b"meta version": 3})), "meta version' 3")
    refused(edit(raw, lambda t: t[b"info"].update({b"meta version": b"2"})), "not an integer")
    refused(edit(raw, lambda t: t[b"info"].pop(b"file tree")), "without a 'file tree'")


def test_missing_and_wrong_pieces_root():
    raw = v2_torrent({("a",): b"1"})
    refused(edit(raw, lambda t: t[b"info"][b"file tree"][b"a"][b""].pop(b"pieces root")),
            "no valid 'pieces root'")
    refused(edit(raw, lambda t: t[b"info"][b"file tree"][b"a"][b""].update(
        {b"pieces root": b"x" * 20})), "no valid 'pieces root'")
    refused(edit(raw, lambda t: t[b"info"][b"file tree"][b"a"][b""].update(
        {b"pieces root": bytes(32)})), "no valid 'pieces root'")


def test_piece_layers_are_checked_against_the_roots():
    big = {("a",): data(3 * PL, 5)}
    refused(v2_torrent(big, layers=False), "no piece layer for 'a'")

    def shorten(t):
        (root,) = t[b"piece layers"]
        t[b"piece layers"][root] = t[b"piece layers"][root][:-32]
    refused(edit(v2_torrent(big), shorten), "not 3 hashes of 32 bytes")

    def corrupt(t):
        (root,) = t[b"piece layers"]
        layer = bytearray(t[b"piece layers"][root])
        layer[40] ^= 1
        t[b"piece layers"][root] = bytes(layer)
    refused(edit(v2_torrent(big), corrupt), "does not match its pieces root")
    refused(edit(v2_torrent(big), lambda t: t.update({b"piece layers": [1]})),
            "'piece layers' is not a dictionary")


def test_v2_piece_length_must_be_a_power_of_two_of_at_least_16k():
    refused(v2_torrent({("a",): b"1"}, piece_length=8192), "not a power of two")
    refused(v2_torrent({("a",): b"1"}, piece_length=3 * 16384), "not a power of two")


def test_tree_shapes_refused():
    raw = v2_torrent({("a",): b"1"})
    refused(edit(raw, lambda t: t[b"info"].update({b"file tree": {}})), "holds no file")
    refused(edit(raw, lambda t: t[b"info"][b"file tree"].update({b"d": [1]})),
            "not a dictionary")
    refused(edit(raw, lambda t: t[b"info"][b"file tree"][b"a"].update({b"x": {}})),
            "both a file and a directory")
    refused(edit(raw, lambda t: t[b"info"][b"file tree"][b"a"][b""].pop(b"length")),
            "has no 'length'")
    refused(edit(raw, lambda t: t[b"info"][b"file tree"][b"a"][b""].update({b"length": -1})),
            "negative length")


def test_unsafe_tree_names_are_refused_like_v1_paths():
    raw = v2_torrent({("a",): b"1", ("b",): b"2"})

    def dotdot(t):
        t[b"info"][b"file tree"][b".."] = t[b"info"][b"file tree"].pop(b"a")
    with pytest.raises(MetainfoError):
        parse(edit(raw, dotdot))


def test_empty_files_have_no_pieces_and_no_padding():
    meta = parse(v2_torrent({("a",): b"", ("b",): b"xy", ("c",): b""}))
    assert meta.num_pieces == 1
    assert [(f.path, f.length, f.offset) for f in meta.files] == [
        (("a",), 0, 0), (("b",), 2, 0), ((".pad", str(PL - 2)), PL - 2, 2), (("c",), 0, PL)]
    refused(v2_torrent({("a",): b"", ("b",): b""}), "no data")


def test_hybrid_whose_v1_and_v2_views_disagree_is_refused():
    raw = (DATA / "multi-hybrid.torrent").read_bytes()

    def rename(t):
        t[b"info"][b"files"][0][b"path"] = [b"other.bin"]
    refused(edit(raw, rename), "hybrid v1 and v2 file lists differ")

    def unpad(t):
        files = t[b"info"][b"files"]
        t[b"info"][b"files"] = [f for f in files if f.get(b"attr") != b"p"]
        total = sum(f[b"length"] for f in t[b"info"][b"files"])
        t[b"info"][b"pieces"] = bytes(20 * -(-total // PL))
    refused(edit(raw, unpad), "does not start on a piece boundary")


def test_hybrid_without_piece_layers_falls_back_to_sha1():
    raw = edit((DATA / "multi-hybrid.torrent").read_bytes(),
               lambda t: t.update({b"piece layers": {}}))
    meta = parse(raw)
    assert meta.version == "hybrid"
    assert meta.v2.expected(0) is None and meta.v2.verify(0, b"")
    # a.bin's root still judges nothing it cannot: c.txt (one piece) has its root.
    assert meta.v2.expected(4) is not None


def test_single_file_v2_is_padded_to_whole_pieces_like_libtorrent():
    meta = parse((DATA / "single-v2.torrent").read_bytes())
    assert not meta.multi_file
    assert [(f.path, f.length, f.padding) for f in meta.files] == [
        (("single.bin",), 70000, False), ((".pad", "28304"), 28304, True)]
    assert meta.total_length == 3 * PL


# -- v2 symlinks (BEP 47 attributes in a BEP 52 file tree) ---------------------------------

def with_links(raw: bytes, links: dict) -> bytes:
    """Add symlink entries ``{path tuple: (attr, target components)}`` to the tree, as
    libtorrent writes them: ``attr`` and ``symlink path``, no length, no root."""
    def add(top):
        for path, (attr, target) in links.items():
            node = top[b"info"][b"file tree"]
            for part in path[:-1]:
                node = node.setdefault(part.encode(), {})
            node[path[-1].encode()] = {b"": {b"attr": attr,
                                              b"symlink path": [c.encode() for c in target]}}
    return edit(raw, add)


def test_v2_symlinks_are_links_holding_no_data_with_bep47_safety():
    raw = with_links(v2_torrent({("d", "a.bin"): data(40000, 5), ("run",): b"x" * 10}), {
        ("d", "e", "up"): (b"l", ("d", "a.bin")),
        ("folder",): (b"xl", ("d",)),
        ("evil",): (b"l", ("..", "..", "etc", "passwd")),
        ("abs",): (b"l", ("etc", "passwd")),        # libtorrent's form of /etc/passwd
        ("self",): (b"l", ("self", "..", "..", "x")),
    })
    meta = parse(raw)
    links = {f.path: f.symlink for f in meta.files if f.symlink is not None}
    assert links == {("d", "e", "up"): ("d", "a.bin"), ("folder",): ("d",),
                     ("evil",): (), ("abs",): (), ("self",): ()}  # () : shown broken
    for f in meta.files:
        if f.symlink is not None:
            assert f.length == 0 and not f.padding
    assert sum(1 for r in meta.repairs if "points outside the torrent" in r) == 3
    # No data, no pieces root, no padding: the stream is the two real files padded.
    assert meta.total_length == 2 * PL + PL
    assert [f.path for f in meta.files if f.padding] == [(".pad", str(2 * PL - 40000)),
                                                        (".pad", str(PL - 10))]


def test_a_v2_entry_with_l_but_no_symlink_path_is_a_plain_file():
    raw = v2_torrent({("a",): data(100, 1), ("b",): data(50, 2)})
    raw = edit(raw, lambda t: t[b"info"][b"file tree"][b"b"][b""].update({b"attr": b"l"}))
    meta = parse(raw)
    assert [(f.path, f.length, f.symlink) for f in meta.files if not f.padding] == [
        (("a",), 100, None), (("b",), 50, None)]


def test_libtorrent_v2_and_hybrid_torrents_with_symlinks_parse_alike(tmp_path):
    """Made by python3-libtorrent (its symlinks flag): the v2 tree and the hybrid's v1
    list give the same links; libtorrent writes no length for a v2 symlink."""
    import subprocess
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no system python")
    src = tmp_path / "t"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(data(100000, 7))
    (src / "link").symlink_to("a.bin")
    (src / "sub" / "up").symlink_to("../a.bin")
    (src / "abs").symlink_to("/etc/passwd")
    code = (
        "import libtorrent as lt, sys\n"
        "for ver, flag in (('v2', lt.create_torrent.v2_only), ('hybrid', 0)):\n"
        "    fs = lt.file_storage()\n"
        f"    lt.add_files(fs, {str(src)!r}, flags=lt.create_torrent.symlinks)\n"
        "    ct = lt.create_torrent(fs, 32768, flags=flag | lt.create_torrent.symlinks)\n"
        f"    lt.set_piece_hashes(ct, {str(tmp_path)!r})\n"
        f"    open({str(tmp_path)!r} + '/' + ver + '.torrent', 'wb').write(lt.bencode(ct.generate()))\n")
    r = subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True,
                       timeout=60)
    if "No module named 'libtorrent'" in r.stderr:
        pytest.skip("python3-libtorrent is not installed")
    assert r.returncode == 0, r.stderr
    seen = []
    for ver in ("v2", "hybrid"):
        meta = parse((tmp_path / f"{ver}.torrent").read_bytes())
        assert meta.version == ver
        seen.append({f.path: f.symlink for f in meta.files if f.symlink is not None})
    assert seen[0] == seen[1] == {("link",): ("a.bin",), ("sub", "up"): (), ("abs",): ()}
