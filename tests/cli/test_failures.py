"""Every command's failure paths, walked as a user meets them (issue 12): bad
arguments, missing files, a busy port, a cache folder that cannot be made, a bad
config file, a magnet with nobody to ask, a closed pipe. Each is exactly one line on
stderr and a non-zero exit: never a traceback, an ExceptionGroup or an "internal
error". (The ones that need a real mount are in tests/integration/test_errors_mount.py.)"""

from __future__ import annotations

import os
import socket
import subprocess

import pytest

from tests.harness.command import TORRENTFS, run
from torrentfs.cli.main import COMMANDS

MAGNET = "magnet:?xt=urn:btih:" + "ab" * 20


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A torrent of one file beside its data, folders and files to trip over, and a
    TCP port that is taken."""
    from torrentfs.disk.create import create_torrent
    d = tmp_path_factory.mktemp("failures")
    (d / "data.bin").write_bytes(os.urandom(300_000))
    (d / "d.torrent").write_bytes(create_torrent(str(d / "data.bin"), piece_length=16384))
    for name in ("mp", "empty", "full"):
        (d / name).mkdir()
    (d / "full" / "f").write_text("x")
    (d / "afile").write_text("x")
    (d / "bad.toml").write_text("bad = [\n")
    (d / "unknown.toml").write_text("frobnicate = 1\n")
    (d / "badvalue.toml").write_text('[mount]\ncache-size = "lots"\n')
    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    busy.bind(("", 0))
    busy.listen()
    yield d, busy.getsockname()[1]
    busy.close()


CASES = [
    # (command line; {d}: the folder, {port}: a busy port), words the line must have
    ("info", "required: TORRENT"),
    ("info {d}/nope.torrent", "no such file"),
    ("info {d}", "is a directory"),
    ("info {d}/afile", "not a torrent file"),
    ("info " + MAGNET, "nobody to ask"),
    ("info " + MAGNET + "&x.pe=127.0.0.1:9 --cache-dir {d}/afile/c", "cache folder",
     "--cache-dir"),
    ("info {d}/d.torrent --config {d}/bad.toml", "not valid TOML"),
    ("info {d}/d.torrent --config {d}/missing.toml", "no such file"),
    ("info {d}/d.torrent --log-level loud", "--log-level"),
    ("create {d}/nope -o {d}/x.torrent", "no such file"),
    ("create {d}/data.bin -o {d}/d.torrent", "exists", "--force"),
    ("create {d}/data.bin -o {d}/empty", "exists"),
    ("create {d}/data.bin -o {d}/none/x.torrent", "cannot write"),
    ("create {d}/data.bin -o {d}/y.torrent --piece-size 3K", "piece length"),
    ("create {d}/data.bin -o {d}/y.torrent -t tracker.lan:6969", "scheme"),
    ("create {d}/data.bin -o {d}/y.torrent --piece-size lots", "not a size"),
    ("mount", "required"),
    ("mount {d}/nope.torrent {d}/mp", "no such file"),
    ("mount {d}/d.torrent {d}/nomp", "no such directory"),
    ("mount {d}/d.torrent {d}/full", "not empty"),
    ("mount {d}/d.torrent {d}/afile", "not a directory"),
    ("mount {d}/d.torrent {d}/mp --port {port}", "port", "in use", "--port"),
    ("mount {d}/d.torrent {d}/mp --dht-port {udp} --dht-bootstrap 127.0.0.1:9", "UDP port",
     "for the DHT", "--dht-port"),
    ("mount {d}/d.torrent {d}/mp --cache-dir {d}/afile/c", "cache folder", "--cache-dir"),
    ("mount {d}/d.torrent {d}/mp --cache-dir /proc/torrentfs", "cache folder"),
    ("mount {d}/d.torrent {d}/mp --cache-size 1K", "too small"),
    ("mount {d}/d.torrent {d}/mp -o frob=1", "unknown option"),
    ("mount {d}/d.torrent {d}/mp --config {d}/unknown.toml", "unknown key"),
    ("mount {d}/d.torrent {d}/mp --config {d}/badvalue.toml", "cache-size"),
    ("mount " + MAGNET + " {d}/mp --no-dht", "nobody to ask", "--peer"),
    ("mount magnet:?xt=urn:btih:1234 {d}/mp", "bad magnet link"),
    ("mount --watch {d}/d.torrent {d}/mp", "not a directory"),
    ("mount --watch {d}/empty {d}/mp --port {port}", "in use"),
    ("mount --watch {d}/empty {d}/mp --seed-after ratio=1", "--seed-after"),
    ("mount --watch {d}/empty {d}/mp --cache-dir {d}/afile/c", "cache folder"),
    ("seed {d}/d.torrent {d}/nodir", "no such directory"),
    ("seed {d}/d.torrent {d}/empty", "has no 'data.bin'"),
    ("seed {d}/d.torrent {d} --port {port}", "in use"),
    ("seed {d}/afile {d}", "not a torrent file"),
    ("seed {d}/d.torrent {d} --no-dht --no-lsd --cache-dir {d}/afile/c", "afile"),
    ("seed {d}/d.torrent {d} --upload-rate fast", "not a size"),
    ("status {d}/mp", "no torrentfs mount there"),
    ("status {d}/mp --json --watch", "not allowed"),
    ("status", "required"),
    ("status {d}/mp -v --cache-dir {d}/afile", "mp"),
    ("unmount", "required"),
    ("unmount {d}/mp", ""),
    ("frobnicate", "invalid choice"),
]


def processes_naming(text: str) -> list[int]:
    """The pids of the processes whose command line has ``text``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if text.encode() in f.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_failure_is_one_line(place, case):
    d, port = place
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("", 0))
        argv = case[0].format(d=d, port=port, udp=udp.getsockname()[1]).split()
        try:
            r = subprocess.run([TORRENTFS, *argv], capture_output=True, text=True,
                               timeout=60, stdin=subprocess.DEVNULL,
                               env={**os.environ, "TORRENTFS_CONFIG": "/dev/null"})
        finally:
            mounted = os.path.ismount(d / "mp")
            if mounted:  # a case that should have failed mounted: undo it, and fail
                subprocess.run([TORRENTFS, "unmount", str(d / "mp")], capture_output=True,
                               timeout=60, stdin=subprocess.DEVNULL)
    assert not mounted, r
    # nothing of the command stays behind: not the daemon forked early (``prefork``)
    assert not processes_naming(str(d)), r
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0, r
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("torrentfs: error: "), r.stderr
    for bad in ("Traceback", "ExceptionGroup", "internal error", "Exceptions from Trio"):
        assert bad not in r.stderr
    for needle in case[1:]:
        assert needle in lines[0], r.stderr


