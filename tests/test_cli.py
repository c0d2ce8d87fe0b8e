"""The command line: bad input gets one clear line on stderr and a non-zero exit,
never a traceback. These run the real ``torrentfs`` command in a subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from torrentfs.create import create_torrent

TORRENTFS = str(Path(sys.executable).with_name("torrentfs"))


def run(*args, timeout=30):
    return subprocess.run([TORRENTFS, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def assert_one_line_error(r, *needles):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("torrentfs: error: ")
    for needle in needles:
        assert needle in lines[0]


@pytest.fixture
def good_torrent(tmp_path):
    data = tmp_path / "payload.bin"
    data.write_bytes(os.urandom(100_000))
    t = tmp_path / "good.torrent"
    t.write_bytes(create_torrent(data, trackers=["http://127.0.0.1:1/announce"]))
    return t


@pytest.mark.parametrize("content, needle", [
    (b"this is not bencode", "not a torrent file"),
    (b"", "not a torrent file"),
    (b"d8:announce3:urle", "info"),
    (b"le", "not a torrent file"),
])
def test_malformed_torrent(tmp_path, content, needle):
    t = tmp_path / "bad.torrent"
    t.write_bytes(content)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    assert_one_line_error(run("mount", t, mnt), "bad.torrent", needle)
    assert_one_line_error(run("info", t), needle)
    assert not os.path.ismount(mnt)


def test_unsafe_path_torrent(tmp_path):
    import bencodepy
    info = {b"name": b"x", b"piece length": 16384, b"pieces": b"\0" * 20,
            b"files": [{b"length": 5, b"path": [b"..", b"etc", b"passwd"]}]}
    t = tmp_path / "evil.torrent"
    t.write_bytes(bencodepy.encode({b"info": info}))
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    assert_one_line_error(run("mount", t, mnt, "--cache-dir", tmp_path / "c"), "unsafe path")
    assert not (tmp_path / "etc").exists()


def test_missing_torrent_file(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    assert_one_line_error(run("mount", tmp_path / "nope.torrent", mnt), "no such file")
    assert_one_line_error(run("info", tmp_path / "nope.torrent"), "no such file")


def test_missing_mountpoint(tmp_path, good_torrent):
    assert_one_line_error(run("mount", good_torrent, tmp_path / "nowhere"),
                          "no such directory")


def test_mountpoint_not_empty(tmp_path, good_torrent):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    (mnt / "something").write_text("x")
    assert_one_line_error(run("mount", good_torrent, mnt), "not empty")


def test_mountpoint_is_a_file(tmp_path, good_torrent):
    f = tmp_path / "file"
    f.write_text("x")
    assert_one_line_error(run("mount", good_torrent, f), "not a directory")


def test_create_missing_path(tmp_path):
    assert_one_line_error(run("create", tmp_path / "nothing", "-o", tmp_path / "x.torrent"))


def test_bad_piece_size(tmp_path, good_torrent):
    r = run("create", tmp_path / "payload.bin", "-o", tmp_path / "y.torrent",
            "--piece-size", "1000")
    assert_one_line_error(r)


def test_info_prints_the_facts(good_torrent):
    from torrentfs.metainfo import parse
    meta = parse(good_torrent.read_bytes())
    r = run("info", good_torrent)
    assert r.returncode == 0, r.stderr
    assert meta.info_hash.hex() in r.stdout
    assert "payload.bin" in r.stdout
    assert "100000" in r.stdout
    assert "http://127.0.0.1:1/announce" in r.stdout


def test_help_for_every_command():
    for cmd in ([], ["mount"], ["unmount"], ["info"], ["create"]):
        r = run(*cmd, "--help")
        assert r.returncode == 0
        assert "usage: torrentfs" in r.stdout


def test_usage_error_is_short():
    r = run("mount")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr


# -- magnet links -------------------------------------------------------------------

@pytest.mark.parametrize("uri, needle", [
    ("magnet:?dn=nohash", "no info-hash"),
    ("magnet:?xt=urn:btih:1234", "expected 40 hex or 32 base32"),
    ("magnet:?xt=urn:btih:" + "ab" * 20 + "&x.pe=nowhere", "bad peer address"),
])
def test_bad_magnet_is_one_line(tmp_path, uri, needle):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    assert_one_line_error(run("mount", uri, mnt, "--cache-dir", tmp_path / "c"),
                          "bad magnet link", needle)
    assert_one_line_error(run("info", uri, "--cache-dir", tmp_path / "c"), needle)
    assert not os.path.ismount(mnt)


def test_info_of_a_magnet_nobody_serves_times_out_in_one_line(tmp_path):
    from swarm import free_port
    uri = f"magnet:?xt=urn:btih:{'cd' * 20}&x.pe=127.0.0.1:{free_port()}"
    r = run("info", uri, "--cache-dir", tmp_path / "c", "--metadata-timeout", "1")
    assert_one_line_error(r, f"no metadata for {'cd' * 20} after 1 s", "1 peer address")


def test_info_of_a_cached_magnet_is_the_same_as_of_the_torrent(tmp_path, good_torrent):
    from torrentfs.metainfo import parse
    meta = parse(good_torrent.read_bytes())
    folder = tmp_path / "c" / meta.info_hash.hex()
    folder.mkdir(parents=True)
    (folder / "info.bencode").write_bytes(meta.info_bytes)
    r = run("info", meta.magnet(), "--cache-dir", tmp_path / "c", "--metadata-timeout", "1")
    assert r.returncode == 0, r.stderr
    outside_info = ("created by:", "comment:")  # not in the info dictionary: unknown
    want = [l for l in run("info", good_torrent).stdout.splitlines()
            if not l.startswith(outside_info)]
    assert r.stdout.splitlines() == want


def test_bad_metadata_timeout(tmp_path):
    r = run("info", "magnet:?xt=urn:btih:" + "ab" * 20, "--metadata-timeout", "-3")
    assert r.returncode == 2 and "not a positive number of seconds" in r.stderr


def test_create_prints_the_magnet(tmp_path):
    from torrentfs import magnet
    f = tmp_path / "f.bin"
    f.write_bytes(b"x" * 5000)
    r = run("create", f, "-o", tmp_path / "f.torrent", "-t", "http://t.example/announce")
    assert r.returncode == 0, r.stderr
    line = next(l for l in r.stdout.splitlines() if l.startswith("magnet:"))
    m = magnet.parse(line.split(None, 1)[1])
    assert m.name == "f.bin" and m.trackers == ("http://t.example/announce",)
