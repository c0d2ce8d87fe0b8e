"""Tests for torrentfs.create (building .torrent files from disk)."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import bencodepy
import pytest

import torrentfs.disk.create as create_mod
from tests.harness.payload import data_of
from torrentfs.core.metainfo import FileEntry, parse
from torrentfs.disk.create import CreateError, choose_piece_length, create_torrent

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB




def piece_hashes(blob: bytes, piece_length: int) -> bytes:
    return b"".join(
        hashlib.sha1(blob[i:i + piece_length]).digest() for i in range(0, len(blob), piece_length)
    )


# ---------------------------------------------------------------------------
# choose_piece_length


@pytest.mark.parametrize(
    "total, expected",
    [
        (1, 16 * KiB),
        (16 * KiB * 2000, 16 * KiB),  # exactly 2000 pieces of 16 KiB
        (16 * KiB * 2000 + 1, 32 * KiB),
        (100 * MiB, 64 * KiB),  # 1600 pieces
        (700 * MiB, 512 * KiB),  # 1400 pieces
        (4 * GiB, 4 * MiB),  # 1024 pieces
        (30 * GiB, 16 * MiB),  # 1920 pieces
        (1024 * GiB, 16 * MiB),  # capped at 16 MiB
    ],
)
def test_choose_piece_length(total, expected):
    assert choose_piece_length(total) == expected


@pytest.mark.parametrize("total", [10**k for k in range(0, 14)] + [2**k + 1 for k in range(20, 40, 3)])
def test_choose_piece_length_properties(total):
    pl = choose_piece_length(total)
    assert pl & (pl - 1) == 0
    assert 16 * KiB <= pl <= 16 * MiB
    pieces = -(-total // pl)
    if 16 * KiB < pl < 16 * MiB:
        assert 1000 < pieces <= 2000
    if pl == 16 * KiB:
        assert pieces <= 2000


# ---------------------------------------------------------------------------
# Round trips


def test_single_file_round_trip(tmp_path):
    blob = data_of(100_000, 1)
    f = tmp_path / "vidéo.bin"
    f.write_bytes(blob)
    data = create_torrent(
        f,
        trackers=["http://t1/announce", "udp://t2:6969"],
        piece_length=32 * KiB,
        comment="a comment",
        creation_date=1234567890,
    )
    m = parse(data)
    assert not m.multi_file
    assert m.name == "vidéo.bin"
    assert m.files == (FileEntry(("vidéo.bin",), 100_000, 0, False, False),)
    assert m.piece_length == 32 * KiB
    assert m.piece_hashes == piece_hashes(blob, 32 * KiB)
    assert m.num_pieces == 4
    assert m.announce_list == (("http://t1/announce",), ("udp://t2:6969",))
    assert m.comment == "a comment"
    assert m.created_by == "torrentfs/0.1.0"
    assert m.creation_date == 1234567890
    assert m.private is False

    raw = bencodepy.decode(data)
    assert raw[b"announce"] == b"http://t1/announce"
    assert raw[b"announce-list"] == [[b"http://t1/announce"], [b"udp://t2:6969"]]
    # Canonical encoding: re-encoding is byte-identical, so the info-hash is stable.
    assert bencodepy.encode(raw) == data
    assert m.info_hash == hashlib.sha1(bencodepy.encode(raw[b"info"])).digest()


def make_tree(root: Path) -> dict[tuple[str, ...], bytes]:
    """A nested tree; returns {components: content} of the regular files."""
    files = {
        ("b.txt",): data_of(5000, 2),
        ("A.txt",): data_of(70_000, 3),  # 'A' < 'b' in byte order
        ("a-c",): data_of(1234, 4),  # full-string order would put 'a-c' before 'a/…'
        ("a", "z"): data_of(40_000, 5),
        ("a", "deep", "er", "empty.dat"): b"",
        ("a", "deep", "ünïcødé ファイル.txt"): data_of(33_333, 6),
        ("zz",): data_of(17, 7),
    }
    for parts, content in files.items():
        p = root.joinpath(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
    (root / "empty-dir" / "nested-empty").mkdir(parents=True)  # ignored
    return files


def test_directory_round_trip(tmp_path):
    root = tmp_path / "My Tree"
    files = make_tree(root)
    seen = []
    data = create_torrent(root, piece_length=16 * KiB, progress=lambda d, t: seen.append((d, t)))
    m = parse(data)

    assert m.multi_file
    assert m.name == "My Tree"
    expected_order = sorted(files, key=lambda parts: tuple(p.encode() for p in parts))
    assert [f.path for f in m.files] == expected_order
    assert expected_order[:4] == [("A.txt",), ("a", "deep", "er", "empty.dat"),
                                  ("a", "deep", "ünïcødé ファイル.txt"), ("a", "z")]
    assert all(not f.padding and not f.executable for f in m.files)
    assert [f.length for f in m.files] == [len(files[f.path]) for f in m.files]

    offset = 0
    for f in m.files:
        assert f.offset == offset
        offset += f.length
    blob = b"".join(files[f.path] for f in m.files)
    assert m.total_length == len(blob)
    # Independent check of every piece hash over the concatenated data.
    assert m.piece_hashes == piece_hashes(blob, 16 * KiB)
    for i in range(m.num_pieces):
        assert m.piece_hash(i) == hashlib.sha1(blob[i * 16 * KiB:(i + 1) * 16 * KiB]).digest()

    assert m.announce_list == ()
    assert b"announce" not in bencodepy.decode(data)
    assert isinstance(m.creation_date, int)

    # progress: one call per piece, monotone, ending at the total
    assert len(seen) == m.num_pieces
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1] == (m.total_length, m.total_length)
    assert all(t == m.total_length for _, t in seen)


def test_default_piece_length_and_trailing_slash(tmp_path):
    root = tmp_path / "d"
    root.mkdir()
    (root / "f").write_bytes(data_of(50_000, 8))
    m = parse(create_torrent(str(root) + "/"))
    assert m.name == "d"
    assert m.piece_length == choose_piece_length(50_000) == 16 * KiB


def test_dot_is_named_after_the_directory(tmp_path, monkeypatch):
    root = tmp_path / "here"
    root.mkdir()
    (root / "f").write_bytes(b"x")
    monkeypatch.chdir(root)
    assert parse(create_torrent(".")).name == "here"


def test_symlinks_and_special_files_skipped(tmp_path):
    root = tmp_path / "t"
    root.mkdir()
    (root / "real").write_bytes(b"real data")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (root / "link-to-file").symlink_to(root / "real")
    (root / "link-to-dir").symlink_to(outside)
    (root / "dangling").symlink_to(tmp_path / "nope")
    os.mkfifo(root / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / "sock"))
        m = parse(create_torrent(root))
    finally:
        sock.close()
    assert [f.path for f in m.files] == [("real",)]


def test_top_level_symlink_is_followed(tmp_path):
    target = tmp_path / "target.bin"
    target.write_bytes(b"hello")
    link = tmp_path / "link.bin"
    link.symlink_to(target)
    m = parse(create_torrent(link))
    assert m.name == "link.bin"
    assert m.total_length == 5


def test_private_and_executable(tmp_path):
    root = tmp_path / "p"
    root.mkdir()
    (root / "run.sh").write_bytes(b"#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "data").write_bytes(b"data")
    (root / "data").chmod(0o644)
    data = create_torrent(root, private=True, trackers=["http://only/announce"], created_by=None)
    m = parse(data)
    assert m.private
    assert {f.path: f.executable for f in m.files} == {("data",): False, ("run.sh",): True}
    raw = bencodepy.decode(data)
    assert b"announce-list" not in raw  # a single tracker: 'announce' only
    assert raw[b"announce"] == b"http://only/announce"
    assert b"created by" not in raw
    assert m.announce_list == (("http://only/announce",),)


def test_exact_multiple_of_piece_length(tmp_path):
    blob = data_of(64 * KiB, 9)
    f = tmp_path / "exact"
    f.write_bytes(blob)
    m = parse(create_torrent(f, piece_length=16 * KiB))
    assert m.num_pieces == 4
    assert m.piece_hashes == piece_hashes(blob, 16 * KiB)


def test_files_spanning_pieces_with_large_piece(tmp_path):
    # Many small files inside one piece, and a file spanning several pieces.
    root = tmp_path / "s"
    root.mkdir()
    contents = {f"f{i:03d}": data_of(i * 37, i) for i in range(1, 60)}
    contents["zbig"] = data_of(300_000, 99)
    for name, content in contents.items():
        (root / name).write_bytes(content)
    m = parse(create_torrent(root, piece_length=128 * KiB))
    blob = b"".join(contents[f.path[0]] for f in m.files)
    assert m.piece_hashes == piece_hashes(blob, 128 * KiB)


# ---------------------------------------------------------------------------
# Errors


def test_missing_path(tmp_path):
    with pytest.raises(CreateError, match="no such file or directory"):
        create_torrent(tmp_path / "nope")


def test_empty_directory(tmp_path):
    root = tmp_path / "empty"
    root.mkdir()
    with pytest.raises(CreateError, match="contains no regular files"):
        create_torrent(root)


def test_directory_of_only_empty_dirs_and_links(tmp_path):
    root = tmp_path / "hollow"
    (root / "a" / "b").mkdir(parents=True)
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(CreateError, match="contains no regular files"):
        create_torrent(root)


@pytest.mark.parametrize("single", [True, False])
def test_only_empty_files(tmp_path, single):
    if single:
        target = tmp_path / "empty.txt"
        target.write_bytes(b"")
    else:
        target = tmp_path / "d"
        target.mkdir()
        (target / "x").write_bytes(b"")
        (target / "y").write_bytes(b"")
    with pytest.raises(CreateError, match="only empty files"):
        create_torrent(target)


def test_special_file_at_top_level(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(CreateError, match="not a regular file or directory"):
        create_torrent(fifo)


def test_unreadable_file(tmp_path, monkeypatch):
    root = tmp_path / "r"
    root.mkdir()
    (root / "ok").write_bytes(b"fine")
    (root / "secret").write_bytes(b"locked")

    real_open = open

    def fake_open(path, *args, **kwargs):
        if Path(path).name == "secret":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    # Works even when the tests run as root (where chmod 000 would not stop us).
    monkeypatch.setattr(create_mod, "open", fake_open, raising=False)
    with pytest.raises(CreateError, match=r"cannot read .*secret.*Permission denied"):
        create_torrent(root)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read mode-000 files")
def test_unreadable_file_real_permissions(tmp_path):
    f = tmp_path / "locked"
    f.write_bytes(b"data")
    f.chmod(0)
    try:
        with pytest.raises(CreateError, match="cannot read"):
            create_torrent(f)
    finally:
        f.chmod(0o644)


def test_file_shrinking_while_hashing(tmp_path, monkeypatch):
    f = tmp_path / "shrinks"
    f.write_bytes(b"x" * 1000)
    real_stat = create_mod.Path.stat

    class BigStat:
        def __init__(self, st):
            self._st = st

        def __getattr__(self, name):
            return 2000 if name == "st_size" else getattr(self._st, name)

    monkeypatch.setattr(create_mod.Path, "stat", lambda self, **kw: BigStat(real_stat(self, **kw)))
    with pytest.raises(CreateError, match="shrank while hashing"):
        create_torrent(f)


@pytest.mark.parametrize("bad", [0, 1000, 8 * KiB, 16 * KiB + 1, 3 * 16 * KiB, 1024 * MiB, -16 * KiB, "16384"])
def test_bad_piece_length(tmp_path, bad):
    f = tmp_path / "f"
    f.write_bytes(b"data")
    with pytest.raises(CreateError, match="invalid piece length"):
        create_torrent(f, piece_length=bad)


@pytest.mark.parametrize("good", [16 * KiB, 1 * MiB, 256 * MiB])
def test_good_piece_length(tmp_path, good):
    f = tmp_path / "f"
    f.write_bytes(b"data")
    assert parse(create_torrent(f, piece_length=good)).piece_length == good


def test_backslash_in_file_name_is_refused(tmp_path):
    root = tmp_path / "w"
    root.mkdir()
    (root / "a\\b").write_bytes(b"x")
    with pytest.raises(CreateError, match="unsafe path"):
        create_torrent(root)


def test_non_utf8_file_name_is_refused(tmp_path):
    root = tmp_path / "n"
    root.mkdir()
    with open(os.fsencode(root) + b"/bad\xffname", "wb") as fh:
        fh.write(b"x")
    with pytest.raises(CreateError, match="not valid UTF-8"):
        create_torrent(root)


def test_create_error_is_one_line(tmp_path):
    with pytest.raises(CreateError) as excinfo:
        create_torrent(tmp_path / "missing\nname")
    assert str(excinfo.value).count("\n") == 0


# ---------------------------------------------------------------------------
# web seeds (BEP 19 url-list)


def test_web_seeds_written_as_url_list(tmp_path):
    f = tmp_path / "f.bin"
    f.write_bytes(b"x" * 1000)
    data = create_torrent(f, web_seeds=["http://a.test/f.bin", "https://b.test/pub/"])
    assert bencodepy.decode(data)[b"url-list"] == [b"http://a.test/f.bin",
                                                   b"https://b.test/pub/"]
    assert parse(data).url_list == ("http://a.test/f.bin", "https://b.test/pub/")
    assert b"url-list" not in bencodepy.decode(create_torrent(f))


def test_cli_create_web_seed_and_info(tmp_path):
    import subprocess
    import sys
    exe = str(Path(sys.executable).with_name("torrentfs"))
    f = tmp_path / "f.bin"
    f.write_bytes(b"x" * 1000)
    out = tmp_path / "f.torrent"
    r = subprocess.run([exe, "create", str(f), "-o", str(out), "--web-seed",
                        "http://a.test/f.bin", "--web-seed", "http://b.test/"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert parse(out.read_bytes()).url_list == ("http://a.test/f.bin", "http://b.test/")
    r = subprocess.run([exe, "info", str(out)], capture_output=True, text=True, timeout=30)
    assert "web seed:   http://a.test/f.bin\nweb seed:   http://b.test/\n" in r.stdout
    r = subprocess.run([exe, "create", str(f), "-o", str(tmp_path / "g.torrent"),
                        "--web-seed", "ftp://a.test/f.bin"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1
    assert "not an http:// or https:// URL: 'ftp://a.test/f.bin'" in r.stderr
    assert not (tmp_path / "g.torrent").exists()
