"""What metainfo repaired (names as libtorrent repairs them) is logged once, when the
torrent is opened."""

from __future__ import annotations

import logging

import bencodepy

from torrentfs.core.metainfo import parse
from torrentfs.engine.torrent import Torrent


def test_repairs_are_logged_once(tmp_path, caplog):
    info = {b"name": b"top", b"piece length": 16384, b"pieces": b"\1" * 20,
            b"files": [{b"path": [b"..", b"a"], b"length": 5},
                       {b"path": [b"a"], b"length": 5}]}
    meta = parse(bencodepy.encode({b"info": info}) + b"\n")
    assert len(meta.repairs) == 3  # the .., the taken path, the trailing newline
    with caplog.at_level(logging.WARNING, logger="torrentfs.torrent"):
        Torrent(meta, tmp_path / "c")
    lines = [r.getMessage() for r in caplog.records if "repaired" in r.getMessage()]
    assert len(lines) == 3
    assert any("'a.1'" in line for line in lines)
    assert [f.path for f in meta.files] == [("a",), ("a.1",)]
