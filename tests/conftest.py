"""Shared fixtures: sample payloads and torrentfs mounts that are always unmounted.

A mount made here is undone in a finalizer whatever happens: ``torrentfs unmount``,
then ``fusermount3 -uz``, then SIGKILL of the daemon by its PID. No test can leave a
mount or a process behind.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# Property tests judge what the code does, not how fast: on a machine busy with the
# integration tests' daemons a single example may take longer than hypothesis's
# default 200 ms deadline, which would fail a correct run.
settings.register_profile("torrentfs", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("torrentfs")


from torrentfs.fs.procfs import pid_alive  # noqa: E402

TORRENTFS = str(Path(sys.executable).with_name("torrentfs"))

# The tests run the real command: the config file of whoever runs them must not
# change what they see (a test that wants a config file passes --config).
os.environ["TORRENTFS_CONFIG"] = os.devnull


def data_of(n: int, seed: int) -> bytes:
    """``n`` deterministic, non-repeating bytes (a SHA-256 chain from ``seed``)."""
    out = bytearray()
    block = seed.to_bytes(4, "big")
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


def make_payload(root: Path, big_size: int, seed: int = 1) -> Path:
    """A directory like real torrents have: one big file, a small tree with nested
    folders, an empty file, a non-ASCII name, files smaller than a piece."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    (root / "big.bin").write_bytes(rng.randbytes(big_size))
    (root / "docs" / "deep" / "er").mkdir(parents=True)
    (root / "docs" / "readme.txt").write_text("hello from torrentfs\n")
    (root / "docs" / "deep" / "er" / "nested.dat").write_bytes(rng.randbytes(300_001))
    (root / "docs" / "empty").write_bytes(b"")
    (root / "données été.txt").write_text("non-ASCII name ✓\n", encoding="utf-8")
    (root / "z-small.bin").write_bytes(rng.randbytes(777))
    return root