def test_seed_checks_its_port_before_verifying(place):
    """A busy port: the answer comes before the data is read (nothing is logged of
    a verification), at once."""
    d, port = place
    r = run("seed", d / "d.torrent", d, "--port", port, "--no-dht", "--no-lsd", "-v")
    assert r.returncode == 1 and "verified" not in r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]


@pytest.mark.parametrize("argv", [["info", "{d}/d.torrent"],
                                  ["create", "{d}/data.bin", "-o", "{d}/p.torrent",
                                   "--force"],
                                  ["--help"], ["info", "--help"]])
def test_a_closed_pipe_ends_quietly(place, argv):
    """``torrentfs info x | head -1``: the reader is gone before we write."""
    d, _ = place
    r_fd, w_fd = os.pipe()
    os.close(r_fd)  # every write to w_fd now fails with EPIPE
    try:
        p = subprocess.run([TORRENTFS, *[a.format(d=d) for a in argv]], stdout=w_fd,
                           stderr=subprocess.PIPE, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
    finally:
        os.close(w_fd)
    assert p.stderr == ""
    assert p.returncode in (0, 141)


def test_every_command_takes_verbose_and_log_level():
    for module in COMMANDS:
        name = module.__name__.rsplit(".", 1)[1]
        name = {"listing": "list"}.get(name, name)  # a module named list would shadow list()
        r = run(name, "--help")
        assert r.returncode == 0, r.stderr
        assert "-v, --verbose" in r.stdout and "--log-level" in r.stdout, name


def test_verbose_info_logs_to_stderr_and_prints_to_stdout(place):
    d, _ = place
    r = run("info", d / "d.torrent", "-v")
    assert r.returncode == 0 and "info-hash:" in r.stdout
