"""The status file's ``files`` list kept encoded (``engine.statusfiles``): the text
spliced in is what ``json.dumps`` of the plain list gives, before and after pieces
are verified (or lost), and no entry is encoded again while nothing changed."""

from __future__ import annotations

import json

import bencodepy
import pytest

from torrentfs.core.bitfield import Bitfield
from torrentfs.core.geometry import Geometry
from torrentfs.core.metainfo import parse
from torrentfs.engine import statusfiles
from torrentfs.engine.status import _PUBLISHING, document, encode
from torrentfs.engine.statusfiles import Files

PIECE = 16384


class FakeTorrent:  # what Files reads of a Torrent
    def __init__(self, meta) -> None:
        self.meta = meta
        self.geometry = Geometry(meta.piece_length, tuple(f.length for f in meta.files))
        self.have = Bitfield(self.geometry.num_pieces)


def torrent(lengths, names=None) -> FakeTorrent:
    names = names or [f"f{i}.bin" for i in range(len(lengths))]
    files = [{b"length": n, b"path": [b"d", p.encode()]} for n, p in zip(lengths, names)]
    files.insert(1, {b"length": 100, b"path": [b".pad", b"100"], b"attr": b"p"})
    total = sum(f[b"length"] for f in files)
    info = {b"name": "t\u00e9\"x".encode(), b"piece length": PIECE, b"files": files,
            b"pieces": b"h" * 20 * -(-total // PIECE)}
    return FakeTorrent(parse(bencodepy.encode({b"info": info})))


def plain(t) -> str:
    return json.dumps(list(Files(t)), separators=(",", ":"))


@pytest.mark.parametrize("few", [0, 256])  # changed pieces found, or all counted
def test_the_encoded_list_is_what_json_dumps_gives(monkeypatch, few):
    monkeypatch.setattr(statusfiles, "_FEW", few)
    t = torrent([5000, 40000, 0, 7, 30000], names=["a", "b\u2603", "c\"q", "d\\e", "e"])
    assert [f["path"] for f in Files(t)][:2] == ["t\u00e9\"x/d/a", "t\u00e9\"x/d/b\u2603"]
    assert len(list(Files(t))) == 5  # no padding file
    assert Files(t).json() == plain(t)
    for piece in (0, 3, 1, 4):
        t.have.add(piece)
        assert Files(t).json() == plain(t)
    t.have.discard(3)  # a piece lost (evicted): its files show less again
    assert Files(t).json() == plain(t)
    for piece in range(t.geometry.num_pieces):
        t.have.add(piece)
    assert Files(t).json() == plain(t)
    assert all(f["verified"] == f["size"] for f in Files(t))


def test_many_changed_pieces_at_once(monkeypatch):
    monkeypatch.setattr(statusfiles, "_MANY", 2)
    monkeypatch.setattr(statusfiles, "_FEW", 0)
    t = torrent([PIECE * 3 + 5, 1, PIECE * 2])
    Files(t).json()
    for piece in (0, 1, 2, 4):
        t.have.add(piece)
    assert Files(t).json() == plain(t)


def test_nothing_is_encoded_again_while_no_piece_changes(monkeypatch):
    monkeypatch.setattr(statusfiles, "_FEW", 1)  # as for many files
    t = torrent([5000, 40000])
    first = Files(t).json()
    monkeypatch.setattr(statusfiles, "_quote", None)  # encoding a path would fail now
    monkeypatch.setattr(Geometry, "file_verified", None)  # and counting a file's bytes
    assert Files(t).json() == first


def test_the_document_splices_each_torrents_list(monkeypatch):
    one, two = torrent([5000]), torrent([70000, 3])
    two.have.add(0)
    docs = [{"name": "one", "files": Files(one)}, {"name": "two", "files": Files(two)}]
    doc = document(docs, "/mnt/x", pid=7, updated=1.0)
    assert json.loads(encode(doc)) == document(
        [{"name": "one", "files": list(Files(one))},
         {"name": "two", "files": list(Files(two))}], "/mnt/x", pid=7, updated=1.0)
    assert not _PUBLISHING.get()  # snapshots outside publish hold plain lists


def test_a_single_file_torrent():
    info = {b"name": b"one.bin", b"piece length": PIECE, b"length": 40000,
            b"pieces": b"h" * 60}
    t = FakeTorrent(parse(bencodepy.encode({b"info": info})))
    t.have.add(1)
    assert Files(t).json() == plain(t) == \
        '[{"path":"one.bin","size":40000,"verified":16384}]'
