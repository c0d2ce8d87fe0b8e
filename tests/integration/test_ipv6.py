"""Integration: IPv6 peers. A libtorrent seeder listening on ::1 only feeds a mount,
given by `--peer [::1]:PORT` and by a tracker's `peers6`; a libtorrent leecher on ::1
downloads from `torrentfs seed`, which listens on IPv4 and IPv6 on one port; a
uTP-only libtorrent seeder on ::1 feeds a mount over its dual-stack uTP socket."""

from __future__ import annotations

import contextlib
import http.server
import socket
import struct
import threading

import pytest

from tests.harness.mounts import Seed
from tests.harness.payload import cmp_tree, make_payload, same_tree
from tests.harness.swarm import (
    free_port,
    lt_create,
    lt_dht_node,
    lt_leecher,
    lt_seeder,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PIECE = 64 * 1024


@contextlib.contextmanager
def peers6_tracker(peers: list[tuple[str, int]]):
    """A minimal HTTP tracker on 127.0.0.1 whose every announce reply lists
    ``peers`` (IPv6) in ``peers6`` and none in ``peers`` (opentracker, Debian's, is
    built IPv4-only). Yields its announce URL; stopped on exit."""
    blob = b"".join(socket.inet_pton(socket.AF_INET6, ip) + struct.pack(">H", port)
                    for ip, port in peers)
    body = (b"d8:intervali1800e5:peers0:6:peers6" + str(len(blob)).encode() + b":" + blob
            + b"e")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/announce"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_mount_reads_from_a_libtorrent_seeder_on_ipv6_only(tmp_path, mount_torrent):
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 2 * 1024 * 1024 + 61, seed=161)
    torrent = tmp_path / "t.torrent"
    lt_create(payload, torrent, None, piece_size=PIECE)
    with lt_seeder(torrent, data, ip="::1") as origin:
        assert origin.endpoint.startswith("[::1]:")
        m = mount_torrent(torrent, "--peer", origin.endpoint)
        same_tree(payload, m.path / "payload")
    assert f"connected to <peer ::1:{origin.port}>" in m.log, m.log[-3000:]


def test_mount_reads_from_a_utp_only_libtorrent_seeder_on_ipv6_only(tmp_path, mount_torrent):
    """TCP off at the seeder, which listens on ::1 alone: every byte crosses the
    mount's uTP socket, dual-stack by default (no --listen host named)."""
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 2 * 1024 * 1024 + 65, seed=165)
    torrent = tmp_path / "t.torrent"
    lt_create(payload, torrent, None, piece_size=PIECE)
    with lt_seeder(torrent, data, ip="::1", utp=True, tcp=False) as origin:
        m = mount_torrent(torrent, "--peer", origin.endpoint)
        cmp_tree(payload, m.path / "payload", m)
    assert "(IPv4 and IPv6)" in m.log, m.log[-3000:]
    assert f"<peer ::1:{origin.port}> over uTP (outgoing)" in m.log, m.log[-3000:]


def test_mount_finds_an_ipv6_seeder_through_a_trackers_peers6(tmp_path, mount_torrent):
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 1024 * 1024 + 62, seed=162)
    # The mount's torrent names the tracker; the seeder's does not (the tracker
    # answers every announce with the seeder's IPv6 address).
    with lt_seeder_no_tracker(tmp_path, payload, data) as (origin, _):
        with peers6_tracker([("::1", origin.port)]) as url:
            torrent = tmp_path / "t6.torrent"
            lt_create(payload, torrent, url, piece_size=PIECE)
            m = mount_torrent(torrent)
            same_tree(payload, m.path / "payload")
    assert f"announced to {url}: 1 peers" in m.log, m.log[-3000:]
    assert f"connected to <peer ::1:{origin.port}>" in m.log, m.log[-3000:]


