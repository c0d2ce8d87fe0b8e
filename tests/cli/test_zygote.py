"""cli/zygote.py and cli/zygoteserver.py: the resident process's protocol, piece by
piece, and one real resident process (no FUSE): which command lines ask it, where
its socket is, that nothing is asked of a socket in a folder that is not ours
alone, the staleness check, and a child it forks taking work through
``prefork.hand_over`` with the caller's environment, cwd, umask and limits; a child
not handed the work is ended, and every child is reaped."""

from __future__ import annotations

import importlib
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import pytest

from tests.harness.swarm import wait_until
from torrentfs.cli import prefork, zygote
from torrentfs.cli.zygoteserver import Zygote, _above, module_times
from torrentfs.fs.procfs import pid_alive

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("argv, env, asked", [
    (["mount", "x.torrent", "/mnt/x"], {}, True),
    (["x.torrent", "/mnt/x", "-o", "ro"], {}, False),           # mount(8)'s form: fstab
    (["mount", "x.torrent", "/mnt/x", "--no-resident"], {}, False),
    (["mount", "x.torrent", "/mnt/x"], {"TORRENTFS_RESIDENT": "0"}, False),
    (["mount", "x.torrent", "/mnt/x"], {"TORRENTFS_RESIDENT": "off"}, False),
    (["mount", "x.torrent", "/mnt/x"], {"TORRENTFS_RESIDENT": "1"}, True),
    (["mount", "x.torrent", "/mnt/x"], {"INVOCATION_ID": "abc"}, False),  # a systemd unit
    (["info", "x.torrent"], {}, False),
    ([], {}, False),
])
def test_which_command_lines_ask_the_resident_process(argv, env, asked):
    assert zygote.enabled(argv, env) is asked


def test_the_socket_is_in_the_runtime_folder_and_named_after_the_start_environment(tmp_path):
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    path = zygote.socket_path(env)
    assert os.path.dirname(path) == str(tmp_path / "torrentfs")
    assert path == zygote.socket_path({**env, "HOME": "/elsewhere"})  # not read at start
    assert path != zygote.socket_path({**env, "PYTHONPATH": "/other"})
    assert path != zygote.socket_path({**env, "LD_PRELOAD": "/x.so"})


def test_nothing_is_asked_where_there_is_no_zygote_or_the_folder_is_not_ours_alone(tmp_path):
    folder = tmp_path / "torrentfs"
    folder.mkdir(mode=0o700)
    assert zygote.ask("status", path=str(folder / "resident-x.sock")) is None  # no socket
    os.chmod(folder, 0o755)
    assert not zygote.secure_dir(str(folder))
    assert zygote.ask("status", path=str(folder / "resident-x.sock")) is None


def test_a_changed_module_makes_the_zygote_stale(tmp_path, monkeypatch):
    mod = tmp_path / "zygote_probe_mod.py"
    mod.write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("zygote_probe_mod")
    try:
        z = Zygote(str(tmp_path / "z.sock"), 60)
        z.times = module_times()
        limits = {n: resource.getrlimit(getattr(resource, n)) for n in zygote.LIMITS}
        req = {"package": zygote.package_dir(), "cwd": str(tmp_path), "limits": limits,
               "namespaces": zygote.namespaces()}
        assert z.refusal(req) is None
        assert z.refusal({**req, "namespaces": [1, 2, 3]}) == "namespaces"
        assert z.refusal({**req, "package": "/elsewhere"}) == "another package"
        assert z.refusal({**req, "cwd": str(tmp_path / "gone")}) == "cwd"
        st = mod.stat()
        os.utime(mod, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        assert z.refusal(req) == "stale"
    finally:
        sys.modules.pop("zygote_probe_mod", None)


def test_limits_above_the_zygotes_cannot_be_given():
    inf = resource.RLIM_INFINITY
    assert _above(inf, 1024) and _above(2048, 1024)
    assert not _above(1024, inf) and not _above(1024, 1024) and not _above(inf, inf)
    assert not _above(512, 1024)


def report(path: str, ready, progress) -> int:
    """The work a test hands a zygote's child: what it runs with, then ready."""
    Path(path).write_text(json.dumps({
        "pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(),
        "mark": os.environ.get("ZYGOTE_TEST_MARK"), "umask": os.umask(0o22),
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE), "sid": os.getsid(0)}))
    ready(None)
    return 0


