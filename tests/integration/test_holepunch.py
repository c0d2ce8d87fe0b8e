"""Integration: BEP 55 holepunch with libtorrent as the relay.

The target, a uTP-only libtorrent seeder, runs in a network namespace behind a
stateful firewall (nftables: replies and what it asked for pass, nothing unasked
comes in), as a NAT's would be; it connects out to the relay, a uTP-only libtorrent
leecher on the host held to 2 kB/s (so it has next to nothing to give: no piece
of 64 KiB within the test) with no PEX (so the target hears of us from the relay's
connect alone). The mount is told of both: it reaches the relay, cannot dial the
target (TCP and uTP SYNs dropped), asks the relay for a rendezvous; libtorrent
sends connect to both sides, both dial over uTP at once, the firewall lets the
target's packets in once it has sent to us, and the mount reads everything,
nearly all of it from the target.

What this proves: our ut_holepunch messages and libtorrent's interoperate (libtorrent
relays for us, and we act on its connect), and a peer that accepts no incoming
connection is reached. What it does not: a real NAT's address and port rewriting
(this firewall keeps addresses)."""

from __future__ import annotations

import re

import pytest

from tests.harness.netns import netns_host
from tests.harness.payload import cmp_tree, make_payload
from tests.harness.swarm import lt_create, lt_leeching, lt_seeder

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

FIREWALL = """\
table inet i15nfw {
  chain input { type filter hook input priority 0; policy drop;
                iif lo accept; ct state established,related accept; }
}
"""


def test_mount_reaches_a_firewalled_libtorrent_seeder_through_a_libtorrent_relay(
        tmp_path, mount_torrent):
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 1024 * 1024 + 55, seed=55)
    torrent = tmp_path / "t.torrent"
    lt_create(payload, torrent, None, piece_size=64 * 1024)
    rules = tmp_path / "firewall.nft"
    rules.write_text(FIREWALL)
    with netns_host("i15n") as host:
        r = host.run(["nft", "-f", str(rules)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        with lt_leeching(torrent, tmp_path / "relay", ip=host.host_ip, peers=[],
                         download_rate=2000, utp=True, tcp=False, pex=False,
                         workdir=tmp_path) as relay:
            with lt_seeder(torrent, data, ip=host.ns_ip, utp=True, tcp=False,
                           peers=[relay.endpoint], wrap=host.argv,
                           workdir=tmp_path) as target:
                m = mount_torrent(torrent, "--peer", relay.endpoint,
                                  "--peer", target.endpoint)
                cmp_tree(payload, m.path / "payload", m)
                assert m.unmount().returncode == 0
    log = m.log
    assert f"asks us to connect to {target.ip}:{target.port}" in log, log[-4000:]
    got = {ip: int(n) for ip, n in re.findall(
        r"<peer ([\d.]+):\d+> closed: .* \(received (\d+) bytes", log)}
    assert got.get(target.ip, 0) >= 1024 * 1024 - 2 * 64 * 1024, log[-4000:]
    assert "holepunch: connected to" in log or f"<peer {target.ip}:{target.port}> over uTP " \
        "(incoming)" in log, log[-4000:]
