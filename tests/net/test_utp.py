"""uTP over real UDP sockets on loopback: two ``UtpSocket``s, streams both ways, the
DHT's datagrams told apart on the same socket, RESET for unknown connections."""

import os
import socket

import pytest
import trio

from torrentfs.core import utp
from torrentfs.net.utp import UtpSocket, UtpStream, plain_addr, socket_addr


async def _pair(nursery, accept):
    server = UtpSocket(host="127.0.0.1", accept=accept)
    client = UtpSocket(host="127.0.0.1")
    await nursery.start(server.run)
    await nursery.start(client.run)
    return server, client


async def _read_all(stream, n):
    got = bytearray()
    while len(got) < n:
        chunk = await stream.receive_some(1 << 16)
        if not chunk:
            break
        got += chunk
    return bytes(got)


async def test_streams_both_ways_and_clean_close():
    up, down = os.urandom(3_000_000), os.urandom(200_000)
    received = {}

    async def accept(stream: UtpStream, addr):
        async with trio.open_nursery() as n:
            n.start_soon(stream.send_all, down)
            received["server"] = await _read_all(stream, len(up))
        assert await stream.receive_some(10) == b""   # the client's FIN

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server, client = await _pair(nursery, accept)
            stream = await client.connect(("127.0.0.1", server.port))
            async with trio.open_nursery() as n:
                n.start_soon(stream.send_all, up)
                received["client"] = await _read_all(stream, len(down))
            await stream.aclose()
            while server.connections or client.connections:
                await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    assert received["server"] == up and received["client"] == down


async def test_dht_datagrams_go_to_other_and_unknown_ids_get_reset():
    other = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = UtpSocket(host="127.0.0.1")
            await nursery.start(server.run)
            server.other = lambda data, addr: other.append(data)
            sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            await sock.bind(("127.0.0.1", 0))
            await sock.sendto(b"d1:ad2:id20:aaaaaaaaaaaaaaaaaaaae1:q4:ping1:t2:aa1:y1:qe",
                              ("127.0.0.1", server.port))
            await sock.sendto(utp.encode(utp.Packet(utp.ST_DATA, 77, 5, 6, 1000, 0, 0, None,
                                                    b"x")), ("127.0.0.1", server.port))
            data, _ = await sock.recvfrom(2000)
            p = utp.decode(data)
            assert p.type == utp.ST_RESET and p.conn_id == 77 and p.ack == 5
            assert other and other[0].startswith(b"d1:a")
            nursery.cancel_scope.cancel()


async def test_connect_to_nobody_fails_within_the_timeout():
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            client = UtpSocket(host="127.0.0.1")
            await nursery.start(client.run)
            silent = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            await silent.bind(("127.0.0.1", 0))
            with pytest.raises(OSError, match="timed out"):
                await client.connect(silent.getsockname(), timeout=1.0)
            assert client.connections == 0
            nursery.cancel_scope.cancel()


async def test_a_zone_given_by_name_is_keyed_by_index():
    """A peer given as fe80::1%lo is dialed as fe80::1%<index of lo>: its replies
    come from the address the socket reports, zoned by index, and must find their
    connection. An unknown interface fails the connect at once."""
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            client = UtpSocket(host="::1")
            await nursery.start(client.run)

            async def dial():
                with pytest.raises(OSError):
                    await client.connect(("fe80::1%lo", 6881), timeout=0.5)
            nursery.start_soon(dial)
            await trio.sleep(0.1)
            assert {a for a, _ in client._conns} == {
                (f"fe80::1%{socket.if_nametoindex('lo')}", 6881)}
            with pytest.raises(OSError):
                await client.connect(("fe80::1%no-such-if", 6881), timeout=0.5)
            await trio.sleep(1)
            nursery.cancel_scope.cancel()


async def test_dht_and_utp_share_one_udp_port():
    """A DHT node over uTP's socket bootstraps from a plain DHT node and is found by
    it, while a uTP stream runs on the same port."""
    from torrentfs.net.dht import DHT
    got = {}

    async def accept(stream, addr):
        got["data"] = await _read_all(stream, 5)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            shared = UtpSocket(host="127.0.0.1", accept=accept)
            await nursery.start(shared.run)
            plain = DHT(host="127.0.0.1", bootstrap=[])
            await nursery.start(plain.run)
            node = DHT(bootstrap=[("127.0.0.1", plain.port)], transport=shared)
            await nursery.start(node.run)
            assert node.port == shared.port
            await node.bootstrapped.wait()
            assert len(node.table) >= 1 and len(plain.table) >= 1
            client = UtpSocket(host="127.0.0.1")
            await nursery.start(client.run)
            stream = await client.connect(("127.0.0.1", shared.port))
            await stream.send_all(b"hello")
            await stream.aclose()
            while "data" not in got:
                await trio.sleep(0.01)
            assert got["data"] == b"hello"
            nursery.cancel_scope.cancel()


async def test_utp_over_ipv6_loopback():
    got = {}

    async def accept(stream, addr):
        got["addr"] = addr
        got["data"] = await _read_all(stream, 100_000)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = UtpSocket(host="::1", accept=accept)
            client = UtpSocket(host="::1")
            await nursery.start(server.run)
            await nursery.start(client.run)
            stream = await client.connect(("::1", server.port))
            data = os.urandom(100_000)
            await stream.send_all(data)
            await stream.aclose()
            while "data" not in got:
                await trio.sleep(0.01)
            assert got["data"] == data and got["addr"][0] == "::1"
            nursery.cancel_scope.cancel()


