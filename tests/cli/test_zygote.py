"""cli/zygote.py and cli/zygoteserver.py: the resident process's protocol, piece by
piece, and one real resident process (no FUSE): which command lines ask it, where
its socket is, that nothing is asked of a socket in a folder that is not ours
alone, the staleness check, a command run there with the caller's stdio,
environment, cwd and umask and its exit code, a command given back to the caller,
its process reaped, and ``stop``."""

from __future__ import annotations

import importlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.harness.swarm import wait_until
from torrentfs.cli import zygote
from torrentfs.cli.zygoteserver import Zygote, _above, module_times

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


def run_here(path: str, argv: list[str], tmp_path: Path) -> tuple[int | None, str, str]:
    """``zygote.run_command`` with stdout and stderr to files: (code, out, err)."""
    out, err = tmp_path / "out", tmp_path / "err"
    with open(os.devnull) as i, open(out, "w") as o, open(err, "w") as e:
        code = zygote.run_command(argv, path, stdio=(i.fileno(), o.fileno(), e.fileno()))
    return code, out.read_text(), err.read_text()


def test_a_command_runs_there_with_the_callers_stdio_environment_cwd_and_umask(
        resident, tmp_path, good_torrent, monkeypatch):
    path, proc = resident
    monkeypatch.chdir(tmp_path)
    code, out, err = run_here(path, ["info", "good.torrent"], tmp_path)  # relative: cwd
    assert (code, err) == (0, "") and "payload.bin" in out
    bad = tmp_path / "bad.toml"
    bad.write_text("cache-size = [\n")
    monkeypatch.setenv("TORRENTFS_CONFIG", str(bad))  # the caller's environment
    code, out, err = run_here(path, ["info", "good.torrent"], tmp_path)
    assert code == 1 and out == ""
    assert err.startswith("torrentfs: error: ") and str(bad) in err and err.count("\n") == 1
    monkeypatch.setenv("TORRENTFS_CONFIG", os.devnull)
    old = os.umask(0o027)
    try:
        code, out, err = run_here(path, ["create", "payload.bin", "-o", "made.torrent"],
                                  tmp_path)
    finally:
        os.umask(old)
    assert code == 0, err
    assert (tmp_path / "made.torrent").stat().st_mode & 0o777 == 0o640
    code, out, err = run_here(path, ["info", "--bogus"], tmp_path)  # argparse's exit
    assert code == 2 and err.startswith("torrentfs: error: ") and err.count("\n") == 1
    wait_until(lambda: status(path)["children"] == [], timeout=10,
               message="the zygote did not reap its command's process")
    assert status(path)["served"] == 4


def test_a_command_given_back_runs_in_the_caller(resident, tmp_path, good_torrent):
    """--no-resident seen only once parsed (config file, -o): nothing was done."""
    path, proc = resident
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    code, out, err = run_here(path, ["mount", str(good_torrent), str(mnt), "--no-dht",
                                     "--cache-dir", str(tmp_path / "c"), "-o",
                                     "no_resident"], tmp_path)
    assert (code, out, err) == (None, "", "")
    assert not os.path.ismount(mnt) and not (tmp_path / "c").exists()


def test_stop_ends_the_zygote_and_removes_its_socket(resident):
    path, proc = resident
    reply = zygote.ask("stop", path=path)
    assert reply is not None and reply.line == "ok"
    reply.sock.close()
    assert proc.wait(10) == 0
    assert not os.path.exists(path)
    assert zygote.run_command(["info", "x"], path) is None  # the launcher runs it


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
