"""net/portmap.py against scripted NAT-PMP and PCP gateways on loopback, on the
autojump clock: a mapping is made at start, renewed before it expires, removed on
cancel; a NAT-PMP-only gateway's "unsupported version" to PCP sends us to NAT-PMP;
no gateway at all costs one log line and a retry later, never an error.
(The real gateway, miniupnpd, is in tests/integration/test_portmap.py.)"""

from __future__ import annotations

import contextlib
import logging
import struct

import trio

from torrentfs.core import natpmp, pcp
from torrentfs.net.portmap import NATPMP_LIFETIME, PortMapper


async def fake_gateway(sock, seen: list, lifetime: int = NATPMP_LIFETIME) -> None:
    """A NAT-PMP-only gateway: a PCP request gets "unsupported version" (RFC 6886
    3.5: version 0, result 1), as RFC 6887 expects of one."""
    while True:
        data, addr = await sock.recvfrom(1100)
        seen.append((trio.current_time(), data))
        if data[0] != 0:
            await sock.sendto(struct.pack(">BBHI", 0, 128 + (data[1] & 0x7F), 1, 1), addr)
        elif data == natpmp.external_address_request():
            await sock.sendto(struct.pack(">BBHI", 0, 128, 0, 1) + bytes([5, 6, 7, 8]), addr)
        else:
            _, op, _, internal, external, life = struct.unpack(">BBHHHI", data)
            await sock.sendto(struct.pack(">BBHIHHI", 0, 128 + op, 0, 1, internal,
                                          external and external + 1000, min(life, lifetime)),
                              addr)


@contextlib.asynccontextmanager
async def mapping(gateway):
    """A PortMapper for TCP 6881 and UDP 6882 against ``gateway`` (``fake_gateway``
    or ``fake_pcp_gateway``, granting at most 600 s) on a loopback socket, once its
    mappings are made: yields (the mapper, the datagrams the gateway got as (time,
    bytes), the cancel scope that stops the mapper). Everything stops on exit."""
    with trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM) as sock:
        await sock.bind(("127.0.0.1", 0))
        seen: list = []
        async with trio.open_nursery() as n:
            n.start_soon(gateway, sock, seen, 600)
            pm = PortMapper([("TCP", 6881), ("UDP", 6882)], gateway="127.0.0.1",
                            natpmp_port=sock.getsockname()[1])
            inner = trio.CancelScope()

            async def run():
                with inner:
                    await pm.run()
            n.start_soon(run)
            with trio.fail_after(10):
                await pm.mapped_event.wait()
            yield pm, seen, inner
            n.cancel_scope.cancel()


async def test_natpmp_map_renew_delete(autojump_clock, caplog):
    caplog.set_level(logging.INFO, "torrentfs.portmap")
    async with mapping(fake_gateway) as (pm, seen, inner):
        assert pm.method == "NAT-PMP" and pm.external_address == "5.6.7.8"
        assert [(m.protocol, m.internal, m.external, m.lifetime) for m in pm.mapped] == \
            [("TCP", 6881, 7881, 600), ("UDP", 6882, 7882, 600)]
        t0 = trio.current_time()
        # PCP first, once: refused at once, so NAT-PMP, and it sticks for renewals
        assert [d[0] for _, d in seen] == [2, 0, 0, 0]
        seen[:] = seen[1:]
        assert len(seen) == 3
        await trio.sleep(400)  # renewed at half the lifetime granted (300 s)
        assert len(seen) == 6 and 290 < seen[3][0] - t0 < 310
        inner.cancel()
        await trio.sleep(5)
        deletes = [struct.unpack(">BBHHHI", d) for _, d in seen[6:]]
        assert [(op, internal, external, life) for _, op, _, internal, external, life
                in deletes] == [(natpmp.TCP, 6881, 0, 0), (natpmp.UDP, 6882, 0, 0)]
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
        assert caplog.text.count("no PCP, NAT-PMP or UPnP gateway found") == 1
        assert pm.mapped == [] and pm.method is None
        n.cancel_scope.cancel()


async def fake_pcp_gateway(sock, seen: list, lifetime: int) -> None:
    """A PCP gateway: grants the port asked + 1000 on 5.6.7.8, for at most ``lifetime``."""
    while True:
        data, addr = await sock.recvfrom(1100)
        seen.append((trio.current_time(), data))
        life = min(struct.unpack(">I", data[4:8])[0], lifetime)
        internal = struct.unpack(">H", data[40:42])[0]
        await sock.sendto(struct.pack(">BBBBII12s", 2, 129, 0, 0, life, 1, bytes(12))
                          + data[24:40] + struct.pack(">HH", internal, internal + 1000)
                          + bytes(10) + b"\xff\xff" + bytes([5, 6, 7, 8]), addr)


async def test_pcp_map_renew_delete_with_one_nonce_per_mapping(autojump_clock, caplog):
    caplog.set_level(logging.INFO, "torrentfs.portmap")
    async with mapping(fake_pcp_gateway) as (pm, seen, inner):
        assert pm.method == "PCP" and pm.external_address == "5.6.7.8"
        assert [(m.protocol, m.internal, m.external, m.lifetime) for m in pm.mapped] == \
            [("TCP", 6881, 7881, 600), ("UDP", 6882, 7882, 600)]
        t0 = trio.current_time()
        assert len(seen) == 2
        await trio.sleep(400)  # renewed at half the lifetime granted (300 s)
        assert len(seen) == 4 and 290 < seen[2][0] - t0 < 310
        inner.cancel()
        await trio.sleep(5)
        assert len(seen) == 6
    fields = [(d[0], d[1], struct.unpack(">I", d[4:8])[0], d[24:36], d[36],
               struct.unpack(">HH", d[40:44])) for _, d in seen]
    tcp_nonce, udp_nonce = fields[0][3], fields[1][3]
    assert tcp_nonce != udp_nonce
    assert fields == [
        (2, 1, NATPMP_LIFETIME, tcp_nonce, pcp.TCP, (6881, 6881)),
        (2, 1, NATPMP_LIFETIME, udp_nonce, pcp.UDP, (6882, 6882)),
        (2, 1, NATPMP_LIFETIME, tcp_nonce, pcp.TCP, (6881, 6881)),   # renewals
        (2, 1, NATPMP_LIFETIME, udp_nonce, pcp.UDP, (6882, 6882)),
        (2, 1, 0, tcp_nonce, pcp.TCP, (6881, 0)),                    # deletions
        (2, 1, 0, udp_nonce, pcp.UDP, (6882, 0))]
    assert all(d[8:24] == bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1]) for _, d in seen)
    text = caplog.text
    assert text.count("port mapping (PCP, gateway 127.0.0.1): external address 5.6.7.8; "
                      "TCP 6881 -> 7881 for 600 s, UDP 6882 -> 7882 for 600 s") == 1
    assert "removed 2 mappings" in text