async def test_a_socket_with_no_host_is_dual_stack():
    """No host: one socket takes IPv4 and IPv6 peers (as the TCP listeners do); the
    IPv4 peer's address is plain IPv4, not ::ffff:-mapped, and the socket dials both
    families."""
    got = []

    async def accept(stream, addr):
        got.append((addr, await _read_all(stream, 5)))

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            server = UtpSocket(accept=accept)
            await nursery.start(server.run)
            assert server.dual and server.serves(True) and server.serves(False)
            for host in ("127.0.0.1", "::1"):
                client = UtpSocket(host=host)
                await nursery.start(client.run)
                stream = await client.connect((host, server.port))
                await stream.send_all(host.encode()[:5])
                await stream.aclose()
            while len(got) < 2:
                await trio.sleep(0.01)
            assert sorted(a[0] for a, _ in got) == ["127.0.0.1", "::1"]
            assert all(data == a[0].encode()[:5] for a, data in got)
            # ... and it dials out to both families
            for host in ("127.0.0.1", "::1"):
                peer = UtpSocket(host=host, accept=accept)
                await nursery.start(peer.run)
                stream = await server.connect((host, peer.port))
                await stream.send_all(b"back!")
                await stream.aclose()
            while len(got) < 4:
                await trio.sleep(0.01)
            assert [d for _, d in got[2:]] == [b"back!", b"back!"]
            nursery.cancel_scope.cancel()


async def test_a_named_ipv4_host_cannot_dial_ipv6():
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            client = UtpSocket(host="127.0.0.1")
            await nursery.start(client.run)
            assert not client.dual and not client.serves(True)
            with pytest.raises(OSError, match="address family"):
                await client.connect(("::1", 9))
            nursery.cancel_scope.cancel()


async def test_ipv4_and_ipv6_dht_nodes_share_one_dual_stack_socket():
    """Both DHT nodes (BEP 32) over the one dual-stack uTP socket: each bootstraps
    from a plain node of its family through it, and each hears only its family."""
    from torrentfs.net.dht import DHT
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            shared = UtpSocket()
            await nursery.start(shared.run)
            plain4 = DHT(host="127.0.0.1", bootstrap=[])
            plain6 = DHT(host="::1", bootstrap=[])
            await nursery.start(plain4.run)
            await nursery.start(plain6.run)
            node4 = DHT(bootstrap=[("127.0.0.1", plain4.port)], transport=shared)
            node6 = DHT(host="::", bootstrap=[("::1", plain6.port)], transport=shared)
            await nursery.start(node4.run)
            await nursery.start(node6.run)
            assert node4.port == node6.port == shared.port
            await node4.bootstrapped.wait()
            await node6.bootstrapped.wait()
            assert [n.addr for n in node4.table.closest(plain4.node_id, 8)] == \
                [("127.0.0.1", plain4.port)]
            assert [n.addr for n in node6.table.closest(plain6.node_id, 8)] == \
                [("::1", plain6.port)]
            assert [n.addr for n in plain4.table.closest(node4.node_id, 8)] == \
                [("127.0.0.1", shared.port)]
            assert [n.addr for n in plain6.table.closest(node6.node_id, 8)] == \
                [("::1", shared.port)]
            nursery.cancel_scope.cancel()


async def test_an_ipv6_dht_node_refuses_an_ipv4_only_socket():
    from torrentfs.net.dht import DHT
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            shared = UtpSocket(host="127.0.0.1")
            await nursery.start(shared.run)
            with pytest.raises(OSError, match="IPv6"):
                await nursery.start(DHT(host="::", bootstrap=[], transport=shared).run)
            nursery.cancel_scope.cancel()


async def test_no_timer_runs_without_connections():
    """An idle socket (no uTP connection) sets no timer: nothing wakes the daemon
    20 times a second for nothing (issue 13). A connection starts the timers; once
    it is gone they stop again."""
    async def accept(stream: UtpStream, addr):
        assert await stream.receive_some(10) == b"hi"

    def next_deadline() -> float:
        return trio.lowlevel.current_statistics().seconds_to_next_deadline

    with trio.fail_after(30) as bound:
        async with trio.open_nursery() as nursery:
            server, client = await _pair(nursery, accept)
            await trio.testing.wait_all_tasks_blocked()
            bound.deadline = float("inf")  # the bound itself is a deadline: lift it to look
            assert next_deadline() == float("inf")
            bound.deadline = trio.current_time() + 30
            stream = await client.connect(("127.0.0.1", server.port))
            await stream.send_all(b"hi")
            await stream.aclose()
            while server.connections or client.connections:
                await trio.sleep(0.05)
            await trio.sleep(2 * 0.05)  # the timers' last round sees none left
            await trio.testing.wait_all_tasks_blocked()
            bound.deadline = float("inf")
            assert next_deadline() == float("inf")
            nursery.cancel_scope.cancel()


def test_a_link_local_address_carries_its_zone_both_ways():
    """What recvfrom reports (the scope id beside the address) is keyed zoned, and a
    zoned address goes back to the socket with its scope id: the socket module
    ignores a zone written in the host string."""
    assert plain_addr(("fe80::1", 6881, 0, 2)) == ("fe80::1%2", 6881)
    assert plain_addr(("::ffff:10.0.0.1", 6881, 0, 0)) == ("10.0.0.1", 6881)
    assert plain_addr(("2001:db8::1", 6881, 0, 0)) == ("2001:db8::1", 6881)
    assert socket_addr(("fe80::1%2", 6881)) == ("fe80::1", 6881, 0, 2)
    assert socket_addr(("fe80::1%lo", 6881)) == ("fe80::1", 6881, 0, socket.if_nametoindex("lo"))
    assert socket_addr(("10.0.0.1", 6881)) == ("10.0.0.1", 6881)
