"""Tests for torrentfs.tree: the directory tree a torrent shows."""

from __future__ import annotations

import hashlib
import os

import bencodepy
import pytest

from torrentfs.core.metainfo import parse
from torrentfs.core.tree import ROOT_INODE, Tree
from torrentfs.disk.create import create_torrent

PL = 16384


def torrent(name: bytes, files=None, length=None) -> bytes:
    """A .torrent from a bencode dict: ``files`` is a list of (path list, length, attr)."""
    info: dict = {b"name": name, b"piece length": PL}
    if files is None:
        info[b"length"] = length
        total = length
    else:
        entries = []
        for path, n, attr in files:
            e = {b"path": path, b"length": n}
            if attr:
                e[b"attr"] = attr
            entries.append(e)
        info[b"files"] = entries
        total = sum(n for _, n, _ in files)
    n = -(-total // PL)
    info[b"pieces"] = b"".join(hashlib.sha1(bytes([i % 256])).digest() for i in range(n))
    return bencodepy.encode({b"info": info})


def tree_of(data: bytes) -> Tree:
    return Tree.from_metainfo(parse(data))


def listing(t: Tree, inode: int = ROOT_INODE, prefix: str = "") -> list[str]:
    """Every path under ``inode``, directories with a trailing '/'."""
    out = []
    for node in t.children(inode):
        path = prefix + node.name
        if node.is_dir:
            out.append(path + "/")
            out += listing(t, node.inode, path + "/")
        else:
            out.append(path)
    return out


MULTI = torrent(b"album", [
    ([b"cover.jpg"], 100, None),
    ([b"cd1", b"01.flac"], 30000, None),
    ([b".pad", b"2768"], 2768, b"p"),
    ([b"cd1", b"02.flac"], 20000, b"x"),
    ([b"cd2", b"sub", b"03.flac"], 5, None),
    ([b"empty.txt"], 0, None),
])


def test_single_file_tree():
    t = tree_of(torrent(b"movie.mkv", length=40000))
    root = t.root
    assert root.inode == ROOT_INODE and root.is_dir and root.parent == ROOT_INODE
    assert list(root.children) == ["movie.mkv"]
    node = t.lookup(ROOT_INODE, "movie.mkv")
    assert node is not None
    assert not node.is_dir
    assert node.size == 40000
    assert node.file_index == 0
    assert node.parent == ROOT_INODE
    assert t.path(node.inode) == "movie.mkv"
    assert len(t.nodes) == 2


def test_multi_file_tree():
    t = tree_of(MULTI)
    assert listing(t) == [
        "album/",
        "album/cd1/",
        "album/cd1/01.flac",
        "album/cd1/02.flac",
        "album/cd2/",
        "album/cd2/sub/",
        "album/cd2/sub/03.flac",
        "album/cover.jpg",
        "album/empty.txt",
    ]
    album = t.lookup(ROOT_INODE, "album")
    assert album.is_dir and album.size == 0 and album.file_index is None
    cd1 = t.lookup(album.inode, "cd1")
    f2 = t.lookup(cd1.inode, "02.flac")
    assert (f2.size, f2.file_index, f2.executable) == (20000, 3, True)
    f1 = t.lookup(cd1.inode, "01.flac")
    assert (f1.size, f1.file_index, f1.executable) == (30000, 1, False)
    empty = t.lookup(album.inode, "empty.txt")
    assert empty.size == 0 and empty.file_index == 5
    deep = t.lookup(t.lookup(t.lookup(album.inode, "cd2").inode, "sub").inode, "03.flac")
    assert t.path(deep.inode) == "album/cd2/sub/03.flac"
    assert t.path(ROOT_INODE) == ""
    assert t.path(album.inode) == "album"


def test_padding_files_hidden():
    t = tree_of(MULTI)
    album = t.lookup(ROOT_INODE, "album")
    assert t.lookup(album.inode, ".pad") is None
    assert all(n.file_index != 2 for n in t.nodes.values())
    assert not any(n.name in (".pad", "2768") for n in t.nodes.values())


def test_only_padding_shows_empty_folder():
    t = tree_of(torrent(b"pads", [([b".pad", b"100"], 100, b"p")]))
    assert listing(t) == ["pads/"]
    folder = t.lookup(ROOT_INODE, "pads")
    assert folder.is_dir and t.children(folder.inode) == []
    assert t.get(folder.inode) is folder
    assert t.path(folder.inode) == "pads"


def test_inodes_are_stable_and_in_sorted_path_order():
    a, b = tree_of(MULTI), tree_of(MULTI)
    assert {i: (n.name, n.parent, n.is_dir, n.size, n.file_index) for i, n in a.nodes.items()} == \
        {i: (n.name, n.parent, n.is_dir, n.size, n.file_index) for i, n in b.nodes.items()}
    # numbered 1..n with no gaps, in sorted path order
    assert sorted(a.nodes) == list(range(1, len(a.nodes) + 1))
    paths = [a.path(i) for i in sorted(a.nodes) if i != ROOT_INODE]
    assert paths == [
        "album",
        "album/cd1",
        "album/cd1/01.flac",
        "album/cd1/02.flac",
        "album/cd2",
        "album/cd2/sub",
        "album/cd2/sub/03.flac",
        "album/cover.jpg",
        "album/empty.txt",
    ]


def test_inodes_do_not_depend_on_file_order():
    files = [([b"b"], 1, None), ([b"a", b"z"], 2, None), ([b"a", b"y"], 3, None)]
    one = tree_of(torrent(b"t", files))
    two = tree_of(torrent(b"t", list(reversed(files))))
    assert {one.path(i): i for i in one.nodes} == {two.path(i): i for i in two.nodes}


def test_lookup_edges():
    t = tree_of(MULTI)
    album = t.lookup(ROOT_INODE, "album")
    cover = t.lookup(album.inode, "cover.jpg")
    assert t.lookup(ROOT_INODE, "nope") is None
    assert t.lookup(cover.inode, "x") is None  # not a directory
    assert t.lookup(9999, "album") is None  # no such inode
    assert t.lookup(album.inode, "cd1/01.flac") is None  # one component at a time
    assert t.get(9999) is None
    assert t.get(cover.inode) is cover


def test_children_sorted_by_name():
    t = tree_of(torrent(b"t", [([b"b"], 1, None), ([b"C"], 1, None), ([b"a"], 1, None),
                               ([b"\xc3\xa9"], 1, None)]))
    folder = t.lookup(ROOT_INODE, "t")
    assert [n.name for n in t.children(folder.inode)] == ["C", "a", "b", "\u00e9"]


def test_non_ascii_names():
    name = "m\u00fasica \u65e5\u672c"
    t = tree_of(torrent(name.encode(), [(["\u00e9t\u00e9".encode(), "\U0001f600.txt".encode()], 7, None)]))
    top = t.lookup(ROOT_INODE, name)
    sub = t.lookup(top.inode, "\u00e9t\u00e9")
    leaf = t.lookup(sub.inode, "\U0001f600.txt")
    assert leaf.size == 7
    assert t.path(leaf.inode) == f"{name}/\u00e9t\u00e9/\U0001f600.txt"


def test_invalid_utf8_name_is_replaced():
    t = tree_of(torrent(b"bad\xffname", length=10))
    assert list(t.root.children) == ["bad_name"]  # as libtorrent shows it


def test_path_clash_rejected():
    with pytest.raises(ValueError):
        Tree([(("a",), 1, 0, False), (("a",), 2, 1, False)])
    with pytest.raises(ValueError):
        Tree([(("a",), 1, 0, False), (("a", "b"), 2, 1, False)])
    with pytest.raises(ValueError):
        Tree([(("a", "b"), 1, 0, False), (("a",), 2, 1, False)])


def test_tree_from_created_torrents(tmp_path):
    single = tmp_path / "one.bin"
    single.write_bytes(b"x" * 50000)
    t = tree_of(create_torrent(single, piece_length=PL, creation_date=0))
    assert [(n.name, n.size) for n in t.children(ROOT_INODE)] == [("one.bin", 50000)]

    folder = tmp_path / "dir\u00e9"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.txt").write_bytes(b"abc")
    (folder / "z.sh").write_bytes(b"#!/bin/sh\n")
    os.chmod(folder / "z.sh", 0o755)
    (folder / "empty").write_bytes(b"")
    meta = parse(create_torrent(folder, piece_length=PL, creation_date=0))
    t = Tree.from_metainfo(meta)
    assert listing(t) == ["dir\u00e9/", "dir\u00e9/empty", "dir\u00e9/sub/", "dir\u00e9/sub/a.txt",
                          "dir\u00e9/z.sh"]
    top = t.lookup(ROOT_INODE, "dir\u00e9")
    sh = t.lookup(top.inode, "z.sh")
    assert sh.executable and sh.size == 10
    assert meta.files[sh.file_index].path == ("z.sh",)
    for node in t.nodes.values():
        if not node.is_dir:
            f = meta.files[node.file_index]
            assert f.length == node.size and f.path[-1] == node.name


# -- BEP 47 symlinks -----------------------------------------------------------------


def symlink_torrent(files) -> bytes:
    import hashlib

    import bencodepy
    total = sum(f.get(b"length", 0) for f in files if not f.get(b"attr", b"").startswith(b"l"))
    pieces = b"".join(hashlib.sha1(bytes([i])).digest() for i in range(-(-total // 16384)))
    return bencodepy.encode({b"info": {b"name": b"top", b"piece length": 16384,
                                       b"files": files, b"pieces": pieces}})


def test_symlinks_are_links_inside_the_torrent():
    from torrentfs.core.metainfo import parse
    meta = parse(symlink_torrent([
        {b"path": [b"d", b"a"], b"length": 10},
        {b"path": [b"d", b"e", b"up"], b"length": 0, b"attr": b"l", b"symlink path": [b"d", b"a"]},
        {b"path": [b"dir"], b"length": 99, b"attr": b"l", b"symlink path": [b"d"]},
        {b"path": [b"evil"], b"length": 0, b"attr": b"l",
         b"symlink path": [b"..", b"..", b"etc", b"passwd"]},
        {b"path": [b"abs"], b"length": 0, b"attr": b"l", b"symlink path": [b"/etc", b"passwd"]},
        {b"path": [b"x"], b"length": 10, b"attr": b"x"},
    ]))
    # A link holds no data, whatever length it claims: x follows a straight after.
    assert [f.length for f in meta.files] == [10, 0, 0, 0, 0, 10]
    assert meta.files[5].offset == 10
    t = Tree.from_metainfo(meta)
    links = {t.path(n.inode): n.symlink for n in t.nodes.values() if n.symlink is not None}
    assert links == {"top/d/e/up": "../a", "top/dir": "d",
                     "top/evil": "evil", "top/abs": "abs"}  # escaping ones: themselves
    x = t.lookup(t.lookup(1, "top").inode, "x")
    assert x.executable and x.symlink is None
