"""Integration, issue 12, on real mounts: a busy port is one line for mount, mount
--watch and seed (checked before the daemon starts or the data is verified; a port
taken later, in the daemon, is test_errors.py's); a read
fails ``--read-timeout`` after its first attempt, not twice that; a read waiting
during an unmount gets EIO; a cache folder on a small disk gets a limit from its
free space (one warning, shown in status), in a single and in a watch mount, and the
file still reads right; each
tracker's last answer or refusal is in ``status``. Every mount is unmounted by the
fixture, the tmpfs after it."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time

import pytest

from tests.harness.command import TORRENTFS, run
from tests.harness.payload import data_of
from tests.harness.swarm import free_port, lt_create, lt_seeder, opentracker, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]


def one_error_line(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0, r
    assert len(lines) == 1, r.stderr
    for bad in ("Traceback", "ExceptionGroup", "internal error", "Exceptions from Trio"):
        assert bad not in r.stderr
    assert lines[0].startswith("torrentfs: error: ")
    return lines[0]


def status_json(m) -> dict:
    r = subprocess.run([TORRENTFS, "status", str(m.path), "--cache-dir", str(m.cache),
                        "--json"], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def status_text(m) -> str:
    r = subprocess.run([TORRENTFS, "status", str(m.path), "--cache-dir", str(m.cache)],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return r.stdout


# -- a busy port ------------------------------------------------------------------------

@pytest.fixture
def busy_port():
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("", 0))
        s.listen()
        yield s.getsockname()[1]


def test_a_busy_port_is_one_line_for_mount_watch_and_seed(tmp_path, good_torrent,
                                                          busy_port, mount_torrent):
    watched = tmp_path / "watched"
    watched.mkdir()
    for args, watch in (((good_torrent,), False), ((watched,), True)):
        m = mount_torrent(*args, "--port", str(busy_port), watch=watch, expect_ok=False)
        line = one_error_line(m.result)
        assert f"cannot listen on port {busy_port}: it is in use" in line
        assert "--port" in line
        assert not os.path.ismount(m.path)
    t0 = time.monotonic()
    r = run("seed", good_torrent, tmp_path, "--port", busy_port, "--no-dht", "--no-lsd",
            "--cache-dir", tmp_path / "c", "-v")
    assert f"cannot listen on port {busy_port}: it is in use" in one_error_line(r)
    assert "verified" not in r.stderr and time.monotonic() - t0 < 20  # before verifying


# -- reads: the timeout, and an unmount while one waits ---------------------------------

READER = """
import errno, sys, time
t0 = time.monotonic()
try:
    with open(sys.argv[1], "rb", buffering=0) as f:
        f.read(4096)
    print("ok", time.monotonic() - t0)
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno), time.monotonic() - t0)
"""


def read_in_child(path, timeout=60) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", READER, str(path)], text=True,
                            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)


def test_read_timeout_counts_from_the_first_attempt(good_torrent, mount_torrent):
    """No peer has the data: a read with --read-timeout 4 fails with EIO after 4 s
    and a little, not after the 8 s of the kernel's retry waiting 4 s again."""
    m = mount_torrent(good_torrent, "--read-timeout", "4")
    reader = read_in_child(m.path / "payload.bin")
    try:
        out, _ = reader.communicate(timeout=60)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait(10)
    what, took = out.split()
    assert what == "EIO", out
    assert 3.9 <= float(took) < 4 + 2.0, out  # the retry waits 0.5 s at most


def test_a_read_waiting_during_unmount_gets_eio(good_torrent, mount_torrent):
    m = mount_torrent(good_torrent)  # --read-timeout 60: the read waits
    reader = read_in_child(m.path / "payload.bin")
    try:
        wait_until(lambda: status_json(m)["torrents"][0]["reads"], timeout=30)
        r = m.unmount()
        assert r.returncode == 0, r.stderr
        out, _ = reader.communicate(timeout=30)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait(10)
    assert out.split()[0] == "EIO", out  # not ECONNABORTED nor ENOTCONN
    assert not os.path.ismount(m.path)


# -- a small disk -------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs, unmounted after the test's mounts."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    path = tmp_path / "small"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(path)],
                   check=True, timeout=30)
    yield path
    subprocess.run(["umount", "-l", str(path)], timeout=30)


