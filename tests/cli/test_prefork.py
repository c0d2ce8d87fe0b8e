"""cli/prefork.py: the mount's daemon forked before the command line is parsed.
Which command lines fork early; the work handed over whole (the pickled callable, the
parent's umask and gc state) with the torrent's lock, which the child then holds
alone; a child not handed the work is ended and reaped at once; work that does not
pickle is refused (``daemonise`` forks as before)."""

from __future__ import annotations

import gc
import json
import os
import signal
import time
from functools import partial

import pytest

from torrentfs.cli import prefork
from torrentfs.disk.lock import Locked, TorrentLock


@pytest.mark.parametrize("argv, wanted", [
    (["mount", "x.torrent", "/mnt/x"], True),
    (["x.torrent", "/mnt/x", "-o", "allow_other"], True),   # as mount(8) runs it
    (["magnet:?xt=urn:btih:" + "0" * 40, "/mnt/x"], True),
    (["mount", "x.torrent", "/mnt/x", "-f"], False),        # this process serves
    (["mount", "--watch", "dir", "/mnt/x"], False),
    (["mount", "--help"], False),
    (["info", "x.torrent"], False),
    (["status", "/mnt/x"], False),
    ([], False),
])
def test_which_command_lines_fork_early(argv, wanted):
    assert prefork.wanted(argv) is wanted


def test_a_big_torrent_is_not_forked_early(tmp_path):
    small, big = tmp_path / "small.torrent", tmp_path / "big.torrent"
    small.write_bytes(b"d" + b"x" * 1000)
    big.write_bytes(b"d" + b"x" * prefork.TORRENT_MAX)
    assert prefork.wanted(["mount", str(small), "/mnt/x"])
    assert not prefork.wanted(["mount", str(big), "/mnt/x"])
    assert not prefork.wanted([str(big), "/mnt/x", "-o", "ro"])


def read_all(fd: int, timeout: float = 20.0) -> bytes:
    import select
    data = b""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "the early child did not answer"
        if select.select([fd], [], [], left)[0]:
            chunk = os.read(fd, 4096)
            if not chunk:
                return data
            data += chunk


def report(sock, w: int) -> None:
    """An early child that reports what it was handed, then waits to be killed. It
    imports with no gc, as ``launch``'s does: the parent's gc state comes with the work."""
    gc.disable()
    work = prefork.receive(sock)
    if work is None:
        os.write(w, b"none")
        os._exit(0)
    serve, logfile, log_level = work
    umask = os.umask(0)
    lock = serve.keywords["lock"]
    os.write(w, json.dumps({
        "result": serve(), "logfile": str(logfile), "log_level": log_level,
        "umask": umask, "gc": gc.isenabled(),
        "inode": os.fstat(lock.fd).st_ino}).encode())
    os.close(w)
    time.sleep(30)  # holding the lock until the test kills it
    os._exit(0)


def work(x: int, lock=None) -> int:
    return x * 2


def kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


@pytest.mark.parametrize("gc_enabled", [False, True])
def test_the_work_and_the_lock_go_to_the_child(tmp_path, gc_enabled):
    lock = TorrentLock(tmp_path).acquire(mountpoint="/mnt/x")
    inode = os.fstat(lock.fd).st_ino
    old_umask = os.umask(0o027)
    if not gc_enabled:
        gc.disable()
    pid = None
    try:
        prefork.start(["mount", "x.torrent", "/mnt/x"], report)
        handed = prefork.hand_over(partial(work, 21, lock=lock), tmp_path / "log", "debug")
        gc.enable()
        os.umask(old_umask)
        assert handed is not None
        pid, word = handed
        got = json.loads(read_all(word))
        os.close(word)
        assert got == {"result": 42, "logfile": str(tmp_path / "log"), "log_level": "debug",
                       "umask": 0o027, "gc": gc_enabled, "inode": inode}
        os.close(lock.fd)  # the parent lets go: the child holds the lock alone
        with pytest.raises(Locked):
            TorrentLock(tmp_path).acquire(mountpoint="/mnt/y")
        kill(pid)
        TorrentLock(tmp_path).acquire(mountpoint="/mnt/y")  # free once the child is gone
    finally:
        gc.enable()
        os.umask(old_umask)
        prefork.cancel()
        if pid is not None:
            kill(pid)


def test_a_child_not_handed_the_work_ends_at_once():
    prefork.start(["mount", "x.torrent", "/mnt/x"], report)
    pid = prefork._child.pid
    try:
        prefork.cancel()
        assert prefork._child is None
        with pytest.raises(ChildProcessError):  # killed and reaped
            os.waitpid(pid, os.WNOHANG)
    finally:
        kill(pid)


def test_work_that_does_not_pickle_is_refused():
    prefork.start(["mount", "x.torrent", "/mnt/x"], report)
    pid = prefork._child.pid
    try:
        assert prefork.hand_over(lambda ready, progress: 0, "log", "info") is None
        assert prefork._child is None  # and the child is ended
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    finally:
        kill(pid)


def test_no_early_child_no_hand_over():
    assert prefork._child is None
    assert prefork.hand_over(partial(work, 1), "log", "info") is None
