"""Integration: the DHT with real libtorrent nodes on loopback, no tracker anywhere.

A DHT-only swarm of libtorrent nodes (each on its own loopback address), a
trackerless torrent; torrentfs mounts it with no tracker and no --peer, only
--dht-bootstrap pointing at one libtorrent node, finds the seeder through the DHT and
reads every file byte-exact. Then the other way round: torrentfs seeds, and a
libtorrent leecher that knows only the DHT (joined through torrentfs's own node)
downloads from it."""

from __future__ import annotations

import re
import signal
import stat
import subprocess
import time

import pytest

from tests.harness.command import TORRENTFS
from tests.harness.payload import cmp_tree, make_payload, tree_of
from tests.harness.swarm import (
    free_port,
    lt_create,
    lt_dht_node,
    lt_leecher,
    lt_seeder,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

BIG = 6 * 1024 * 1024 + 4321
PIECE = 256 * 1024
NET = "127.0.5"  # this file's loopback addresses: 127.0.5.x


@pytest.fixture(scope="module")
def dht(tmp_path_factory):
    """A trackerless torrent and three libtorrent DHT nodes joined through the first."""
    base = tmp_path_factory.mktemp("dht")
    payload = make_payload(base / "data" / "payload", BIG, seed=5)
    torrent = base / "payload.torrent"
    info_hash = lt_create(payload, torrent, piece_size=PIECE)
    assert b"announce" not in torrent.read_bytes()
    with lt_dht_node(f"{NET}.1", workdir=base) as boot:
        join = [f"{boot.ip}:{boot.port}"]
        with lt_dht_node(f"{NET}.2", dht_nodes=join, workdir=base) as n2, \
             lt_dht_node(f"{NET}.3", dht_nodes=join, workdir=base) as n3:
            yield {"base": base, "payload": payload, "torrent": torrent,
                   "info_hash": info_hash, "nodes": [boot, n2, n3], "join": join[0]}


def announced(nodes, host: str, port: int | None = None) -> bool:
    port_re = str(port) if port else r"\d+"
    pat = re.compile(rf"incoming dht announce: {re.escape(host)}:{port_re} ")
    return any(pat.search(n.log()) for n in nodes)


def test_mount_finds_a_seeder_through_the_dht(dht, mount_torrent):
    with lt_seeder(dht["torrent"], dht["base"] / "data", ip=f"{NET}.4",
                   dht_nodes=[dht["join"]], workdir=dht["base"]) as seeder:
        wait_until(lambda: announced(dht["nodes"], seeder.ip), 30,
                   message="the libtorrent seeder never announced itself on the DHT")
        t0 = time.monotonic()
        m = mount_torrent(dht["torrent"], "--dht-bootstrap", dht["join"])
        mounted = time.monotonic() - t0
        wait_until(lambda: "DHT: first peer" in m.log, 60,
                   message="no peer found through the DHT")
        found = time.monotonic() - t0
        logged = float(re.search(r"DHT: first peer for \w+ after ([\d.]+) s: ([\d.]+)",
                                 m.log).group(1))
        print(f"\nmount returned after {mounted:.2f} s; first DHT peer seen in the log "
              f"{found:.2f} s after the mount command started ({logged:.3f} s after the "
              "DHT node started, bootstrap included)")
        root = m.path / "payload"
        assert tree_of(root) == tree_of(dht["payload"])
        cmp_tree(dht["payload"], root, m)
        assert f"<peer {seeder.ip}:{seeder.port}>" in m.log
        # torrentfs announced itself to the libtorrent nodes with a token they gave.
        wait_until(lambda: announced(dht["nodes"], "127.0.0.1"), 30,
                   message="no libtorrent node took torrentfs's announce_peer")
        assert m.unmount().returncode == 0
    state = m.cache / "dht.state"
    assert stat.S_IMODE(state.stat().st_mode) == 0o600
    assert b"2:id20:" in state.read_bytes()


def test_libtorrent_finds_torrentfs_seed_through_the_dht(dht, tmp_path):
    port = free_port()
    log_path = tmp_path / "seed.log"
    with open(log_path, "wb") as err:
        proc = subprocess.Popen(
            [TORRENTFS, "seed", str(dht["torrent"]), str(dht["base"] / "data"),
             "--port", str(port), "--cache-dir", str(tmp_path / "cache"),
             "--dht-bootstrap", dht["join"]],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
    try:
        wait_until(lambda: announced(dht["nodes"], "127.0.0.1", port)
                   or proc.poll() is not None, 60,
                   message="torrentfs seed never announced itself on the DHT")
        assert proc.poll() is None, log_path.read_text()
        # The leecher joins the DHT through torrentfs's node alone (UDP, the same port
        # number as its TCP port): our answers to libtorrent's queries lead it on.
        res = lt_leecher(dht["torrent"], tmp_path / "down", ip=f"{NET}.9",
                         dht_nodes=[f"127.0.0.1:{port}"], timeout=90)
        assert res.returncode == 0, res.stderr[-3000:] + log_path.read_text()[-3000:]
        for original in (p for p in dht["payload"].rglob("*") if p.is_file()):
            got = tmp_path / "down" / "payload" / original.relative_to(dht["payload"])
            assert got.read_bytes() == original.read_bytes()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    up = int(re.search(r"uploaded (\d+)", log_path.read_text()).group(1))
    assert up >= BIG, log_path.read_text()[-3000:]  # the data came from torrentfs


def test_mount_a_magnet_with_no_tracker_through_the_dht(dht, mount_torrent):
    """A magnet with nothing but the info-hash: the metadata and the data come from a
    libtorrent seeder that only the DHT knows; the tree is listed once the mount
    command returns."""
    from tests.harness.payload import magnet_of
    with lt_seeder(dht["torrent"], dht["base"] / "data", ip=f"{NET}.5",
                   dht_nodes=[dht["join"]], workdir=dht["base"]) as seeder:
        wait_until(lambda: announced(dht["nodes"], seeder.ip), 30,
                   message="the libtorrent seeder never announced itself on the DHT")
        uri = magnet_of(dht["info_hash"])
        assert "tr=" not in uri and "x.pe=" not in uri
        m = mount_torrent(uri, "--dht-bootstrap", dht["join"], "--metadata-timeout", "60")
        t0 = time.monotonic()
        assert tree_of(m.path / "payload") == tree_of(dht["payload"])
        listed = m.elapsed + time.monotonic() - t0
        print(f"\nmount MAGNET (DHT only) to a listed tree: {listed:.2f} s")
        assert re.search(r"metadata of \w+ \(payload\) fetched in", m.log), m.log[-3000:]
        assert "DHT: first peer" in m.log
        cmp_tree(dht["payload"], m.path / "payload", m)
        assert f"<peer {seeder.ip}:{seeder.port}>" in m.log
        assert m.unmount().returncode == 0
