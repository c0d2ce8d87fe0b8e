"""Two failure paths the walk (test_failures.py) cannot reach from its place, hit
here by real commands (issue 12): permission denied (the walk runs as root, whom no
folder refuses: here the commands run as an unprivileged user), and a port taken
after the check (the check binds IPv4; a port held on IPv6 only passes it, and the
daemon, or the seeder after verifying, finds it taken when it listens). Each is one
line on stderr and a non-zero exit: never a traceback, an ExceptionGroup or an
"internal error"."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from tests.harness.command import TORRENTFS

MAGNET = "magnet:?xt=urn:btih:" + "ab" * 20
NOBODY = 65534


def one_error_line(r: subprocess.CompletedProcess) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0, r
    assert len(lines) == 1, r.stderr
    for bad in ("Traceback", "ExceptionGroup", "internal error", "Exceptions from Trio",
                "[Errno"):
        assert bad not in r.stderr, r.stderr
    assert lines[0].startswith("torrentfs: error: "), r.stderr
    return lines[0]


def torrentfs(*argv, user: int | None = None, home: Path | None = None
              ) -> subprocess.CompletedProcess:
    """Run a command (as ``user``, with ``home`` as its home and runtime folder)."""
    pre = [] if user is None else ["setpriv", f"--reuid={user}", f"--regid={user}",
                                   "--clear-groups"]
    env = {**os.environ, "TORRENTFS_CONFIG": "/dev/null"}
    if home is not None:
        env.update(HOME=str(home), XDG_RUNTIME_DIR=str(home))
    return subprocess.run([*pre, TORRENTFS, *map(str, argv)], capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, env=env)


# -- permission denied --------------------------------------------------------------

@pytest.fixture(scope="module")
def refused():
    """(folder, user, home): a folder the user may enter, holding a torrent, its data, a
    torrent only root may read, and ``locked/``, a folder only root may enter; the
    user is an unprivileged one when the tests run as root (with setpriv), else the
    tests' own user (then ``locked/`` is made unreadable to it); its home (and runtime
    folder) is ``home/``."""
    from torrentfs.disk.create import create_torrent
    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("needs setpriv (util-linux) to run a command unprivileged")
    d = Path(tempfile.mkdtemp(prefix="i12-eacces-"))
    try:
        d.chmod(0o755)
        (d / "data.bin").write_bytes(os.urandom(100_000))
        (d / "d.torrent").write_bytes(create_torrent(str(d / "data.bin"), piece_length=16384))
        shutil.copy(d / "d.torrent", d / "secret.torrent")
        (d / "secret.torrent").chmod(0o000)
        (d / "locked").mkdir()
        (d / "locked" / "data.bin").write_bytes(b"x")
        (d / "locked").chmod(0o000)
        for name in ("data.bin", "d.torrent"):
            (d / name).chmod(0o644)
        user = NOBODY if os.geteuid() == 0 else None
        home = d / "home"
        home.mkdir(mode=0o700)
        if user is not None:
            os.chown(home, user, user)
        r = torrentfs("--help", user=user, home=home)
        if r.returncode != 0:  # the venv is not readable by that user
            pytest.skip(f"torrentfs cannot run as uid {user}: {r.stderr.strip()[:200]}")
        yield d, user, home
    finally:
        (d / "locked").chmod(0o700)
        shutil.rmtree(d, ignore_errors=True)


DENIED = [
    # (command line; {d}: the folder), words the line must have
    ("info {d}/secret.torrent", "secret.torrent", "permission denied"),
    ("info " + MAGNET + "&x.pe=127.0.0.1:9 --cache-dir {d}/locked/c", "cache folder",
     "permission denied", "--cache-dir"),
    ("create {d}/data.bin -o {d}/locked/x.torrent", "locked/x.torrent",
     "permission denied"),
    ("create {d}/locked -o {d}/x.torrent", "locked", "permission denied"),
    ("seed {d}/d.torrent {d}/locked --no-dht --no-lsd", "locked", "permission denied"),
    ("seed {d}/d.torrent {d} --no-dht --no-lsd --cache-dir {d}/locked/c", "cache folder",
     "permission denied", "--cache-dir"),
    ("status {d}/nowhere --cache-dir {d}/locked", "nowhere", "permission denied"),
]


@pytest.mark.parametrize("case", DENIED, ids=[c[0] for c in DENIED])
def test_permission_denied_is_one_line(refused, case):
    d, user, home = refused
    r = torrentfs(*case[0].format(d=d).split(), user=user, home=home)
    line = one_error_line(r).lower()
    for needle in case[1:]:
        assert needle.lower() in line, r.stderr


# -- a port taken after the check ------------------------------------------------------

@pytest.fixture
def ipv6_only_port():
    """A TCP port held on IPv6 only (IPV6_V6ONLY): free on IPv4, where the check binds."""
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", 0))
        s.listen()
    except OSError as e:
        s.close()
        pytest.skip(f"cannot listen on IPv6: {e}")
    with s:
        yield s.getsockname()[1]


@pytest.mark.parametrize("command", ["mount", "watch", "seed"])
def test_a_port_taken_after_the_check_is_one_line(tmp_path, ipv6_only_port, command):
    from torrentfs.disk.create import create_torrent
    port = ipv6_only_port
    (tmp_path / "data.bin").write_bytes(os.urandom(100_000))
    torrent = tmp_path / "d.torrent"
    torrent.write_bytes(create_torrent(str(tmp_path / "data.bin"), piece_length=16384))
    mp = tmp_path / "mp"
    mp.mkdir()
    (tmp_path / "watched").mkdir()
    common = ["--port", port, "--no-dht", "--no-lsd", "--cache-dir", tmp_path / "cache"]
    argv = {"mount": ["mount", torrent, mp, "--no-port-mapping", *common],
            "watch": ["mount", "--watch", tmp_path / "watched", mp, "--no-port-mapping",
                      *common],
            "seed": ["seed", torrent, tmp_path, "--log-level", "warning", *common]}[command]
    try:
        r = torrentfs(*argv)
    finally:
        mounted = os.path.ismount(mp)
        if mounted:  # it should have failed: undo it, and fail
            subprocess.run([TORRENTFS, "unmount", str(mp)], capture_output=True,
                           timeout=60, stdin=subprocess.DEVNULL)
    assert not mounted, r
    line = one_error_line(r)
    assert f"cannot listen on port {port}: it is in use" in line, r.stderr
    assert "--port" in line
