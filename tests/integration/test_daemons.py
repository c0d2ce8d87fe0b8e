"""Integration: the daemons a user can see and end, on real mounts. ``unmount`` leaves
anything but a torrentfs mount alone and ends a stuck (SIGSTOPped) daemon within
10 s; ``status`` answers for a stuck daemon; ``list`` shows mounts, watch mounts and
daemons seeding after their unmount, ``stop`` ends one; one daemon per torrent and
cache folder; Ctrl-C during a magnet's metadata fetch ends the daemon; status and
xattrs per torrent inside a watch mount.

Each test gets its own registry (``XDG_RUNTIME_DIR`` in a temporary folder), so the
daemons of other tests running meanwhile are not in its ``list``. Every process a
test starts is ended by PID in a ``finally``; every mount by the fixture."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness.command import (
    assert_one_line_error,
    kill_by_pid,
    mount_fetching_magnet,
    run,
)
from tests.harness.mounts import Seed
from tests.harness.swarm import free_port, wait_until
from torrentfs.cli import registry
from torrentfs.fs.procfs import fuse_mount_type, pid_alive

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    """A registry of this test's own: the daemons it starts register there. Ask for
    it before ``mount_torrent``, so that the mounts are undone while it is set."""
    folder = tmp_path / "run"
    folder.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(folder))
    return folder / "torrentfs" / "daemons"


def list_json() -> list[dict]:
    r = run("list", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def status_json(path) -> dict:
    r = run("status", path, "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def getfattr(path: Path, name: str) -> str:
    r = subprocess.run(["getfattr", "-n", f"user.torrentfs.{name}", "--only-values",
                        str(path)], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return r.stdout


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_unmount_leaves_a_tmpfs_alone(tmp_path):
    target = tmp_path / "tmpfs"
    target.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "torrentfs-test", str(target)],
                   check=True, timeout=30)
    try:
        (target / "keep").write_text("still here")
        r = run("unmount", target)
        assert r.returncode == 1
        assert_one_line_error(r, f"{target} is not a torrentfs mount")
        assert os.path.ismount(target) and (target / "keep").read_text() == "still here"
        # Nothing mounted at all: the same line, nothing done.
        r = run("unmount", tmp_path)
        assert_one_line_error(r, f"{tmp_path} is not a torrentfs mount")
    finally:
        subprocess.run(["umount", str(target)], capture_output=True, timeout=30)


def test_a_stopped_daemon_answers_status_and_is_ended_by_unmount(runtime, good_torrent,
                                                                  mount_torrent):
    m = mount_torrent(good_torrent)
    pid = m.pid()
    assert pid and registry.entries(runtime)[0]["pid"] == pid
    os.kill(pid, signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        r = run("status", m.path, timeout=20)
        assert time.monotonic() - t0 < 5
        assert r.returncode == 0, r.stderr
        assert f"the daemon, pid {pid}, is stopped" in r.stdout
        r = run("list", timeout=20)
        assert "process stopped" in r.stdout

        t0 = time.monotonic()
        r = run("unmount", m.path, timeout=30)
        took = time.monotonic() - t0
        assert r.returncode == 0, r.stderr
        assert took <= 10, f"unmount took {took:.1f} s"
        assert not pid_alive(pid)
        assert fuse_mount_type(str(m.path)) is None  # mountinfo: never stats the mount
        assert "did not answer" in r.stderr and r.stderr.count("\n") == 1
        assert registry.entries(runtime) == []
    finally:
        kill_by_pid(pid)


def test_a_second_mount_of_a_torrent_from_one_cache_fails_at_once(runtime, good_torrent,
                                                                    mount_torrent):
    first = mount_torrent(good_torrent)
    second = mount_torrent(good_torrent, cache=first.cache, expect_ok=False)
    assert second.elapsed < 10
    assert_one_line_error(second.result, "already mounted on", str(first.path),
                          f"pid {first.pid()}", f"torrentfs unmount {first.path}")
    assert fuse_mount_type(str(second.path)) is None
    # Another cache folder is another daemon's business.
    mount_torrent(good_torrent)


def test_list_status_unmount_and_stop_of_a_daemon_seeding_after_unmount(
        runtime, tmp_path, good_torrent, mount_torrent):
    data = tmp_path / "payload.bin"
    port = free_port()
    watched = tmp_path / "watched"
    watched.mkdir()
    pid = None
    try:
        with Seed(good_torrent, tmp_path, tmp_path / "seedcache", port):
            m = mount_torrent(good_torrent, "--peer", f"127.0.0.1:{port}",
                              "--seed-after", "time=300")
            pid = m.pid()
            assert (m.path / "payload.bin").read_bytes() == data.read_bytes()
            w = mount_torrent(watched, watch=True)
            entries = list_json()
            by_path = {e["mountpoint"]: e for e in entries if e["kind"] != "seed"}
            assert by_path.keys() == {str(m.path), str(w.path)}
            [origin] = [e for e in entries if e["kind"] == "seed"]  # torrentfs seed
            assert (origin["state"], origin["info_hash"]) == ("seeding", m.info_hash)
            mount, watch = by_path[str(m.path)], by_path[str(w.path)]
            assert (mount["kind"], mount["state"], mount["pid"]) == ("mount", "mounted", pid)
            assert mount["cache"] == str(m.folder) and mount["name"] == "payload.bin"
            assert (watch["kind"], watch["state"], watch["cache"]) == (
                "watch", "mounted", str(w.cache))
            text = run("list").stdout
            for needle in (str(m.path), str(w.path), str(m.folder), f"pid {pid}",
                           str(watched)):
                assert needle in text, text

            r = m.unmount()
            assert r.returncode == 0, r.stderr
            assert f"seeds on until time 300 s (torrentfs stop {pid} ends it)" in r.stderr
        assert pid_alive(pid), "the daemon seeds on"
        [seeding] = [e for e in list_json() if e["pid"] == pid]
        assert seeding["state"] == "seeding after unmount" and seeding["until"] == "time 300 s"
        assert "seeding after unmount until time 300 s" in run("list").stdout
        r = run("status", m.path)
        assert r.returncode == 0 and "seeding after unmount" in r.stdout, r.stderr
        assert status_json(m.path)["state"] == "seeding after unmount"

        r = run("unmount", m.path)  # a second unmount says what is going on
        assert_one_line_error(r, "not mounted any more", f"torrentfs stop {pid}")
        again = mount_torrent(good_torrent, cache=m.cache, expect_ok=False)
        assert_one_line_error(again.result, "already seeded after the unmount of",
                              str(m.path), f"torrentfs stop {pid}")

        r = run("stop", m.path)
        assert r.returncode == 0 and r.stderr == "", r.stderr
        assert not pid_alive(pid)
        assert [e["pid"] for e in list_json()] == [watch["pid"]]
        assert "seeding after unmount done" in m.log  # it ended as a signal ends it
        r = run("stop", str(pid))
        assert_one_line_error(r, "no torrentfs daemon of yours", "torrentfs list")
    finally:
        kill_by_pid(pid)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_during_a_magnet_fetch_ends_the_daemon(runtime, tmp_path, sig):
    """The magnet's one peer accepts the connection and never says a word: the
    metadata cannot come. Ctrl-C (or SIGTERM) to ``torrentfs mount`` ends its
    daemon too."""
    mountpoint, cache = tmp_path / "mnt", tmp_path / "cache"
    mountpoint.mkdir()
    info_hash = "5e" * 20
    pid = None
    with mount_fetching_magnet(info_hash, mountpoint, cache) as proc:
        try:
            [entry] = registry.entries(runtime)
            pid = entry["pid"]
            assert entry["state"] == "fetching metadata" and entry["info_hash"] == info_hash
            r = run("status", mountpoint)
            assert r.returncode == 0 and "fetching the metadata" in r.stdout, r.stderr
            proc.send_signal(sig)
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 130
            assert b"Traceback" not in err and b"Error" not in err, err
            wait_until(lambda: not pid_alive(pid), timeout=10,
                       message="the daemon runs on after Ctrl-C")
        finally:
            kill_by_pid(pid)
    assert fuse_mount_type(str(mountpoint)) is None and os.listdir(mountpoint) == []
    assert registry.entries(runtime) == []
    log = cache / info_hash / "torrentfs.log"
    assert "Traceback" not in (log.read_text() if log.exists() else "")


def test_stop_ends_a_daemon_fetching_metadata_by_its_info_hash(runtime, tmp_path):
    mountpoint, cache = tmp_path / "mnt", tmp_path / "cache"
    mountpoint.mkdir()
    info_hash = "3c" * 20
    pid = None
    with mount_fetching_magnet(info_hash, mountpoint, cache, text=True) as proc:
        try:
            [entry] = registry.entries(runtime)
            pid = entry["pid"]
            r = run("stop", info_hash[:8])
            assert r.returncode == 0 and r.stderr == "", r.stderr
            assert not pid_alive(pid)
            out, err = proc.communicate(timeout=30)
            assert proc.returncode == 1  # the mount it waited for was not made
            assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        finally:
            kill_by_pid(pid)
    assert fuse_mount_type(str(mountpoint)) is None


def test_status_and_xattrs_per_torrent_inside_a_watch_mount(runtime, tmp_path, good_torrent,
                                                             mount_torrent):
    watched = tmp_path / "watched"
    watched.mkdir()
    shutil.copy(good_torrent, watched / "good.torrent")
    (watched / "bad.torrent").write_bytes(b"garbage")
    closed = free_port()  # nobody listens there: the magnet's metadata never comes
    (watched / "lost.magnet").write_text(
        f"magnet:?xt=urn:btih:{'7a' * 20}&x.pe=127.0.0.1:{closed}\n")
    w = mount_torrent(watched, "--metadata-timeout", "2", watch=True)

    def both_skipped():
        doc = status_json(w.path)
        return doc if {s["file"] for s in doc["skipped"]} == {"bad.torrent",
                                                              "lost.magnet"} else None
    doc = wait_until(both_skipped, timeout=30, interval=0.2,
                     message=f"not both skipped; log:\n{w.log[-3000:]}")
    [t] = doc["torrents"]
    assert (t["folder"], t["file"], t["name"]) == ("payload.bin", "good.torrent", "payload.bin")
    assert doc["watched"] == str(watched) and doc["fetching"] == []
    why = {s["file"]: s["why"] for s in doc["skipped"]}
    assert "not a torrent file" in why["bad.torrent"]
    assert why["lost.magnet"].startswith(f"no metadata for {'7a' * 20}")

    text = run("status", w.path).stdout
    assert "skipped: bad.torrent: not a torrent file" in text
    assert f"{w.path}/payload.bin: payload.bin" in text
    one = status_json(w.path / "payload.bin")  # one torrent, by its folder
    assert [x["folder"] for x in one["torrents"]] == ["payload.bin"] and one["skipped"] == []
    r = run("status", w.path / "nothing-here")
    assert_one_line_error(r, "no torrent of the watch mount")

    folder = w.path / "payload.bin"
    # No peer serves it: only what needs no data is read.
    assert getfattr(folder, "infohash") == t["info_hash"]
    assert getfattr(folder / "payload.bin", "progress") == "0/100000"
    assert getfattr(w.path, "torrents") == "1"
    skipped = getfattr(w.path, "skipped")
    assert "bad.torrent: not a torrent file" in skipped and "lost.magnet: no metadata" in skipped

    assert "Traceback" not in w.log
    assert len([line for line in w.log.splitlines()
                if "lost.magnet" in line and ("WARNING" in line or "ERROR" in line)]) == 1
