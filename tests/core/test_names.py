"""Name repair (torrentfs.core.names), and the check that matters: libtorrent gives
every repaired torrent of test_metainfo's REPAIRED table the same names."""

from __future__ import annotations

import pytest

from tests.core.test_metainfo import REPAIRED, shown_paths
from torrentfs.core import names
from torrentfs.core.metainfo import parse


@pytest.mark.parametrize("text, out", [
    ("a", "a"), (".", None), ("..", None), ("", "_"), ("...", "..."), ("/", None),
    ("/..", None), ("a/b", "ab"), ("a\\b", "ab"), ("a\x00b", "ab"), (".\u202e.", None),
    ("ab\u202ecod.exe", "abcod.exe"),
])
def test_component(text, out):
    assert names.component(text) == out


def test_path_left_empty_is_underscore():
    assert names.path(["..", "."]) == ("_",)
    assert names.path(["..", "x"]) == ("x",)


def test_dedupe_folders_first_then_files_in_order():
    paths, notes = names.dedupe([("a",), None, ("a", "b"), ("A",), ("a.1",)])
    assert paths == [("a.1",), None, ("a", "b"), ("A.2",), ("a.1.1",)]
    assert len(notes) == 3


def test_decode_like_libtorrent():
    assert names.decode("é".encode()) == "é"
    assert names.decode(b"\xc3\x28x") == "_x"  # a bad 2-byte sequence is one _
    assert names.decode(b"a\xe9 \xffb") == "a_b"  # a 3-byte lead takes 3 bytes
    assert names.decode(b"\x80") == "_"


def test_truncate_like_libtorrent():
    assert names.truncate("a" * 240) == "a" * 240
    assert names.truncate("a" * 241) == "a" * 240
    assert names.truncate("a" * 300 + ".mkv") == "a" * 240 + ".mkv"
    assert names.truncate("a" * 300 + ".toolongext") == "a" * 240


def test_symlink_target_stays_inside():
    files, folders = {("d", "f"), ("g",)}, {("d",)}
    assert names.symlink_target(("d", "f"), files, folders) == ("d", "f")
    assert names.symlink_target(("d", "..", "g"), files, folders) == ("g",)
    assert names.symlink_target(("d",), files, folders) == ("d",)
    assert names.symlink_target(("..", "etc", "passwd"), files, folders) is None
    assert names.symlink_target(("/etc", "passwd"), files, folders) is None
    assert names.symlink_target(("nothere",), files, folders) is None


def test_repaired_table_matches_libtorrent(tmp_path):
    from tests.harness.ltnames import lt_file_paths
    torrents = []
    for k, param in enumerate(REPAIRED):
        p = tmp_path / f"{k}.torrent"
        p.write_bytes(param.values[0])
        torrents.append(p)
    for param, files in zip(REPAIRED, lt_file_paths(torrents)):
        assert files is not None, param.id
        assert shown_paths(parse(param.values[0])) == [p for p, _ in files], param.id
