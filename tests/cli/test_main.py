"""The command line: bad input gets one clear line on stderr and a non-zero exit,
never a traceback. These run the real ``torrentfs`` command in a subprocess."""

import errno
import os
import signal
import time
from pathlib import Path

import pytest

from tests.harness.command import assert_one_line_error, run
from torrentfs.core.magnet import link as magnet_link
from torrentfs.fs.procfs import pid_alive


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
    # What no repair makes safe: a single file whose name is "..". (A path with ".."
    # components is repaired, as libtorrent does: tests/integration/test_corpus.py.)
    info = {b"name": b"..", b"piece length": 16384, b"pieces": b"\0" * 20, b"length": 5}
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


def test_watch_needs_a_folder(tmp_path, good_torrent):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    assert_one_line_error(run("mount", "--watch", good_torrent, mnt), "not a directory")
    assert_one_line_error(run("mount", "--watch", tmp_path / "nowhere", mnt),
                          "not a directory")
    watched = tmp_path / "watched"
    watched.mkdir()
    assert_one_line_error(run("mount", "--watch", watched, mnt, "--seed-after", "ratio=1"),
                          "--seed-after", "--watch")
    assert_one_line_error(run("mount", "--watch", watched, tmp_path / "nowhere"),
                          "no such directory")
    assert not os.path.ismount(mnt)


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
    from torrentfs.core.metainfo import parse
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


@pytest.mark.parametrize("argv, needle", [
    (["mount"], "TORRENT, MOUNTPOINT"),
    (["mount", "x.torrent"], "required: MOUNTPOINT"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["mount", "x.torrent", "mnt", "--port", "http"], "--port"),
])
def test_usage_error_is_one_line(argv, needle):
    r = run(*argv)
    assert r.returncode == 2
    assert_one_line_error(r, needle, "--help")
    assert r.stdout == ""


def test_bare_torrentfs_prints_help():
    """No command: the help, on stdout, and exit 0 (as ``--help``), not an error."""
    r = run()
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: torrentfs")
    assert "commands:" in r.stdout and "mount" in r.stdout
    assert r.stderr == ""


def a_directory(d: Path) -> Path:
    d.mkdir()
    return d


def under_a_file(d: Path) -> Path:
    d.write_text("x")
    return d / "under.torrent"


@pytest.mark.parametrize("make, needle", [
    (a_directory, "is a directory"),
    (under_a_file, "Not a directory"),
    (lambda d: Path("/dev/zero"), "over the 100 MiB limit"),
])
def test_unreadable_torrent(tmp_path, make, needle):
    """chmod 000 means nothing to root, so: a directory, a path under a file, and a
    device that never ends."""
    torrent = make(tmp_path / "t")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    assert_one_line_error(run("info", torrent), str(torrent), needle)
    assert_one_line_error(run("mount", torrent, mnt, "--cache-dir", tmp_path / "c"),
                          str(torrent), needle)
    assert not (tmp_path / "c").exists()


@pytest.mark.integration
def test_mountpoint_in_use(tmp_path, good_torrent, mount_torrent):
    m = mount_torrent(good_torrent)
    r = run("mount", good_torrent, m.path, "--cache-dir", tmp_path / "other")
    assert_one_line_error(r, "already mounted")
    assert os.listdir(m.path) == ["payload.bin"]  # the first mount is untouched


def stale(path: Path) -> bool:
    try:
        os.statvfs(path)  # stat may be answered from the kernel's cache
    except OSError as e:
        return e.errno == errno.ENOTCONN
    return False


@pytest.mark.integration
def test_stale_mountpoint_is_cleared(good_torrent, mount_torrent):
    """A daemon killed with SIGKILL leaves "Transport endpoint is not connected";
    the next mount there detaches it (lazily), says so, and mounts."""
    m = mount_torrent(good_torrent)
    pid = m.pid()
    os.kill(pid, signal.SIGKILL)
    # Its main thread shows as a zombie before the others have let go of /dev/fuse.
    deadline = time.monotonic() + 10
    while not stale(m.path) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert stale(m.path)
    r = run("mount", good_torrent, m.path, "--cache-dir", m.cache, timeout=60)
    assert r.returncode == 0, r.stderr + m.log
    assert r.stderr.splitlines() == [
        f"torrentfs: cleared a stale mount on {m.path} (its daemon had died)"]
    assert os.listdir(m.path) == ["payload.bin"]
    mounts = [line for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if line.split()[4] == str(m.path)]
    assert len(mounts) == 1  # the dead one is gone, not stacked under the new one
    assert m.pid() != pid and pid_alive(m.pid())  # the fixture unmounts the new one


def test_log_lines_cannot_be_forged():
    """Words from a tracker, a peer or a torrent may hold newlines and escape
    sequences: each log record stays one line, with them shown escaped."""
    import io
    import logging

    from torrentfs.cli.output import setup_logging
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out = io.StringIO()
    try:
        setup_logging("info", stream=out)
        logging.getLogger("torrentfs.tracker").warning(
            "tracker %s warns: %s", "http://t/", "slow\n03:00:00 ERROR torrentfs: forged\x1b[2J")
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("tracker http://t/ warns: slow\\n03:00:00 ERROR torrentfs: forged\\x1b[2J")


