"""Integration: faults and limits on a real mount. A kill -9 mid-download, readers
that give up, unmount under blocked reads, a read timeout, a tracker that answers
garbage, a full disk, and a cache smaller than the torrent. Peers are real
libtorrent seeders; every mount is undone by the fixture, every wait is bounded."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import bencodepy
import pytest

from tests.harness.command import TORRENTFS
from tests.harness.mounts import force_unmount, pid_alive
from tests.harness.payload import data_of
from tests.harness.swarm import lt_create, lt_seeder, wait_until
from torrentfs.core.geometry import Geometry
from torrentfs.core.metainfo import parse
from torrentfs.disk.storage import Storage

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PIECE = 256 * 1024


def single_file(tmp_path: Path, name: str, size: int, seed: int, piece: int = PIECE):
    """A one-file payload under ``tmp_path/name-data`` and its torrent (no tracker)."""
    data = tmp_path / f"{name}-data"
    data.mkdir()
    (data / f"{name}.bin").write_bytes(data_of(size, seed))
    torrent = tmp_path / f"{name}.torrent"
    lt_create(data / f"{name}.bin", torrent, None, piece_size=piece)
    return data, torrent


def storage_of(torrent: Path, folder: Path) -> Storage:
    meta = parse(torrent.read_bytes())
    st = Storage(folder, meta, Geometry(meta.piece_length, tuple(f.length for f in meta.files)))
    st.open()
    return st


def totals(log: str) -> int:
    """Bytes of blocks the last run of a mount downloaded (its closing log line)."""
    found = re.findall(r"totals: downloaded (\d+) bytes", log)
    assert found, log[-3000:]
    return int(found[-1])


def reader(path: Path, offset: int = 0) -> subprocess.Popen:
    """A Python reader of ``path`` from ``offset`` (its SIGINT handler makes SIGINT
    a caught signal, which the kernel does not end a FUSE wait for). It prints
    'reading' just before its read(2)."""
    code = ("import os, sys\n"
            f"fd = os.open({str(path)!r}, os.O_RDONLY)\n"
            f"os.lseek(fd, {offset}, 0)\n"
            "print('reading', flush=True)\n"
            "os.read(fd, 65536)\n")
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def in_read(pid: int) -> bool:
    """True while process ``pid`` sits in the read(2) system call (x86-64: 0)."""
    try:
        return Path(f"/proc/{pid}/syscall").read_text().split()[0] == "0"
    except (OSError, IndexError):
        return False


def wait_blocked(proc: subprocess.Popen, started_line: bool = True) -> None:
    if started_line:
        assert proc.stdout.readline().strip() == "reading"
    def state() -> str:
        try:
            return (Path(f"/proc/{proc.pid}/syscall").read_text()
                    + Path(f"/proc/{proc.pid}/wchan").read_text())
        except OSError as e:
            return str(e)
    try:
        wait_until(lambda: in_read(proc.pid), timeout=15)
    except TimeoutError:
        pytest.fail(f"reader never blocked in read(2): {state()}")


def exits_within(proc: subprocess.Popen, seconds: float) -> float:
    t0 = time.monotonic()
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)
        pytest.fail(f"reader still blocked {seconds} s after the signal")
    return time.monotonic() - t0


# -- 1. kill -9 mid-download ----------------------------------------------------------

def test_kill9_mid_download_loses_only_pieces_in_flight(tmp_path, mount_torrent):
    size = 6 * 1024 * 1024 + 1000
    data, torrent = single_file(tmp_path, "k9", size, seed=91)
    cache = tmp_path / "cache"
    meta = parse(torrent.read_bytes())
    with lt_seeder(torrent, data, ip="127.0.0.21", upload_rate=768 * 1024) as seeder:
        m = mount_torrent(torrent, "--peer", seeder.endpoint, cache=cache)
        target = m.folder / "data" / "k9.bin"
        cat = subprocess.Popen(["cat", str(m.path / "k9.bin")], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: target.exists() and os.stat(target).st_blocks * 512 >= 2 << 20,
                       timeout=60, message="download did not start")
            pid = m.pid()
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not pid_alive(pid), timeout=10)
        finally:
            cat.kill()
            cat.wait(10)
        force_unmount(m)
        # What a kill -9 left: only verified pieces, and the resume file claims no more.
        st = storage_of(torrent, m.folder)
        kept = set(st.check())
        claimed = set(st.load_resume())
        st.close()
        assert 0 < len(kept) < meta.num_pieces, "the kill did not land mid-download"
        assert claimed <= kept
        missing = sum(st.geometry.piece_size(i) for i in range(meta.num_pieces)
                      if i not in kept)
        # Again with the same cache: every kept piece is used, none fetched again.
        m2 = mount_torrent(torrent, "--peer", seeder.endpoint, cache=cache)
        r = subprocess.run(["cmp", str(data / "k9.bin"), str(m2.path / "k9.bin")],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr + m2.log[-3000:]
        assert m2.unmount().returncode == 0
    again = totals(m2.log)
    print(f"kill -9: {len(kept)} of {meta.num_pieces} pieces kept on disk ({len(claimed)} in the "
          f"resume file); the remount downloaded {again} bytes, {missing} were missing: "
          f"{again - missing} bytes fetched again")
    assert again <= missing, (len(kept), len(claimed), m2.log[-3000:])
    assert f"recovered {len(kept) - len(claimed)} of" in m2.log or kept == claimed


# -- 2. readers that give up, and unmount under blocked reads -------------------------

STRANDED = 40 * 1024 * 1024
FAR = 30 * 1024 * 1024  # never fetched: the slow seeder is gone long before


@pytest.fixture
def stranded(tmp_path, mount_torrent):
    """A mount whose only peer (a slow one) is gone after the first 256 KiB were
    read: reads far past it wait for ever (the read timeout is 60 s)."""
    data, torrent = single_file(tmp_path, "st", STRANDED, seed=92)
    with lt_seeder(torrent, data, ip="127.0.0.22", upload_rate=1 << 20) as seeder:
        m = mount_torrent(torrent, "--peer", seeder.endpoint)
        with open(m.path / "st.bin", "rb") as f:
            head = f.read(PIECE)
        assert head == (data / "st.bin").read_bytes()[:PIECE]
    return m, head


def test_blocked_reader_is_freed_by_sigint_and_sigkill(stranded):
    m, head = stranded
    far = FAR
    # A caught SIGINT (Python's KeyboardInterrupt): the kernel leaves the reader
    # waiting on us; the mount sees the pending signal and fails the read.
    p = reader(m.path / "st.bin", far)
    wait_blocked(p)
    p.send_signal(signal.SIGINT)
    assert exits_within(p, 3) < 3
    assert "KeyboardInterrupt" in p.stderr.read()
    # SIGKILL of a reader whose request we hold: the kernel waits for our answer.
    p = reader(m.path / "st.bin", far + PIECE)
    wait_blocked(p)
    p.kill()
    exits_within(p, 3)
    # dd, Ctrl-C (a fatal signal): ends at once.
    cat = subprocess.Popen(["dd", f"if={m.path / 'st.bin'}", "of=/dev/null", "bs=65536",
                            f"skip={FAR + 2 * PIECE}", "iflag=skip_bytes", "status=none"],
                           stderr=subprocess.PIPE)
    wait_until(lambda: in_read(cat.pid), timeout=15)
    cat.send_signal(signal.SIGINT)
    exits_within(cat, 3)
    # The mount lives on: what it has, it serves.
    assert pid_alive(m.pid())
    with open(m.path / "st.bin", "rb") as f:
        assert f.read(PIECE) == head
    assert wait_until(lambda: m.log.count("was interrupted") >= 2, timeout=5), m.log[-2000:]


def test_unmount_with_reads_blocked_returns_promptly(stranded):
    m, _ = stranded
    pid = m.pid()
    cat = subprocess.Popen(["dd", f"if={m.path / 'st.bin'}", "of=/dev/null", "bs=65536",
                            f"skip={FAR}", "iflag=skip_bytes", "status=none"],
                           stderr=subprocess.PIPE, text=True)
    p = reader(m.path / "st.bin", FAR + 4 * PIECE)
    try:
        wait_blocked(p)
        t0 = time.monotonic()
        r = m.unmount(timeout=20)
        took = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
        assert took < 5, took
        assert "still shutting down" not in r.stderr
        cat.wait(5)
        p.wait(5)
    finally:
        for proc in (cat, p):
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert cat.returncode != 0 and p.returncode != 0
    assert "error" in cat.stderr.read().lower()
    assert not os.path.ismount(m.path)
    assert wait_until(lambda: not pid_alive(pid), timeout=5)


def test_read_timeout_fails_with_eio_and_says_why(tmp_path, mount_torrent):
    _, torrent = single_file(tmp_path, "rt", 1024 * 1024, seed=93)
    m = mount_torrent(torrent, "--read-timeout", "2")
    t0 = time.monotonic()
    r = subprocess.run(["dd", f"if={m.path / 'rt.bin'}", "of=/dev/null", "bs=4096",
                        "count=1", "status=none"], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "Input/output error" in r.stderr
    assert time.monotonic() - t0 < 15
    assert re.search(r"no progress for 2 s waiting for piece \d+: no peers connected", m.log)


# -- 3. a tracker that answers garbage --------------------------------------------------

@contextlib.contextmanager
def garbage_tracker():
    """An HTTP 'tracker' on loopback that answers every announce with something
    wrong, in turn: HTML, HTTP 500, a dropped connection. Yields (url, hits)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    hits: list[float] = []
    stop = threading.Event()
    answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 21\r\n\r\n<html>garbage</html>\n",
               b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n",
               b""]

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    conn.sendall(answers[len(hits) % len(answers)])
                except OSError:
                    pass
                hits.append(time.monotonic())

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.getsockname()[1]}/announce", hits
    finally:
        stop.set()
        t.join(5)
        srv.close()


