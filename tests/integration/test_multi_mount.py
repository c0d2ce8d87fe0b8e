"""Integration: ``torrentfs mount --watch DIR`` shows every torrent in DIR as a folder,
follows DIR as torrents are added and removed, and serves them all from one
process on one listening port (libtorrent seeders and leechers, opentracker)."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from tests.harness.payload import data_of, make_payload, tree_of
from tests.harness.swarm import (
    lt_create,
    lt_leecher,
    lt_seeder,
    opentracker,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PIECE = 64 * 1024
APPEAR_WITHIN = 15.0  # a torrent copied into DIR is shown by then (polled every 1 s)


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(table, port) of each TCP socket process ``pid`` has in the LISTEN state
    (table: "tcp" for IPv4, "tcp6" for IPv6)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    found = []
    for table in ("tcp", "tcp6"):
        with open(f"/proc/net/{table}") as f:
            next(f)
            for line in f:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:
                    found.append((table, int(fields[1].rpartition(":")[2], 16)))
    return found


def port_of(log: str) -> int:
    import re
    m = re.search(r"listening on port (\d+) for every torrent", log)
    assert m, log
    return int(m.group(1))


@pytest.fixture(scope="module")
def swarm(tmp_path_factory):
    """Three torrents, each seeded by libtorrent through opentracker: ``alpha`` (a
    folder), another ``alpha`` (a single file: the same name), and ``gamma``."""
    base = tmp_path_factory.mktemp("multi")
    d1, d2, d3 = base / "d1", base / "d2", base / "d3"
    make_payload(d1 / "alpha", 700_000, seed=11)
    d2.mkdir()
    (d2 / "alpha").write_bytes(data_of(3_000_000, 12))
    make_payload(d3 / "gamma", 500_000, seed=13)
    with opentracker() as tracker:
        torrents = {}
        for name, data, src in (("one", d1, d1 / "alpha"), ("two", d2, d2 / "alpha"),
                                ("three", d3, d3 / "gamma")):
            torrents[name] = base / f"{name}.torrent"
            tracker.add(lt_create(src, torrents[name], tracker.announce_url,
                                  piece_size=PIECE))
        with lt_seeder(torrents["one"], d1, ip="127.0.0.2"), \
             lt_seeder(torrents["two"], d2, ip="127.0.0.3"), \
             lt_seeder(torrents["three"], d3, ip="127.0.0.4"):
            yield {"base": base, "torrents": torrents, "data": (d1, d2, d3)}


def same_files(mounted: Path, original: Path) -> None:
    assert tree_of(mounted) == tree_of(original)
    for rel, size in tree_of(original).items():
        if size is not None:
            assert (mounted / rel).read_bytes() == (original / rel).read_bytes(), rel


def test_watch_folder_follows_its_torrents(swarm, mount_torrent, tmp_path):
    d1, d2, d3 = swarm["data"]
    t = swarm["torrents"]
    watched = tmp_path / "watched"
    watched.mkdir()
    shutil.copy(t["one"], watched / "a-one.torrent")
    shutil.copy(t["two"], watched / "b-two.torrent")
    (watched / "broken.torrent").write_bytes(b"d4:infoi3e" + b"\x00garbage" * 10)
    (watched / "notes.txt").write_text("not a torrent\n")

    m = mount_torrent(watched, watch=True)
    # Both are there as soon as the mount returns; the same name made unique.
    assert sorted(os.listdir(m.path)) == ["alpha", "alpha (2)"]
    same_files(m.path / "alpha", d1 / "alpha")  # a multi-file torrent: its folder
    assert os.listdir(m.path / "alpha (2)") == ["alpha"]  # single-file: holds it
    with open(m.path / "alpha (2)" / "alpha", "rb") as f:  # its start only (see below)
        assert f.read(500_000) == (d2 / "alpha").read_bytes()[:500_000]

    # A third torrent copied in appears within a bounded wait, and reads right.
    shutil.copy(t["three"], watched / "c-three.torrent")
    wait_until(lambda: "gamma" in os.listdir(m.path), APPEAR_WITHIN,
               message=f"gamma did not appear; log:\n{m.log[-3000:]}")
    same_files(m.path / "gamma", d3 / "gamma")

    # One daemon, one listening port (one socket for IPv4, one for IPv6 where the
    # host has it), and that port takes peers of every torrent: libtorrent
    # leechers fetch "alpha" and "gamma" from the mount alone.
    port = port_of(m.log)
    listening = sorted(listening_sockets(m.pid()))
    assert listening in ([("tcp", port)], [("tcp", port), ("tcp6", port)]), listening
    for name, data in (("one", "alpha"), ("three", "gamma")):
        out = tmp_path / f"leech-{name}"
        r = lt_leecher(without_trackers(t[name], tmp_path), out, ip="127.0.0.9",
                       peers=[f"127.0.0.1:{port}"], timeout=60)
        assert r.returncode == 0, r.stderr[-3000:]
        src = (d1 if name == "one" else d3) / data
        assert tree_of(out / data) == tree_of(src)

    # A file of the torrent about to go, open: after the removal it reads EIO.
    f = open(m.path / "alpha (2)" / "alpha", "rb")
    try:
        os.remove(watched / "b-two.torrent")
        wait_until(lambda: "alpha (2)" not in os.listdir(m.path), APPEAR_WITHIN,
                   message=f"alpha (2) did not go; log:\n{m.log[-3000:]}")
        # The kernel drops its cached entry (kept an hour otherwise) when told, which
        # it is asynchronously: a lookup by path may see it a moment longer.
        wait_until(lambda: not (m.path / "alpha (2)").exists(), APPEAR_WITHIN,
                   message="alpha (2) can still be looked up: the kernel was not told")
        with pytest.raises(OSError) as e:
            os.pread(f.fileno(), 4096, 2_900_000)  # never read: not in the page cache
        assert e.value.errno == errno.EIO
    finally:
        f.close()
    assert sorted(os.listdir(m.path)) == ["alpha", "gamma"]
    two = lt_info_hash(t["two"])
    wait_until(lambda: (m.cache / two / "resume").exists(), 20,
               message=f"no resume saved for the removed torrent; log:\n{m.log[-3000:]}")
    same_files(m.path / "alpha", d1 / "alpha")  # the others go on

    # The bad torrent was skipped with one line, though DIR was listed many times.
    assert m.log.count("skipped broken.torrent") == 1, m.log
    assert "notes.txt" not in m.log
    r = m.unmount()
    assert r.returncode == 0, r.stderr


def without_trackers(torrent: Path, where: Path) -> Path:
    """A copy of ``torrent`` naming no tracker (the same info-hash): a leecher of it
    knows only the peers it is given."""
    import bencodepy
    top = bencodepy.decode(torrent.read_bytes())
    top.pop(b"announce", None)
    top.pop(b"announce-list", None)
    out = where / f"bare-{torrent.name}"
    out.write_bytes(bencodepy.encode(top))
    assert lt_info_hash(out) == lt_info_hash(torrent)
    return out


def lt_info_hash(torrent: Path) -> str:
    from torrentfs.core.metainfo import parse
    return parse(torrent.read_bytes()).info_hash.hex()


def test_watch_port_in_use_is_one_line(mount_torrent, tmp_path):
    import socket
    watched = tmp_path / "watched"
    watched.mkdir()
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        m = mount_torrent(watched, "--port", str(port), watch=True, expect_ok=False)
    r = m.result
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and f"cannot listen on port {port}" in r.stderr, r.stderr
    assert not os.path.ismount(m.path)


def test_empty_watch_folder_then_a_torrent(swarm, mount_torrent, tmp_path):
    """An empty folder mounts (an empty root); a torrent moved in shows up."""
    watched = tmp_path / "watched"
    watched.mkdir()
    m = mount_torrent(watched, watch=True)
    assert os.listdir(m.path) == []
    tmp = tmp_path / "three.tmp"
    shutil.copy(swarm["torrents"]["three"], tmp)
    os.rename(tmp, watched / "three.torrent")
    wait_until(lambda: os.listdir(m.path) == ["gamma"], APPEAR_WITHIN,
               message=f"gamma did not appear; log:\n{m.log[-3000:]}")
    same_files(m.path / "gamma", swarm["data"][2] / "gamma")


def test_a_magnet_file_in_the_watch_folder(swarm, mount_torrent, tmp_path):
    """A .magnet file (a text file holding a magnet link) shows up as a folder once
    its metadata has come from the swarm, and reads byte-exact."""
    from torrentfs.core.magnet import link as magnet_link
    from torrentfs.core.metainfo import parse
    watched = tmp_path / "watched"
    watched.mkdir()
    link = magnet_link(parse(swarm["torrents"]["three"].read_bytes()))
    (watched / "three.magnet").write_text(link + "\n")
    (watched / "bad.magnet").write_text("magnet:?dn=no-hash\n")
    m = mount_torrent(watched, "--metadata-timeout", "60", watch=True)
    wait_until(lambda: os.listdir(m.path) == ["gamma"], APPEAR_WITHIN,
               message=f"gamma did not appear; log:\n{m.log[-3000:]}")
    same_files(m.path / "gamma", swarm["data"][2] / "gamma")
    assert "bad.magnet" in m.log and "bad magnet link" in m.log