def test_lsd_is_on_unless_turned_off():
    from torrentfs.cli.main import build_parser
    p = build_parser()
    for cmd in (["mount", "t", "m"], ["seed", "t", "d"]):
        assert p.parse_args(cmd).lsd is True
        assert p.parse_args(cmd + ["--no-lsd"]).lsd is False
        assert p.parse_args(cmd + ["--no-lsd", "--lsd"]).lsd is True  # the last one wins


@pytest.mark.parametrize("args, needle", [
    (["--dht-bootstrap", "nohost"], "not HOST:PORT"),
    (["--dht-bootstrap", ","], "no HOST:PORT"),
    (["--dht-port", "70000"], "not a port"),
])
def test_bad_dht_options(tmp_path, good_torrent, args, needle):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = run("mount", good_torrent, mnt, *args)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert needle in r.stderr.strip().splitlines()[-1]


@pytest.mark.integration
def test_dht_port_taken_is_one_line(tmp_path, good_torrent):
    import socket
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", 0))
        r = run("mount", good_torrent, mnt, "--cache-dir", tmp_path / "c", "--dht-port",
                s.getsockname()[1], "--dht-bootstrap", "127.0.0.1:9")
    assert_one_line_error(r, "UDP port", "for the DHT")
    assert not os.path.ismount(mnt)


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
    from tests.harness.swarm import free_port
    uri = f"magnet:?xt=urn:btih:{'cd' * 20}&x.pe=127.0.0.1:{free_port()}"
    r = run("info", uri, "--cache-dir", tmp_path / "c", "--metadata-timeout", "1")
    assert_one_line_error(r, f"no metadata for {'cd' * 20} after 1 s", "1 peer address")


def test_info_of_a_cached_magnet_is_the_same_as_of_the_torrent(tmp_path, good_torrent):
    from torrentfs.core.metainfo import parse
    meta = parse(good_torrent.read_bytes())
    folder = tmp_path / "c" / meta.info_hash.hex()
    folder.mkdir(parents=True)
    (folder / "info.bencode").write_bytes(meta.info_bytes)
    r = run("info", magnet_link(meta), "--cache-dir", tmp_path / "c", "--metadata-timeout", "1")
    assert r.returncode == 0, r.stderr
    outside_info = ("created by:", "comment:")  # not in the info dictionary: unknown
    want = [l for l in run("info", good_torrent).stdout.splitlines()
            if not l.startswith(outside_info)]
    assert r.stdout.splitlines() == want


def test_bad_metadata_timeout(tmp_path):
    r = run("info", "magnet:?xt=urn:btih:" + "ab" * 20, "--metadata-timeout", "-3")
    assert r.returncode == 2 and "not a positive number of seconds" in r.stderr


def test_create_prints_the_magnet(tmp_path):
    from torrentfs.core import magnet
    f = tmp_path / "f.bin"
    f.write_bytes(b"x" * 5000)
    r = run("create", f, "-o", tmp_path / "f.torrent", "-t", "http://t.example/announce")
    assert r.returncode == 0, r.stderr
    line = next(l for l in r.stdout.splitlines() if l.startswith("magnet:"))
    m = magnet.parse(line.split(None, 1)[1])
    assert m.name == "f.bin" and m.trackers == ("http://t.example/announce",)


def test_transport_switches_reach_the_torrent_options():
    from torrentfs.cli.args import torrent_options
    from torrentfs.cli.main import build_parser
    p = build_parser()
    for cmd in (["mount", "t", "m"], ["seed", "t", "d"]):
        o = torrent_options(p.parse_args(cmd))
        assert (o.tcp, o.utp) == (True, True)
        o = torrent_options(p.parse_args(cmd + ["--no-utp"]))
        assert (o.tcp, o.utp) == (True, False)
        o = torrent_options(p.parse_args(cmd + ["--no-tcp"]))
        assert (o.tcp, o.utp) == (False, True)


def test_head_start_reaches_the_torrent_options():
    from torrentfs.cli.args import torrent_options
    from torrentfs.cli.main import build_parser
    p = build_parser()
    assert torrent_options(p.parse_args(["mount", "t", "m"])).head_start == 8 << 20
    assert torrent_options(p.parse_args(["mount", "t", "m", "--head-start", "0"])).head_start == 0
    assert torrent_options(p.parse_args(["mount", "t", "m", "--head-start", "2M"])).head_start == 2 << 20


def test_no_utp_and_no_tcp_is_one_line(tmp_path, good_torrent):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    assert_one_line_error(run("mount", good_torrent, mnt, "--cache-dir", tmp_path / "c",
                              "--no-utp", "--no-tcp"), "no way to reach a peer")
    assert not os.path.ismount(mnt)


@pytest.mark.parametrize("kind, extra", [("tcp", []), ("udp", ["--no-tcp"])])
def test_listen_port_taken_is_one_line(tmp_path, good_torrent, kind, extra):
    """The TCP port, or with --no-tcp uTP's UDP port, taken by another program."""
    import socket
    with socket.socket(socket.AF_INET,
                       socket.SOCK_STREAM if kind == "tcp" else socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", 0))
        if kind == "tcp":
            s.listen()
        port = s.getsockname()[1]
        r = run("seed", good_torrent, good_torrent.parent, "--port", port, "--no-dht",
                "--no-lsd", "--cache-dir", tmp_path / "c", *extra)
    # seed logs to stderr: the error is its last line, and no traceback.
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"torrentfs: error: cannot listen on port {port}: ") \
        and "in use" in last, last
