"""Real mounts through the resident process (cli/zygote.py): the first mount starts
it, the next ones run there and list and read; a stale one is refused (and
replaced) and a killed one skipped, the mount working all the same; Ctrl-C to the
command, or the command killed, ends a daemon still fetching; the command's
processes are reaped; stopping it leaves its mounts. Every resident process is
stopped by its PID and every mount undone (``mount_torrent``) whatever happens."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.harness.command import TORRENTFS, kill_by_pid, mount_fetching_magnet, run
from tests.harness.mounts import Seed
from tests.harness.swarm import free_port, wait_until
from torrentfs.fs.procfs import fuse_mount_type, pid_alive

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def from_resident(pid: int) -> bool:
    """The daemon ``pid`` was forked in the resident process (its command line is
    the resident process's, not ``torrentfs mount``'s)."""
    return b"zygoteserver" in Path(f"/proc/{pid}/cmdline").read_bytes()


class Resident:
    """The resident processes of a test's runtime folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.seen: set[int] = set()

    def status(self) -> dict | None:
        r = run("resident", "status")
        if r.returncode == 3:
            return None
        assert r.returncode == 0, r.stderr
        for f in (self.folder / "torrentfs").glob("resident-*.lock"):
            try:
                self.seen.add(json.loads(f.read_text())["pid"])
            except (OSError, ValueError, KeyError):
                pass
        found = re.match(r"resident process (\d+), since \S+: (\d+) mount command\(s\) "
                         r"run, (\d+) running now", r.stdout)
        assert found, r.stdout
        pid, served, alive = map(int, found.groups())
        self.seen.add(pid)
        return {"pid": pid, "served": served, "alive": alive}

    def start(self) -> int:
        r = run("resident", "start")
        assert r.returncode == 0, r.stderr
        pid = int(r.stdout.split()[2])
        self.seen.add(pid)
        return pid

    def wait_up(self, other_than: int | None = None) -> int:
        found = {}

        def up() -> bool:
            s = self.status()
            found["s"] = s
            return s is not None and s["pid"] != other_than
        wait_until(up, timeout=60, message="no resident process answered")
        return found["s"]["pid"]


