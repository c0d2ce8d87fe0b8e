"""Integration: a peer at an IPv6 link-local address with its zone (``fe80::...%N``,
how LSD hears a peer on the same link) is reached over TCP and over uTP.

``torrentfs seed`` runs in a network namespace of the test's own, linked to the root
namespace by a veth pair; each end has its link-local address. A Torrent in this
process, told of the seed only at its link-local address zoned by our end of the
veth, reads the whole payload once with uTP off (TCP: without the zone, connect
fails with EINVAL) and once with TCP off (uTP: the replies come back from the
zoned address, and must find their connection).
"""

from __future__ import annotations

import re
import socket
import subprocess

import pytest
import trio

from tests.harness.command import TORRENTFS
from tests.harness.fakepeer import inline
from tests.harness.netns import netns_host
from tests.harness.swarm import free_port, lt_create, stop_process, wait_until
from torrentfs.core.metainfo import parse
from torrentfs.engine.options import TorrentOptions
from torrentfs.engine.torrent import Torrent

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SIZE = 3 * 1024 * 1024 + 17


def link_local(run, dev: str) -> str | None:
    """The link-local address of ``dev`` once usable (duplicate detection over)."""
    out = run(["ip", "-6", "-o", "addr", "show", "dev", dev, "scope", "link"],
              capture_output=True, text=True, timeout=10).stdout
    m = re.search(r"inet6 (fe80:[\da-f:]+)/\d+ scope link(?! tentative)", out)
    return m.group(1) if m and "tentative" not in out else None


@pytest.fixture
def seed_on_link(tmp_path):
    """(meta, payload, zoned address) of a seed across a veth, at its link-local
    address zoned by our end of the veth."""
    data = tmp_path / "data"
    data.mkdir()
    payload = data / "blob.bin"
    payload.write_bytes(bytes(range(256)) * (SIZE // 256) + b"x" * (SIZE % 256))
    torrent = tmp_path / "t.torrent"
    lt_create(payload, torrent, None, piece_size=64 * 1024)
    meta = parse(torrent.read_bytes())
    with netns_host("hlsdll") as host:
        wait_until(lambda: link_local(host.run, host.ns_if), timeout=15, interval=0.1,
                   message="no link-local address in the namespace")
        ll = link_local(host.run, host.ns_if)
        port = free_port()
        log = tmp_path / "seed.log"
        with open(log, "wb") as err:
            proc = host.popen([TORRENTFS, "seed", str(torrent), str(data), "--port",
                               str(port), "--cache-dir", str(tmp_path / "seed-cache"),
                               "--no-lsd", "--no-dht", "--no-port-mapping"],
                              stdout=subprocess.DEVNULL, stderr=err,
                              stdin=subprocess.DEVNULL)
        try:
            wait_until(lambda: b"seeding " in log.read_bytes() or proc.poll() is not None,
                       timeout=60)
            assert proc.poll() is None, log.read_text()
            yield meta, payload.read_bytes(), (f"{ll}%{socket.if_nametoindex(host.host_if)}",
                                               port)
        finally:
            stop_process(proc)


@pytest.mark.parametrize("transport", ["tcp", "utp"])
async def test_a_zoned_link_local_peer_is_reached(tmp_path, seed_on_link, transport):
    meta, payload, addr = seed_on_link
    options = TorrentOptions(announce=False, peers=[addr], tcp=transport == "tcp",
                             utp=transport == "utp")
    with trio.fail_after(90):
        async with trio.open_nursery() as n:
            t = Torrent(meta, tmp_path / f"cache-{transport}", options, offload=inline)
            await n.start(t.run)
            assert await t.read(0, 0, len(payload)) == payload
            [s] = [s for s in t.sessions.values() if s.registered]
            assert s.addr == addr and s.transport == transport
            n.cancel_scope.cancel()
