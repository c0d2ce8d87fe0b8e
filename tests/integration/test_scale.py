"""Big torrents at the common ``ulimit -n 1024``: a generated listing-only torrent of
100,000 files and one of 1,048,576 pieces mount, list and stat quickly in little
memory; a 3,000-file torrent seeded by libtorrent is read completely. BEP 47
symlinks are links in the mount.

The daemon runs under ``prlimit --nofile=1024``. Times and RSS are asserted loosely
(3x the targets of issue 14: a busy CI machine); scripts/bench measures them."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import bencodepy
import pytest

from tests.harness.bigtorrents import many_files, many_pieces
from tests.harness.payload import cmp_tree, data_of
from tests.harness.swarm import lt_create, lt_seeder

pytestmark = pytest.mark.integration

SLACK = 3  # times the target, for a busy CI machine
NOFILE = 1024


def ulimit_1024(argv: list[str]) -> list[str]:
    return ["prlimit", f"--nofile={NOFILE}", "--", *argv]


def daemon_status(m, key: str) -> str:
    pid = m.pid()
    assert pid, m.log
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def rss_mib(m) -> float:
    return int(daemon_status(m, "VmRSS").split()[0]) / 1024


def open_files_limit(m) -> int:
    for line in Path(f"/proc/{m.pid()}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError("no open-files limit")


def open_fds(m) -> int:
    return len(os.listdir(f"/proc/{m.pid()}/fd"))


def test_100000_files_mount_and_list_under_ulimit_1024(tmp_path, mount_torrent):
    torrent = tmp_path / "many.torrent"
    torrent.write_bytes(many_files(100_000))
    m = mount_torrent(torrent, wrap=ulimit_1024)
    assert open_files_limit(m) == NOFILE
    assert m.elapsed <= SLACK * 2.0, f"mount took {m.elapsed:.2f} s"
    t0 = time.monotonic()
    r = subprocess.run(["find", str(m.path)], capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    took = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    # the mountpoint, the torrent's folder, 100 folders of 1,000 files
    assert len(r.stdout.splitlines()) == 1 + 1 + 100 + 100_000
    assert took <= SLACK * 2.0, f"find took {took:.2f} s"
    last = m.path / "many" / "d099" / "f099999.bin"
    assert last.stat().st_size == 1 + 99_999 % 7
    assert open_fds(m) < 100  # no descriptor per file
    assert rss_mib(m) <= 2 * 150, f"RSS {rss_mib(m):.0f} MiB"  # memory is not load-bound


def test_million_pieces_mount_under_ulimit_1024(tmp_path, mount_torrent):
    torrent = tmp_path / "pieces.torrent"
    torrent.write_bytes(many_pieces(1 << 20))
    m = mount_torrent(torrent, wrap=ulimit_1024)
    assert open_files_limit(m) == NOFILE
    assert m.elapsed <= SLACK * 1.0, f"mount took {m.elapsed:.2f} s"
    st = (m.path / "pieces.bin").stat()
    assert st.st_size == 16 << 30 and st.st_blocks == 0
    assert rss_mib(m) <= 2 * 150, f"RSS {rss_mib(m):.0f} MiB"
    r = m.unmount()
    assert r.returncode == 0, r.stderr
    # The resume file is a bitfield: 128 KiB for a million pieces, and read back fast.
    resume = m.folder / "resume"
    assert resume.stat().st_size <= (1 << 20) // 8 + 64
    m2 = mount_torrent(torrent, cache=m.cache, wrap=ulimit_1024)
    assert m2.elapsed <= SLACK * 1.0, f"second mount took {m2.elapsed:.2f} s"


def test_too_few_descriptors_is_one_line_naming_the_remedy(tmp_path, mount_torrent):
    torrent = tmp_path / "many.torrent"
    torrent.write_bytes(many_files(800))  # files made at open: through the pool of 64
    m = mount_torrent(torrent, "--max-open-files", "64", expect_ok=False,
                      wrap=lambda argv: ["prlimit", "--nofile=12", "--", *argv])
    r = m.result
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "too many open files" in lines[0] and "ulimit -n" in lines[0], lines[0]
    assert "sub-exception" not in lines[0]


def test_3000_files_seeded_by_libtorrent_read_completely_under_ulimit_1024(
        tmp_path, mount_torrent):
    data = tmp_path / "data"
    top = data / "small"
    for i in range(3000):
        d = top / f"d{i // 300}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i}.bin").write_bytes(data_of(1000 + i % 3000, i))
    torrent = tmp_path / "small.torrent"
    lt_create(top, torrent, None, piece_size=64 * 1024)
    with lt_seeder(torrent, data, ip="127.0.0.6", timeout=120) as seeder:
        m = mount_torrent(torrent, "--peer", seeder.endpoint, "--max-open-files", "128",
                          wrap=ulimit_1024)
        assert open_files_limit(m) == NOFILE
        cmp_tree(top, m.path / "small", m)
        assert open_fds(m) < 300
        assert "Too many open files" not in m.log


def symlink_torrent() -> tuple[bytes, bytes]:
    import hashlib
    payload = data_of(20000, 5) + data_of(100, 6)
    files = [
        {b"path": [b"d", b"a.bin"], b"length": 20000},
        # a link whose entry claims a length: it holds no data all the same
        {b"path": [b"d", b"e", b"up"], b"length": 777, b"attr": b"l",
         b"symlink path": [b"d", b"a.bin"]},
        {b"path": [b"evil"], b"length": 0, b"attr": b"l",
         b"symlink path": [b"..", b"..", b"..", b"etc", b"passwd"]},
        {b"path": [b"run.sh"], b"length": 100, b"attr": b"x"},
    ]
    pl = 16384
    pieces = b"".join(hashlib.sha1(payload[i:i + pl]).digest() for i in range(0, len(payload), pl))
    info = {b"name": b"top", b"piece length": pl, b"files": files, b"pieces": pieces}
    return bencodepy.encode({b"info": info}), payload


@pytest.fixture
def seeded_links(tmp_path):
    """The symlink torrent, seeded by libtorrent."""
    data, payload = symlink_torrent()
    torrent = tmp_path / "links.torrent"
    torrent.write_bytes(data)
    src = tmp_path / "src" / "top"
    (src / "d").mkdir(parents=True)
    (src / "d" / "a.bin").write_bytes(payload[:20000])
    (src / "run.sh").write_bytes(payload[20000:])
    with lt_seeder(torrent, tmp_path / "src", ip="127.0.0.7", timeout=120) as seeder:
        yield torrent, src, seeder


def test_symlinks_are_links_and_reads_around_them_verify(seeded_links, mount_torrent):
    torrent, src, seeder = seeded_links
    m = mount_torrent(torrent, "--peer", seeder.endpoint, wrap=ulimit_1024)
    top = m.path / "top"
    link = top / "d" / "e" / "up"
    assert os.lstat(link).st_mode & 0o170000 == 0o120000
    assert os.readlink(link) == "../a.bin"
    assert os.readlink(top / "evil") == "evil"  # outside the torrent: a loop, nowhere
    with pytest.raises(OSError):
        (top / "evil").read_bytes()
    assert os.stat(top / "run.sh").st_mode & 0o777 == 0o555
    # The link's claimed 777 bytes are not in the stream: both pieces verify.
    assert (top / "d" / "a.bin").read_bytes() == (src / "d" / "a.bin").read_bytes()
    assert (top / "run.sh").read_bytes() == (src / "run.sh").read_bytes()
    assert link.read_bytes() == (src / "d" / "a.bin").read_bytes()  # followed inside


def test_symlinks_in_a_watch_mount(tmp_path, mount_torrent):
    data, _ = symlink_torrent()
    watched = tmp_path / "watched"
    watched.mkdir()
    (watched / "links.torrent").write_bytes(data)
    m = mount_torrent(watched, watch=True)
    top = m.path / "top"  # the torrent's folder, named after it
    assert os.readlink(top / "d" / "e" / "up") == "../a.bin"
    assert os.readlink(top / "evil") == "evil"
