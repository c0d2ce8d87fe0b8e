"""multifs: the user.torrentfs.* xattrs of a watch mount (the handlers, no mount): the
root says how many torrents are shown and which files were skipped and why; each
torrent's folder gives that torrent's facts, its files their progress."""

from __future__ import annotations

import errno

import pyfuse3
import pytest

from tests.harness.fakepeer import quiet, small_torrent
from torrentfs.core.tree import ROOT_INODE, Tree
from torrentfs.engine.torrent import Torrent
from torrentfs.fs.multifs import MultiFS


async def test_xattrs_of_the_root_and_of_each_torrent(tmp_path):
    skipped = {"bad.torrent": "not a torrent file"}
    fs = MultiFS(invalidate=lambda *a, **kw: None,
                 root_facts=lambda: {"skipped": "\n".join(f"{f}: {w}"
                                                          for f, w in skipped.items())})
    (tmp_path / "1").mkdir()
    meta, _ = small_torrent(tmp_path / "1", 100_000, seed=1)
    fs.add(meta.name, Torrent(meta, tmp_path / "c1", quiet()), Tree.from_metainfo(meta))

    assert await fs.getxattr(ROOT_INODE, b"user.torrentfs.torrents", None) == b"1"
    assert await fs.getxattr(ROOT_INODE, b"user.torrentfs.skipped", None) == \
        b"bad.torrent: not a torrent file"
    assert set(await fs.listxattr(ROOT_INODE, None)) == {
        b"user.torrentfs.torrents", b"user.torrentfs.skipped"}
    with pytest.raises(pyfuse3.FUSEError) as e:
        await fs.getxattr(ROOT_INODE, b"user.torrentfs.infohash", None)
    assert e.value.errno == errno.ENODATA

    folder = await fs.lookup(ROOT_INODE, meta.name.encode())
    assert await fs.getxattr(folder.st_ino, b"user.torrentfs.infohash", None) == \
        meta.info_hash.hex().encode()
    assert await fs.getxattr(folder.st_ino, b"user.torrentfs.progress", None) == \
        b"0/100000"
    assert b"user.torrentfs.peers" in await fs.listxattr(folder.st_ino, None)
    file = await fs.lookup(folder.st_ino, meta.name.encode())
    assert await fs.getxattr(file.st_ino, b"user.torrentfs.pieces", None) == \
        f"0/{meta.num_pieces}".encode()
    assert b"user.torrentfs.infohash" not in await fs.listxattr(file.st_ino, None)


def test_a_piece_drops_the_attributes_of_its_file_at_the_inode_the_kernel_knows(
        tmp_path, monkeypatch):
    """A piece arriving changes its file's st_blocks: the kernel is told to drop the
    cached attributes of that file as the mount shows it (the torrent's slot added
    to the tree's inode), not of the tree's bare inode."""
    fs = MultiFS(invalidate=lambda *a, **kw: None)
    for n in (1, 2):
        (tmp_path / str(n)).mkdir()
        meta, _ = small_torrent(tmp_path / str(n), 100_000, seed=n)
        fs.add(f"t{n}", Torrent(meta, tmp_path / f"c{n}", quiet()), Tree.from_metainfo(meta))
    dropped = []
    monkeypatch.setattr(pyfuse3, "trio_token", object())
    monkeypatch.setattr(pyfuse3, "invalidate_inode",
                        lambda inode, attr_only=False: dropped.append((inode, attr_only)))
    child = fs._children[2]
    child._piece_changed(0)
    [file_node] = [n for n in child.tree.nodes.values() if not n.is_dir]
    assert dropped == [(child.base + file_node.inode, True)]
    assert child.base != 0