def test_a_small_cache_disk_gets_a_limit_and_never_fills(small_disk, tmp_path,
                                                          mount_torrent):
    data = tmp_path / "data"
    data.mkdir()
    payload = data_of(24 << 20, 5)
    (data / "film.bin").write_bytes(payload)
    torrent = tmp_path / "film.torrent"
    lt_create(data / "film.bin", torrent, None, piece_size=256 << 10)
    with lt_seeder(torrent, data, ip="127.0.0.81") as seeder:
        m = mount_torrent(torrent, "--peer", seeder.endpoint, cache=small_disk)
        warnings = m.result.stderr.strip().splitlines()
        assert len(warnings) == 1, m.result.stderr
        assert warnings[0].startswith("torrentfs: warning: only ") and "free" in warnings[0]
        cache = status_json(m)["torrents"][0]["cache"]
        assert cache["limit_from"] == "free space"
        assert 0 < cache["limit"] < 8 << 20
        assert "(from the disk's free space)" in status_text(m)
        digest = hashlib.sha256()
        with open(m.path / "film.bin", "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                assert os.statvfs(small_disk).f_bavail > 0
        assert digest.digest() == hashlib.sha256(payload).digest()
        full_lines = [line for line in m.log.splitlines() if "disk full" in line]
        assert len(full_lines) <= 1, full_lines
        t = status_json(m)["torrents"][0]
        assert t["cache"]["bytes"] <= cache["limit"]
        assert t["cache"]["disk_full"]["count"] <= 1
        # nothing more is read: the shown rate falls to 0 (within 2 s; loose for CI)
        wait_until(lambda: status_json(m)["torrents"][0]["rates"]["download"] == 0,
                   timeout=10)


def test_a_watch_mount_on_a_small_cache_disk_gets_a_limit_too(small_disk, tmp_path,
                                                               mount_torrent):
    """The same small disk under ``mount --watch``: each torrent gets its limit from
    the free space (one warning in the log, shown in status) and reads right."""
    data = tmp_path / "data"
    data.mkdir()
    payload = data_of(24 << 20, 6)
    (data / "film.bin").write_bytes(payload)
    watched = tmp_path / "watched"
    watched.mkdir()
    torrent = watched / "film.torrent"
    lt_create(data / "film.bin", torrent, None, piece_size=256 << 10)
    with lt_seeder(torrent, data, ip="127.0.0.82") as seeder:
        m = mount_torrent(watched, "--peer", seeder.endpoint, cache=small_disk, watch=True)
        wait_until(lambda: (m.path / "film.bin" / "film.bin").exists(), timeout=30,
                   message=f"the torrent did not appear; log:\n{m.log[-3000:]}")
        warned = [line for line in m.log.splitlines() if "free for the cache" in line]
        assert len(warned) == 1 and "film.torrent: only " in warned[0], m.log[-3000:]
        cache = status_json(m)["torrents"][0]["cache"]
        assert cache["limit_from"] == "free space"
        assert 0 < cache["limit"] < 8 << 20
        assert "(from the disk's free space)" in status_text(m)
        digest = hashlib.sha256()
        with open(m.path / "film.bin" / "film.bin", "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
                assert os.statvfs(small_disk).f_bavail > 0
        assert digest.digest() == hashlib.sha256(payload).digest()
        t = status_json(m)["torrents"][0]
        assert t["cache"]["bytes"] <= cache["limit"]
        assert t["cache"]["disk_full"]["count"] <= 1


# -- trackers in status -------------------------------------------------------------------

def test_status_shows_each_trackers_refusal_or_error(tmp_path, mount_torrent):
    data = tmp_path / "data"
    data.mkdir()
    (data / "f.bin").write_bytes(data_of(1 << 20, 6))
    dead = f"http://127.0.0.1:{free_port()}/announce"
    with opentracker() as tracker:  # serves only its whitelist: this torrent is refused
        torrent = tmp_path / "f.torrent"
        lt_create(data / "f.bin", torrent, [tracker.announce_url, dead])
        m = mount_torrent(torrent)

        def answered():
            trackers = status_json(m)["torrents"][0]["trackers"]
            return trackers if all(t["status"] == "error" for t in trackers) else None
        trackers = wait_until(answered, timeout=60)
    by_url = {t["url"]: t for t in trackers}
    assert set(by_url) == {tracker.announce_url, dead}
    assert by_url[tracker.announce_url]["message"].startswith("tracker refused"), trackers
    assert "unreachable" in by_url[dead]["message"], trackers
    assert all(t["at"] and abs(t["at"] - time.time()) < 120 for t in trackers)
    text = status_text(m)
    assert f"    {tracker.announce_url}: error (" in text and "tracker refused" in text
