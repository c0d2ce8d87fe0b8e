"""Integration: local service discovery (BEP 14) between torrentfs and libtorrent.

Two network namespaces on one bridge (10.233.K.0/24, multicast routed out of each
veth), no tracker, no --peer: a libtorrent seeder with LSD on in one, a torrentfs
mount with --lsd in the other. The mount must hear the seeder's BT-SEARCH
announcement, connect to it, and read every file byte-exact. The cluster helper
removes the namespaces, veths and bridge even on failure."""

from __future__ import annotations

import ipaddress
import re

import pytest

from tests.harness.netns import cluster
from tests.harness.payload import cmp_tree, make_payload
from tests.harness.swarm import lt_create, lt_seeder, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def test_mount_finds_a_libtorrent_seeder_by_lsd(tmp_path, mount_torrent):
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 2 * 1024 * 1024 + 99, seed=14)
    torrent = tmp_path / "lsd.torrent"
    lt_create(payload, torrent, None, piece_size=64 * 1024)
    with cluster(2, "tflsd", subnet_prefix="10.233", bridge_prefix="tflsd",
                 multicast=True) as c:
        seeder_ip = c.hosts[1].ip
        with lt_seeder(torrent, data, ip=seeder_ip, lsd=True,
                       wrap=lambda argv: c.argv_in(1, argv)) as seeder:
            m = mount_torrent(torrent, "--lsd", wrap=lambda argv: c.argv_in(0, argv))
            found = f"local peer discovery: found peer {seeder_ip}:{seeder.port}"
            try:
                wait_until(lambda: found in m.log, timeout=30, interval=0.1)
            except TimeoutError:
                pytest.fail(f"no LSD announcement heard\n{m.log[-3000:]}\n{seeder.log()}")
            cmp_tree(payload, m.path / "payload", m)
            # And libtorrent heard our announcement (the other direction).
            port = re.search(r"mounted .* port (\d+)\)", m.log).group(1)
            heard = [ln for ln in seeder.log().splitlines()
                     if f"{c.hosts[0].ip}:{port}" in ln and "local service discovery" in ln]
            assert heard, seeder.log()
            assert m.unmount().returncode == 0
    got = re.findall(rf"<peer {re.escape(seeder_ip)}:\d+> closed: .* \(received (\d+) bytes",
                     m.log)
    assert got and sum(map(int, got)) >= 2 * 1024 * 1024, m.log[-3000:]


def test_mount_finds_a_libtorrent_seeder_by_lsd_over_ipv6(tmp_path, mount_torrent):
    """The same over IPv6 only: the seeder listens on its IPv6 address alone, and
    announces on ff15::efc0:988f; the mount hears it and reads over IPv6."""
    from tests.harness.netns import _ip
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 1024 * 1024 + 98, seed=15)
    torrent = tmp_path / "lsd6.torrent"
    lt_create(payload, torrent, None, piece_size=64 * 1024)
    with cluster(2, "tflsd6", subnet_prefix="10.233", bridge_prefix="tflsd6",
                 multicast=True) as c:
        ips = []
        for h in c.hosts:
            ip6 = str(ipaddress.ip_address(f"fd33:{c.subnet}::{10 + h.index}"))
            _ip("-n", h.ns, "addr", "add", f"{ip6}/64", "dev", h.ns_if, "nodad")
            ips.append(ip6)
        seeder_ip = ips[1]
        with lt_seeder(torrent, data, ip=seeder_ip, lsd=True,
                       wrap=lambda argv: c.argv_in(1, argv)) as seeder:
            m = mount_torrent(torrent, "--lsd", wrap=lambda argv: c.argv_in(0, argv))
            found = f"local peer discovery: found peer {seeder_ip}:{seeder.port}"
            try:
                wait_until(lambda: found in m.log, timeout=30, interval=0.1)
            except TimeoutError:
                pytest.fail(f"no LSD announcement heard\n{m.log[-3000:]}\n{seeder.log()}")
            cmp_tree(payload, m.path / "payload", m)
            # And libtorrent heard our IPv6 announcement (the other direction).
            port = re.search(r"mounted .* port (\d+)\)", m.log).group(1)
            assert f"[{ips[0]}]:{port}" in seeder.log() and \
                "received peer from local service discovery" in seeder.log(), seeder.log()
            assert m.unmount().returncode == 0
    got = re.findall(rf"<peer {re.escape(seeder_ip)}:\d+> closed: .* \(received (\d+) bytes",
                     m.log)
    assert got and sum(map(int, got)) >= 1024 * 1024, m.log[-3000:]
