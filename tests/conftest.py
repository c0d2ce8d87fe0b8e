"""Shared fixtures and pytest settings: sample torrents and torrentfs mounts that are
always unmounted. The helpers they use live in tests/harness/ (payload.py, command.py,
mounts.py, swarm.py, netns.py, fakepeer.py, webseeds.py), imported as ``tests.harness.X``.

A mount made here is undone in a finalizer whatever happens: ``torrentfs unmount``,
then ``fusermount3 -uz``, then SIGKILL of the daemon by its PID. No test can leave a
mount or a process behind.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests.harness.command import TORRENTFS
from tests.harness.mounts import Mount, force_unmount

# Property tests judge what the code does, not how fast: on a machine busy with the
# integration tests' daemons a single example may take longer than hypothesis's
# default 200 ms deadline, which would fail a correct run.
settings.register_profile("torrentfs", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("torrentfs")

# The tests run the real command: the config file of whoever runs them must not
# change what they see (a test that wants a config file passes --config).
os.environ["TORRENTFS_CONFIG"] = os.devnull
# Nor may a mount leave a resident process behind (tests/integration/test_resident.py
# turns it on for its own runtime folder).
os.environ["TORRENTFS_RESIDENT"] = "0"


@pytest.fixture
def good_torrent(tmp_path):
    """A valid .torrent of one 100 kB random file, with an unreachable tracker."""
    from torrentfs.disk.create import create_torrent
    data = tmp_path / "payload.bin"
    data.write_bytes(os.urandom(100_000))
    t = tmp_path / "good.torrent"
    t.write_bytes(create_torrent(data, trackers=["http://127.0.0.1:1/announce"]))
    return t


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
        # --no-lsd: tests stay on loopback (a test that wants LSD passes --lsd);
        # --no-port-mapping: they never ask the machine's router for anything.
        argv = [TORRENTFS, "mount", str(torrent), str(mountpoint), "--cache-dir", str(cache),
                "--read-timeout", "60", "--no-lsd", "--no-port-mapping", *args]
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
