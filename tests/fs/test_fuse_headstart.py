"""fs.fuse: a folder's first READDIR hands its video files to the head start
(engine/headstart), once per listing from its start; other files and sub-folders
are not videos."""

from __future__ import annotations

import pyfuse3

from tests.harness.fakepeer import inline, quiet, small_tree_torrent
from torrentfs.core.tree import Tree
from torrentfs.engine.torrent import Torrent
from torrentfs.fs.fuse import TorrentFS


async def test_a_listing_gives_its_videos_a_head_start(tmp_path, monkeypatch):
    meta, _ = small_tree_torrent(tmp_path, {"a.mkv": 70000, "b.txt": 5000,
                                            "sub/c.MP4": 40000, "d.mp4": 0})
    t = Torrent(meta, tmp_path / "cache", quiet(), offload=inline)
    fs = TorrentFS(t, Tree.from_metainfo(meta))
    calls = []
    monkeypatch.setattr(t.reads.head_start, "listed",
                        lambda folder, videos: calls.append((folder, list(videos))))
    monkeypatch.setattr(pyfuse3, "readdir_reply", lambda *a: True)
    files = {tuple(f.path): i for i, f in enumerate(meta.files)}
    [top] = fs.tree.children(fs.tree.root.inode)  # the torrent's folder
    root = top.inode
    await fs.readdir(root, 0, None)
    assert calls == [(root, [files[("a.mkv",)], files[("d.mp4",)]])]
    await fs.readdir(root, 2, None)  # the rest of the same listing
    assert len(calls) == 1
    [sub] = [n for n in fs.tree.children(root) if n.is_dir]
    await fs.readdir(sub.inode, 0, None)
    assert calls[1] == (sub.inode, [files[("sub", "c.MP4")]])
