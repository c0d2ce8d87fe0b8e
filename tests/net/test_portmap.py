"""net/portmap.py against a scripted NAT-PMP gateway on loopback, on the autojump
clock: a mapping is made at start, renewed before it expires, removed on cancel;
no gateway at all costs one log line and a retry later, never an error.
(The real gateway, miniupnpd, is in tests/integration/test_portmap.py.)"""

from __future__ import annotations

import logging
import struct

import trio

from torrentfs.core import natpmp
from torrentfs.net.portmap import NATPMP_LIFETIME, PortMapper


async def fake_gateway(sock, seen: list, lifetime: int = NATPMP_LIFETIME) -> None:
    while True:
        data, addr = await sock.recvfrom(64)
        seen.append((trio.current_time(), data))
        if data == natpmp.external_address_request():
            await sock.sendto(struct.pack(">BBHI", 0, 128, 0, 1) + bytes([5, 6, 7, 8]), addr)
        else:
            _, op, _, internal, external, life = struct.unpack(">BBHHHI", data)
            await sock.sendto(struct.pack(">BBHIHHI", 0, 128 + op, 0, 1, internal,
                                          external and external + 1000, min(life, lifetime)),
                              addr)


async def test_natpmp_map_renew_delete(autojump_clock, caplog):
    caplog.set_level(logging.INFO, "torrentfs.portmap")
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))
    seen: list = []
    async with trio.open_nursery() as n:
        n.start_soon(fake_gateway, sock, seen, 600)
        pm = PortMapper([("TCP", 6881), ("UDP", 6882)], gateway="127.0.0.1",
                        natpmp_port=sock.getsockname()[1])
        inner = trio.CancelScope()

        async def run():
            with inner:
                await pm.run()
        n.start_soon(run)
        with trio.fail_after(10):
            await pm.mapped_event.wait()
        assert pm.method == "NAT-PMP" and pm.external_address == "5.6.7.8"
        assert [(m.protocol, m.internal, m.external, m.lifetime) for m in pm.mapped] == \
            [("TCP", 6881, 7881, 600), ("UDP", 6882, 7882, 600)]
        t0 = trio.current_time()
        assert len(seen) == 3
        await trio.sleep(400)  # renewed at half the lifetime granted (300 s)
        assert len(seen) == 6 and 290 < seen[3][0] - t0 < 310
        inner.cancel()
        await trio.sleep(5)
        deletes = [struct.unpack(">BBHHHI", d) for _, d in seen[6:]]
        assert [(op, internal, external, life) for _, op, _, internal, external, life
                in deletes] == [(natpmp.TCP, 6881, 0, 0), (natpmp.UDP, 6882, 0, 0)]
        n.cancel_scope.cancel()
    text = caplog.text
    assert text.count("port mapping (NAT-PMP, gateway 127.0.0.1): external address 5.6.7.8; "
                      "TCP 6881 -> 7881 for 600 s, UDP 6882 -> 7882 for 600 s") == 1
    assert "removed 2 mappings" in text


async def test_no_gateway_is_one_line_and_a_later_retry(autojump_clock, caplog):
    caplog.set_level(logging.INFO, "torrentfs.portmap")
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
    await sock.bind(("127.0.0.1", 0))  # bound, silent: NAT-PMP times out
    pm = PortMapper([("TCP", 6881)], gateway="127.0.0.1", natpmp_port=sock.getsockname()[1],
                    ssdp=("127.0.0.1", sock.getsockname()[1]))
    async with trio.open_nursery() as n:
        n.start_soon(pm.run)
        await trio.sleep(60)
        assert caplog.text.count("no NAT-PMP or UPnP gateway found") == 1
        assert pm.mapped == [] and pm.method is None
        n.cancel_scope.cancel()