def tree_of(root: Path) -> dict[str, int | None]:
    """Relative path -> size (None for directories) of everything under ``root``."""
    out: dict[str, int | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = None
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = os.stat(p).st_size
    return out


def cmp_tree(original: Path, mounted: Path, log: str = "") -> None:
    """``cmp`` every file under ``original`` with its twin under ``mounted``; a
    difference fails the test, with the tail of ``log`` (a mount's) to say why."""
    for path in sorted(p for p in original.rglob("*") if p.is_file()):
        rel = path.relative_to(original)
        r = subprocess.run(["cmp", str(path), str(mounted / rel)], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, f"{rel}: {r.stdout}{r.stderr}\n{log[-3000:]}"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class Mount:
    """A running ``torrentfs mount``: its mountpoint, cache folder and daemon. A
    ``mount --watch`` has no info-hash; its log is beside its state file."""

    def __init__(self, mountpoint: Path, cache: Path, info_hash: str | None) -> None:
        self.path = mountpoint
        self.cache = cache
        self.info_hash = info_hash

    @property
    def folder(self) -> Path:
        return self.cache / self.info_hash

    @property
    def log_path(self) -> Path:
        if self.info_hash is None:
            from torrentfs.cli.state import mount_log_file
            return mount_log_file(self.cache, str(self.path))
        return self.folder / "torrentfs.log"

    @property
    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def pid(self) -> int | None:
        from torrentfs.cli.state import mount_state_file
        try:
            return int(mount_state_file(self.cache, str(self.path)).read_text())
        except (OSError, ValueError):
            return None

    def unmount(self, timeout: float = 30) -> subprocess.CompletedProcess:
        return subprocess.run([TORRENTFS, "unmount", str(self.path), "--cache-dir",
                               str(self.cache)], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)


def abort_fuse_connection(mountpoint: Path) -> None:
    """Abort the FUSE connection behind a mount (fusectl), failing every request in
    flight: the one way to free a daemon stuck in a request to its own mount, which
    not even SIGKILL ends."""
    dev = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if len(fields) > 4 and fields[4] == str(mountpoint):
                dev = fields[2]
    if dev is None:
        return
    conns = Path("/sys/fs/fuse/connections")
    if conns.is_dir() and not any(conns.iterdir()):
        subprocess.run(["mount", "-t", "fusectl", "none", str(conns)], capture_output=True,
                       timeout=10)
    try:
        (conns / dev.split(":")[1] / "abort").write_text("1")
    except OSError:
        pass


def force_unmount(m: Mount) -> None:
    """Undo a mount by any means, bounded: polite, then abort the FUSE connection and
    detach lazily, then SIGKILL."""
    pid = m.pid()
    if os.path.ismount(m.path):
        try:
            m.unmount(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    if os.path.ismount(m.path):
        abort_fuse_connection(m.path)
        subprocess.run(["fusermount3", "-uz", str(m.path)], capture_output=True, timeout=10)
    if pid:
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def make_swarm(tmp_path):
    """``make_swarm(size, piece_length, **kw)`` -> (meta, payload, Torrent): a small
    torrent of pseudo-random bytes and a Torrent for it that neither listens nor
    announces, with storage work run inline (``fakepeer.inline``). ``kw`` are its
    settings (``TorrentOptions`` fields) and its runtime arguments (``http_transport``)."""
    import dataclasses

    from tests.harness.fakepeer import inline, quiet, small_torrent
    from torrentfs.engine.options import TorrentOptions
    from torrentfs.engine.torrent import Torrent
    settings = {f.name for f in dataclasses.fields(TorrentOptions)}

    def make(size=10 * 32768 + 100, piece_length=32768, **kw):
        meta, payload = small_torrent(tmp_path, size, piece_length)
        options = quiet(**{k: v for k, v in kw.items() if k in settings})
        torrent = Torrent(meta, tmp_path / "cache", options, offload=inline,
                          **{k: v for k, v in kw.items() if k not in settings})
        return meta, payload, torrent
    return make


@pytest.fixture
def mount_torrent(tmp_path):
    """``mount_torrent(torrent, *args)`` mounts with ``torrentfs mount`` (daemonised)
    a .torrent path or a magnet link on a fresh mountpoint and cache folder, and
    returns a ``Mount`` (``.elapsed``: seconds the mount command took). ``wrap``
    rewrites the command line (e.g. to run it in a cluster's network namespace);
    ``watch`` makes ``torrent`` a folder of torrents (``mount --watch``). Every
    mount is undone when the test ends, even on failure."""
    mounts: list[Mount] = []
    counter = iter(range(1000))

    def mount(torrent: Path | str, *args: str, cache: Path | None = None,
              expect_ok: bool = True, wrap=None, watch: bool = False) -> Mount:
        """Without a --dht option of its own, the mount gets --no-dht."""
        from torrentfs.core import magnet
        from torrentfs.core.metainfo import parse
        n = next(counter)
        mountpoint = tmp_path / f"mnt{n}"
        mountpoint.mkdir()
        cache = cache or tmp_path / f"cache{n}"
        if watch:
            info_hash = None
        elif magnet.is_magnet(str(torrent)):  # a magnet link
            info_hash = magnet.parse(str(torrent)).info_hash_hex
        else:
            info_hash = parse(Path(torrent).read_bytes()).info_hash.hex()
        m = Mount(mountpoint, cache, info_hash)
        mounts.append(m)
        if not any(a.startswith(("--dht", "--no-dht")) for a in args):
            args = ("--no-dht", *args)  # tests never reach for the public DHT routers
        if watch:
            args = ("--watch", *args)
        # --no-lsd: tests stay on loopback (a test that wants LSD passes --lsd).
        argv = [TORRENTFS, "mount", str(torrent), str(mountpoint), "--cache-dir", str(cache),
                "--read-timeout", "60", "--no-lsd", *args]
        t0 = time.monotonic()
        try:
            r = subprocess.run(wrap(argv) if wrap else argv, capture_output=True, text=True,
                               timeout=180, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            pytest.fail(f"torrentfs mount did not return in 180 s; its log:\n{m.log[-5000:]}")
        m.elapsed = time.monotonic() - t0
        if expect_ok:
            assert r.returncode == 0, f"mount failed: {r.stderr}\n{m.log}"
            assert os.path.ismount(mountpoint)
        m.result = r
        return m

    yield mount
    for m in mounts:
        force_unmount(m)