def test_tracker_answering_garbage_does_not_stop_the_mount(tmp_path, mount_torrent):
    data, plain = single_file(tmp_path, "tg", 3 * 1024 * 1024 + 5, seed=94)
    with garbage_tracker() as (url, hits), \
         lt_seeder(plain, data, ip="127.0.0.23") as seeder:
        # The same info dict (same info-hash) with the garbage tracker's URL.
        meta = bencodepy.decode(plain.read_bytes())
        meta[b"announce"] = url.encode()
        torrent = tmp_path / "tg-tracked.torrent"
        torrent.write_bytes(bencodepy.encode(meta))
        t0 = time.monotonic()
        m = mount_torrent(torrent, "--peer", seeder.endpoint)
        r = subprocess.run(["cmp", str(data / "tg.bin"), str(m.path / "tg.bin")],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr + m.log[-3000:]
        wait_until(lambda: len(hits) >= 1, timeout=10)
        assert m.unmount().returncode == 0
        elapsed = time.monotonic() - t0
    errors = [ln for ln in m.log.splitlines() if "torrentfs.tracker" in ln]
    assert errors and "not bencode" in errors[0], m.log[-2000:]
    # Retries back off (15 s, 30 s, ...): one line per try, not a flood.
    assert len(errors) <= elapsed / 15 + 2, errors
    assert len(hits) <= elapsed / 15 + 2


# -- 4. a full disk ------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs of the test's own, unmounted at the end."""
    path = tmp_path / "small"
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(path)],
                       capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.strip()}")
    try:
        yield path
    finally:
        for _ in range(50):
            if subprocess.run(["umount", str(path)], capture_output=True,
                              timeout=10).returncode == 0:
                break
            time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=10)