@pytest.fixture
def resident(monkeypatch):
    """The resident process on, in a runtime folder of this test's (a short path: a
    unix socket's is at most 107 bytes). Ask for it before ``mount_torrent``, so
    that the mounts are undone first; every resident process seen is stopped by PID."""
    folder = Path(tempfile.mkdtemp(prefix="zyg-", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(folder))
    monkeypatch.setenv("TORRENTFS_RESIDENT", "1")
    r = Resident(folder)
    yield r
    try:
        r.status()  # note any started since
        run("resident", "stop")
    finally:
        for pid in r.seen:
            kill_by_pid(pid)
        shutil.rmtree(folder, ignore_errors=True)


def test_the_next_mounts_run_in_the_resident_process_and_read(
        resident, tmp_path, good_torrent, mount_torrent):
    data = (tmp_path / "payload.bin").read_bytes()
    port = free_port()
    with Seed(good_torrent, tmp_path, tmp_path / "seedcache", port):
        first = mount_torrent(good_torrent, "--peer", f"127.0.0.1:{port}")
        resident.wait_up()  # the first mount started it
        assert not from_resident(first.pid())
        assert resident.status()["served"] == 0
        second = mount_torrent(good_torrent, "--peer", f"127.0.0.1:{port}")
        pid = second.pid()
        assert from_resident(pid) and second.result.stderr == ""
        for daemon in (first.pid(), pid):  # what ps and pgrep show of both
            assert Path(f"/proc/{daemon}/comm").read_text().strip() == "torrentfs"
        assert os.listdir(second.path) == ["payload.bin"]
        assert (second.path / "payload.bin").read_bytes() == data
        assert os.readlink(f"/proc/{pid}/cwd") == os.getcwd()  # the caller's, as without it
        assert run("status", second.path).returncode == 0
        assert resident.status() == {**resident.status(), "served": 1, "alive": 0}
        r = second.unmount()
        assert r.returncode == 0, r.stderr
        wait_until(lambda: not pid_alive(pid), timeout=30, message="the daemon runs on")
        third = mount_torrent(good_torrent, "--peer", f"127.0.0.1:{port}", "--no-resident")
        assert not from_resident(third.pid())
        assert resident.status()["served"] == 1


def test_stopping_the_resident_process_leaves_its_mounts(resident, good_torrent,
                                                         mount_torrent):
    zpid = resident.start()
    m = mount_torrent(good_torrent)
    pid = m.pid()
    assert from_resident(pid)
    r = run("resident", "stop")
    assert r.returncode == 0 and str(zpid) in r.stdout, r.stderr
    assert not pid_alive(zpid)
    assert os.listdir(m.path) == ["payload.bin"] and pid_alive(pid)
    assert m.unmount().returncode == 0
    wait_until(lambda: not pid_alive(pid), timeout=30, message="the daemon runs on")


def test_a_stale_resident_process_is_refused_and_replaced(resident, tmp_path, good_torrent,
                                                          mount_torrent, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text("")  # a module the resident process imports
    monkeypatch.setenv("PYTHONPATH", str(site))
    zpid = resident.start()
    st = (site / "sitecustomize.py").stat()
    os.utime(site / "sitecustomize.py", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    m = mount_torrent(good_torrent)  # an upgrade happened under it
    assert os.listdir(m.path) == ["payload.bin"] and m.result.stderr == ""
    assert not from_resident(m.pid())
    wait_until(lambda: not pid_alive(zpid), timeout=10, message="the stale one runs on")
    new = resident.wait_up(other_than=zpid)  # this mount started a fresh one
    assert new != zpid
    again = mount_torrent(good_torrent)
    assert from_resident(again.pid()) and resident.status()["served"] == 1


def test_a_killed_resident_process_is_skipped(resident, good_torrent, mount_torrent):
    zpid = resident.start()
    os.kill(zpid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(zpid), timeout=10)
    sockets = list((resident.folder / "torrentfs").glob("resident-*.sock"))
    assert sockets  # left behind: connecting to it is refused
    m = mount_torrent(good_torrent)
    assert os.listdir(m.path) == ["payload.bin"]
    assert not from_resident(m.pid())
    assert m.result.stderr == ""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_ctrl_c_or_a_killed_command_ends_its_daemon(resident, tmp_path, sig):
    """As tests/integration/test_daemons.py's Ctrl-C during a magnet's metadata
    fetch, with the command run in the resident process: the signal is passed on
    (SIGKILL cannot be: the command's process sees the launcher gone instead)."""
    resident.start()
    mountpoint, cache = tmp_path / "mnt", tmp_path / "cache"
    mountpoint.mkdir()
    info_hash = "5e" * 20
    pid = None
    with mount_fetching_magnet(info_hash, mountpoint, cache) as proc:
        try:
            r = run("list", "--json")
            [entry] = json.loads(r.stdout)
            pid = entry["pid"]
            assert from_resident(pid)
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == (-sig if sig == signal.SIGKILL else 130)
            assert b"Traceback" not in err and b"Error" not in err, err
            wait_until(lambda: not pid_alive(pid), timeout=15,
                       message="the daemon runs on after its command ended")
            wait_until(lambda: resident.status()["alive"] == 0, timeout=10,
                       message="the resident process did not reap the command")
        finally:
            kill_by_pid(pid)
    assert fuse_mount_type(str(mountpoint)) is None and os.listdir(mountpoint) == []


def test_a_mount_error_is_one_line_as_before(resident, tmp_path, good_torrent):
    resident.start()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("not empty")
    r = subprocess.run([TORRENTFS, "mount", str(good_torrent), str(busy), "--no-dht",
                        "--cache-dir", str(tmp_path / "c")], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert resident.status()["served"] == 1
