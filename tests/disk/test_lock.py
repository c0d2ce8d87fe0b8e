"""One daemon per torrent and cache folder (``disk.lock``): the lock is taken at once
or refused naming its holder, and freed when its holder lets go or dies."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from torrentfs.disk.lock import Locked, TorrentLock, describe


def test_a_second_lock_is_refused_naming_the_holder(tmp_path):
    first = TorrentLock(tmp_path).acquire(mountpoint="/mnt/a", what="mounted on")
    with pytest.raises(Locked) as e:
        TorrentLock(tmp_path).acquire(mountpoint="/mnt/b")
    assert e.value.holder == {"pid": os.getpid(), "mountpoint": "/mnt/a",
                              "what": "mounted on"}
    assert str(e.value) == (f"already mounted on /mnt/a by pid {os.getpid()}, "
                            f"from cache {tmp_path}")
    first.release()
    with TorrentLock(tmp_path).acquire(mountpoint="/mnt/b") as again:
        assert again.fd is not None


def test_the_holder_can_say_what_it_does_now(tmp_path):
    lock = TorrentLock(tmp_path).acquire(mountpoint="/mnt/a", what="mounted on")
    lock.update(mountpoint="/mnt/a", what="seeded after the unmount of")
    with pytest.raises(Locked, match="already seeded after the unmount of /mnt/a"):
        TorrentLock(tmp_path).acquire()
    lock.release()


def test_the_lock_file_is_private_and_stays(tmp_path):
    TorrentLock(tmp_path).acquire().release()
    assert (tmp_path / "lock").stat().st_mode & 0o777 == 0o600


def test_a_dead_holder_frees_the_lock(tmp_path):
    code = ("import sys, time; from torrentfs.disk.lock import TorrentLock; "
            f"TorrentLock({str(tmp_path)!r}).acquire(mountpoint='/mnt/x'); "
            "print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(Locked) as e:
            TorrentLock(tmp_path).acquire()
        assert e.value.holder["pid"] == proc.pid
    finally:
        proc.kill()
        proc.wait(timeout=10)
    TorrentLock(tmp_path).acquire().release()


def test_an_unreadable_holder_is_described_plainly(tmp_path):
    (tmp_path / "lock").write_text("garbage")
    assert describe({}, tmp_path) == f"already in use by another process, from cache {tmp_path}"
    lock = TorrentLock(tmp_path).acquire(mountpoint="/m")
    assert json.loads((tmp_path / "lock").read_text())["mountpoint"] == "/m"
    lock.release()