def fill(path: Path) -> Path:
    """Fill the filesystem of ``path`` to the last byte with one file."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for chunk in (65536, 4096, 512, 1):  # big writes, then the last bytes
            for _ in range(1 << 16):
                try:
                    os.write(fd, b"\xaa" * chunk)
                except OSError:
                    break
    finally:
        os.close(fd)
    return filler


def test_full_disk_fails_reads_cleanly_and_keeps_serving(tmp_path, small_disk,
                                                          mount_torrent):
    size = 12 * 1024 * 1024
    data, torrent = single_file(tmp_path, "fd", size, seed=95)
    original = (data / "fd.bin").read_bytes()
    with lt_seeder(torrent, data, ip="127.0.0.24") as seeder:
        m = mount_torrent(torrent, "--peer", seeder.endpoint, cache=small_disk)
        filler = fill(small_disk)
        # Nothing of ours to evict: the read fails at once with an error.
        t0 = time.monotonic()
        r = subprocess.run(["dd", f"if={m.path / 'fd.bin'}", "of=/dev/null", "bs=65536",
                            "count=1", "status=none"], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode != 0, "a read on a full disk succeeded"
        assert ("No space left" in r.stderr or "Input/output error" in r.stderr), r.stderr
        assert time.monotonic() - t0 < 20
        st = storage_of(torrent, m.folder)
        assert not any(st.has_data(i) for i in range(st.geometry.num_pieces))
        st.close()
        # Room again: the same mount serves; a 12 MiB file streams through 4 MiB
        # (the cache evicts what was read to make room).
        filler.unlink()
        got = subprocess.run(["cat", str(m.path / "fd.bin")], capture_output=True,
                             timeout=120)
        assert got.returncode == 0, got.stderr
        assert got.stdout == original
        assert m.unmount().returncode == 0
    st = storage_of(torrent, small_disk / m.info_hash)
    kept = set(st.load_resume())
    assert kept, "nothing was kept"
    for i in range(st.geometry.num_pieces):
        if st.has_data(i):
            assert st.check_piece(i) is not None, f"piece {i} on disk is corrupt"
    st.close()


# -- 5. a cache smaller than the torrent ----------------------------------------------------

def disk_use(folder: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(folder):
        for f in files:
            try:
                total += os.stat(os.path.join(dirpath, f)).st_blocks * 512
            except OSError:
                pass
    return total


def test_cache_size_streams_a_torrent_six_times_bigger(tmp_path, mount_torrent):
    size = 96 * 1024 * 1024
    limit = 16 * 1024 * 1024
    data, torrent = single_file(tmp_path, "cs", size, seed=96, piece=512 * 1024)
    with lt_seeder(torrent, data, ip="127.0.0.25") as seeder:
        m = mount_torrent(torrent, "--peer", seeder.endpoint, "--cache-size", "16M")
        samples = []
        cmp = subprocess.Popen(["cmp", str(data / "cs.bin"), str(m.path / "cs.bin")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 180
        while cmp.poll() is None and time.monotonic() < deadline:
            samples.append(disk_use(m.folder / "data"))
            time.sleep(0.05)
        if cmp.poll() is None:
            cmp.kill()
        out, err = cmp.communicate(timeout=10)
        assert cmp.returncode == 0, out + err + m.log[-3000:]
        assert m.unmount().returncode == 0
    assert len(samples) > 5
    assert max(samples) <= limit + 2 * 512 * 1024, max(samples)
    st = storage_of(torrent, m.folder)
    kept = st.load_resume()
    assert 0 < kept.count * 512 * 1024 <= limit
    st.close()


def test_cache_size_too_small_is_refused(tmp_path):
    _, torrent = single_file(tmp_path, "ts", 1024 * 1024, seed=97)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run([TORRENTFS, "mount", str(torrent), str(mnt), "--cache-size", "100K",
                        "--cache-dir", str(tmp_path / "c")], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0 and not os.path.ismount(mnt)
    assert r.stderr.count("\n") == 1 and "--cache-size" in r.stderr, r.stderr