@contextlib.contextmanager
def lt_seeder_no_tracker(tmp_path, payload, data):
    """A libtorrent seeder on ::1 of a tracker-less torrent of ``payload`` (the same
    info dictionary, so the same info-hash, as a torrent of it naming a tracker)."""
    torrent = tmp_path / "plain.torrent"
    lt_create(payload, torrent, None, piece_size=PIECE)
    with lt_seeder(torrent, data, ip="::1") as origin:
        yield origin, torrent


def test_libtorrent_on_ipv6_leeches_from_torrentfs_seed(tmp_path):
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 1024 * 1024 + 63, seed=163)
    torrent = tmp_path / "t.torrent"
    lt_create(payload, torrent, None, piece_size=PIECE)
    port = free_port()
    with Seed(torrent, data, tmp_path / "cache", port) as seed:
        out = tmp_path / "out"
        r = lt_leecher(torrent, out, ip="::1", peers=[f"[::1]:{port}"], timeout=60)
        assert r.returncode == 0, r.stderr + seed.log.read_text()[-3000:]
    same_tree(payload, out / "payload")


def test_mount_finds_a_seeder_through_a_libtorrent_dht_node_on_ipv6(tmp_path, mount_torrent):
    """A trackerless torrent; a libtorrent DHT node on ::1 and a libtorrent seeder on
    ::1 that announces itself there. The mount, bootstrapped only from [::1]:PORT,
    finds the seeder with its IPv6 DHT node (BEP 32: nodes6) and reads it all."""
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 1024 * 1024 + 64, seed=164)
    torrent = tmp_path / "t.torrent"
    lt_create(payload, torrent, None, piece_size=PIECE)
    with lt_dht_node("::1", workdir=tmp_path) as boot:
        with lt_seeder(torrent, data, ip="::1", dht_nodes=[boot.endpoint],
                       workdir=tmp_path) as seeder:
            wait_until(lambda: "incoming dht announce" in boot.log(), 30,
                       message="the libtorrent seeder never announced on the DHT: "
                               + boot.log()[-2000:])
            m = mount_torrent(torrent, "--dht-bootstrap", boot.endpoint)
            wait_until(lambda: "DHT: first peer" in m.log, 60,
                       message="no peer found through the DHT: " + m.log[-3000:])
            assert "(IPv6)" in m.log
            cmp_tree(payload, m.path / "payload", m)
    assert f"<peer ::1:{seeder.port}>" in m.log, m.log[-3000:]


def test_bep32_want_finds_an_ipv6_seeder_from_an_ipv4_bootstrap(tmp_path, mount_torrent):
    """A libtorrent DHT node on 127.0.0.1 and ::1 (one node per family); a libtorrent
    seeder on ::1 announces on its IPv6 node. The mount is bootstrapped from the
    IPv4 address alone, so its IPv6 node knows nobody: it learns IPv6 nodes only
    from the nodes6 libtorrent puts in its answers to our IPv4 node's want n4+n6
    (BEP 32), then finds the seeder and reads everything."""
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 1024 * 1024 + 66, seed=166)
    torrent = tmp_path / "t.torrent"
    lt_create(payload, torrent, None, piece_size=PIECE)
    port = free_port(udp=True)
    with lt_dht_node("127.0.0.1", port, also_ip="::1", workdir=tmp_path) as boot:
        with lt_seeder(torrent, data, ip="::1", dht_nodes=[f"[::1]:{port}"],
                       workdir=tmp_path) as seeder:
            wait_until(lambda: "incoming dht announce" in boot.log(), 30,
                       message="the libtorrent seeder never announced on the DHT: "
                               + boot.log()[-2000:])
            m = mount_torrent(torrent, "--dht-bootstrap", f"127.0.0.1:{port}")
            wait_until(lambda: "DHT: first peer" in m.log, 90,
                       message="no peer found through the DHT: " + m.log[-3000:])
            cmp_tree(payload, m.path / "payload", m)
    assert f"<peer ::1:{seeder.port}>" in m.log, m.log[-3000:]