@pytest.fixture
def short_runtime(monkeypatch):
    """A runtime folder of this test's with a path short enough for a unix socket
    (108 bytes; pytest's tmp_path is too long)."""
    run = tempfile.mkdtemp(prefix="zyg-", dir="/tmp")
    monkeypatch.setenv("XDG_RUNTIME_DIR", run)
    yield Path(run)
    shutil.rmtree(run, ignore_errors=True)


@pytest.fixture
def resident(short_runtime, monkeypatch):
    """A real resident process on a socket of this test's, stopped by PID."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # its children import this module
    path = zygote.socket_path()
    proc = zygote.spawn(60, path)
    try:
        wait_until(lambda: zygote.ask("status", path=path) is not None or proc.poll() is not None,
                   timeout=60, message="the resident process did not answer")
        assert proc.poll() is None
        yield path, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def status(path: str) -> dict:
    reply = zygote.ask("status", path=path)
    assert reply is not None
    reply.sock.close()
    word, _, rest = reply.line.partition(" ")
    assert word == "ok", reply.line
    return json.loads(rest)


def test_a_zygote_child_takes_the_work_with_the_callers_environment(resident, tmp_path,
                                                                    monkeypatch):
    path, proc = resident
    monkeypatch.setenv("ZYGOTE_TEST_MARK", "caller")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "report.json"
    old_umask = os.umask(0o027)
    r, w = os.pipe()
    try:
        got = zygote.request_child(w, path)
        os.close(w)
        assert got is not None
        pid, pidfd, sock = got
        prefork._child = prefork._Child(pid, sock, r, pidfd)
        assert prefork.is_resident_child()
        handed = prefork.hand_over(partial(report, str(out)), tmp_path / "log", "info")
        assert handed == (pid, r)
        word = b""
        deadline = time.monotonic() + 30
        while select.select([r], [], [], max(0, deadline - time.monotonic()))[0]:
            chunk = os.read(r, 100)
            if not chunk:
                break
            word += chunk
        assert word == b"ok\n"
        assert prefork.gone(pid, wait=True)  # through its pidfd: not our child
    finally:
        os.umask(old_umask)
        os.close(r)
        prefork._pidfds.clear()
    seen = json.loads(out.read_text())
    assert seen["pid"] == pid and seen["ppid"] == proc.pid
    assert seen["cwd"] == str(tmp_path) and seen["mark"] == "caller"
    assert seen["umask"] == 0o027 and seen["sid"] == pid
    assert tuple(seen["nofile"]) == resource.getrlimit(resource.RLIMIT_NOFILE)
    wait_until(lambda: status(path)["children"] == [], timeout=10,
               message="the zygote did not reap its child")
    assert status(path)["served"] == 1


def test_a_zygote_child_not_handed_the_work_is_ended(resident):
    path, proc = resident
    r, w = os.pipe()
    got = zygote.request_child(w, path)
    os.close(w)
    assert got is not None
    pid, pidfd, sock = got
    prefork._child = prefork._Child(pid, sock, r, pidfd)
    prefork.cancel()
    assert prefork._child is None and not pid_alive(pid)
    wait_until(lambda: status(path)["children"] == [], timeout=10,
               message="the zygote did not reap its child")


def test_stop_ends_the_zygote_and_removes_its_socket(resident):
    path, proc = resident
    reply = zygote.ask("stop", path=path)
    assert reply is not None and reply.line == "ok"
    reply.sock.close()
    assert proc.wait(10) == 0
    assert not os.path.exists(path)
    r, w = os.pipe()
    assert zygote.request_child(w, path) is None  # the launcher then forks as before
    os.close(r)
    os.close(w)


def test_another_network_namespace_has_a_socket_of_its_own(tmp_path):
    code = "from torrentfs.cli.zygote import socket_path; print(socket_path())"
    env = {**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)}
    here = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=60)
    there = subprocess.run(["unshare", "--net", sys.executable, "-c", code],
                           capture_output=True, text=True, env=env, timeout=60)
    if there.returncode != 0:
        pytest.skip(f"unshare --net: {there.stderr.strip()}")
    assert here.returncode == 0, here.stderr
    assert here.stdout.strip() == zygote.socket_path(env)
    assert there.stdout.strip() != here.stdout.strip()
