"""The DHT shell on real loopback UDP: nodes of ours bootstrap from each other, announce,
find each other's peers; hostile datagrams, bad tokens, floods; saved state."""

from __future__ import annotations

import contextlib
import os
import socket
import stat

import pytest
import trio

from torrentfs.core.dht import krpc
from torrentfs.net.dht import DHT, QUERY_BURST, keep_torrent_found

IH = bytes(range(20))


@contextlib.asynccontextmanager
async def nodes(n: int, tmp_path=None):
    """``n`` DHT nodes on 127.0.0.1: the first alone, the others bootstrapping from it."""
    async with trio.open_nursery() as nursery:
        first = DHT(host="127.0.0.1", bootstrap=[])
        await nursery.start(first.run)
        out = [first]
        for i in range(1, n):
            d = DHT(host="127.0.0.1", bootstrap=[("127.0.0.1", first.port)],
                    state_path=tmp_path / f"n{i}" / "dht.state" if tmp_path else None)
            await nursery.start(d.run)
            out.append(d)
        with trio.fail_after(10):
            for d in out:
                await d.bootstrapped.wait()
        yield out
        nursery.cancel_scope.cancel()


async def collect(d: DHT, info_hash: bytes, announce_port=None) -> list:
    with trio.fail_after(10):
        async with contextlib.aclosing(d.get_peers(info_hash, announce_port=announce_port)) as it:
            return [a async for a in it]


async def test_bootstrap_announce_and_find():
    async with nodes(4) as (a, b, c, d):
        assert all(len(x.table) >= 1 for x in (b, c, d))
        assert len(a.table) >= 1  # it pinged those that queried it, and they answered
        assert await collect(b, IH, announce_port=4321) == []
        with trio.fail_after(5):
            while not any(x.store.get(IH, trio.current_time()) for x in (a, c, d)):
                await trio.sleep(0.01)
        assert await collect(d, IH) == [("127.0.0.1", 4321)]
        # A node that never bootstrapped from anyone finds nothing and ends at once.
        lone = DHT(host="127.0.0.1", bootstrap=[])
        async with trio.open_nursery() as n:
            await n.start(lone.run)
            assert await collect(lone, IH) == []
            n.cancel_scope.cancel()


async def test_keep_torrent_found_feeds_add_peer():
    async with nodes(3) as (a, b, c):
        b.store.announce(IH, ("127.0.0.9", 999), trio.current_time())
        found = []
        async with trio.open_nursery() as n:
            n.start_soon(lambda: keep_torrent_found(c, IH, port=lambda: 5555,
                                                    add_peer=found.append, peer_count=lambda: 0))
            with trio.fail_after(10):
                while not found:
                    await trio.sleep(0.01)
            n.cancel_scope.cancel()
        assert found == [("127.0.0.9", 999)]


async def query(sock, port: int, data: bytes, timeout: float = 2.0):
    """Send one datagram; the answer to it (the node's own queries to us, pings to
    verify us, are skipped)."""
    tid = krpc.decode(data).tid
    await sock.sendto(data, ("127.0.0.1", port))
    with trio.move_on_after(timeout):
        while True:
            msg = krpc.decode((await sock.recvfrom(9000))[0])
            if msg.tid == tid and not isinstance(msg, krpc.Query):
                return msg
    return None


async def test_answers_queries_and_refuses_bad_tokens_and_garbage():
    async with nodes(1) as (a,):
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await sock.bind(("127.0.0.1", 0))
        me = b"q" * 20
        for junk in (b"", b"garbage", b"d1:t2:aa1:y1:qe", b"d" * 5000, os.urandom(1400)):
            await sock.sendto(junk, ("127.0.0.1", a.port))
        r = await query(sock, a.port, krpc.encode(krpc.Ping(b"p1", me)))
        assert r.id == a.node_id  # still alive after the junk
        assert r.ip == sock.getsockname()  # BEP 42: how it sees us
        r = await query(sock, a.port, krpc.encode(krpc.GetPeers(b"g1", me, IH)))
        assert isinstance(r, krpc.Response) and r.token and r.values == ()
        bad = await query(sock, a.port, krpc.encode(
            krpc.AnnouncePeer(b"a1", me, IH, 7777, b"forged!!")))
        assert isinstance(bad, krpc.Error) and bad.code == krpc.PROTOCOL_ERROR
        ok = await query(sock, a.port, krpc.encode(
            krpc.AnnouncePeer(b"a2", me, IH, 7777, r.token)))
        assert isinstance(ok, krpc.Response) and ok.id == a.node_id
        r = await query(sock, a.port, krpc.encode(krpc.GetPeers(b"g2", me, IH)))
        assert r.values == (("127.0.0.1", 7777),)
        r = await query(sock, a.port, krpc.encode(krpc.UnknownQuery(b"u", me, b"vote")))
        assert isinstance(r, krpc.Error) and r.code == krpc.METHOD_UNKNOWN
        # Answers to queries it never sent are ignored: we never answered its pings,
        # so we are not in its table.
        await sock.sendto(krpc.encode(krpc.Response(b"zz", me)), ("127.0.0.1", a.port))
        await query(sock, a.port, krpc.encode(krpc.Ping(b"p2", me)))
        assert len(a.table) == 0


async def test_flood_from_one_ip_is_cut_to_the_burst():
    async with nodes(1) as (a,):
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await sock.bind(("127.0.0.1", 0))
        for i in range(200):
            await sock.sendto(krpc.encode(krpc.Ping(i.to_bytes(2, "big"), b"f" * 20)),
                              ("127.0.0.1", a.port))
        answers = pings = 0
        while True:
            with trio.move_on_after(0.5):
                msg = krpc.decode((await sock.recvfrom(9000))[0])
                if isinstance(msg, krpc.Query):
                    pings += 1
                else:
                    answers += 1
                continue
            break
        assert QUERY_BURST <= answers < QUERY_BURST + 20, answers
        assert pings == 1  # it checks whether we answer once, not once per query
        assert a.queries_dropped >= 200 - answers - 1


async def test_state_saved_0600_and_reused(tmp_path):
    path = tmp_path / "n1" / "dht.state"
    async with nodes(3, tmp_path) as (a, b, c):
        first_id = b.node_id
        # A second node on the same state file while b runs gets a fresh id.
        other = DHT(host="127.0.0.1", bootstrap=[], state_path=path)
        async with trio.open_nursery() as n:
            await n.start(other.run)
            assert other.node_id != first_id
            n.cancel_scope.cancel()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    state = krpc.bdecode(path.read_bytes())
    assert state[b"id"] == first_id
    saved = krpc.unpack_nodes(state[b"nodes"])
    assert {n.id for n in saved} & {a.node_id, c.node_id}
    # Restarted with no bootstrap nodes at all: the same id, and it finds its way back
    # through the saved nodes (a is gone now, so this only checks the seeds are used).
    again = DHT(host="127.0.0.1", bootstrap=[], state_path=path)
    async with trio.open_nursery() as n:
        await n.start(again.run)
        assert again.node_id == first_id
        assert {x.id for x in again._saved_nodes} == {x.id for x in saved}
        n.cancel_scope.cancel()


async def test_port_in_use_raises():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        d = DHT(host="127.0.0.1", port=s.getsockname()[1], bootstrap=[])
        async with trio.open_nursery() as n:
            with pytest.raises(OSError):
                await n.start(d.run)


class ScriptedDHT:
    """Stands in for DHT in keep_torrent_found: records when each lookup ran."""

    def __init__(self, peers):
        self.bootstrapped = trio.Event()
        self.bootstrapped.set()
        self.peers = peers
        self.calls: list[tuple[float, int | None]] = []

    async def get_peers(self, info_hash, *, announce_port=None):
        self.calls.append((trio.current_time(), announce_port))
        for p in self.peers:
            yield p


async def test_lookup_schedule_follows_the_peer_count(autojump_clock):
    d = ScriptedDHT([("10.0.0.1", 1), ("10.0.0.2", 2)])
    count = 0
    found = []
    async with trio.open_nursery() as n:
        n.start_soon(lambda: keep_torrent_found(d, IH, port=lambda: 6000,
                                                add_peer=found.append,
                                                peer_count=lambda: count))
        await trio.sleep(31)       # no peers: every 15 s
        count = 3
        await trio.sleep(60)       # a few: every minute
        count = 50
        await trio.sleep(400)      # plenty: every 5 minutes
        n.cancel_scope.cancel()
    t0 = d.calls[0][0]
    assert [round(t - t0) for t, _ in d.calls] == [0, 15, 30, 45, 105, 405]
    assert all(port == 6000 for _, port in d.calls)
    assert found[:2] == [("10.0.0.1", 1), ("10.0.0.2", 2)] and len(found) == 12


async def test_ipv6_nodes_find_each_other_and_a_pair_feeds_add_peer(tmp_path):
    """BEP 32: nodes on ::1 bootstrap, answer with nodes6, announce and find IPv6
    peers; keep_torrent_found on a DhtPair uses both nodes; state keeps IPv6 nodes."""
    from torrentfs.net.dht import DhtPair
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()
    except OSError:
        pytest.skip("no IPv6")
    async with trio.open_nursery() as nursery:
        first = DHT(host="::1", bootstrap=[])
        await nursery.start(first.run)
        out = [first]
        for i in range(1, 4):
            d = DHT(host="::1", bootstrap=[("::1", first.port)],
                    state_path=tmp_path / f"n{i}" / "dht6.state")
            await nursery.start(d.run)
            out.append(d)
        with trio.fail_after(10):
            for d in out:
                await d.bootstrapped.wait()
        a, b, c, d = out
        assert all(len(x.table) >= 1 for x in out)
        assert await collect(b, IH, announce_port=4321) == []
        with trio.fail_after(5):
            while not any(x.store.get(IH, trio.current_time()) for x in (a, c, d)):
                await trio.sleep(0.01)
        assert await collect(d, IH) == [("::1", 4321)]
        # An IPv4 node beside c: the pair finds the IPv6 peer through c.
        v4 = DHT(host="127.0.0.1", bootstrap=[])
        await nursery.start(v4.run)
        found = []
        async with trio.open_nursery() as n:
            n.start_soon(lambda: keep_torrent_found(DhtPair(v4, c), IH, port=lambda: 5555,
                                                    add_peer=found.append,
                                                    peer_count=lambda: 0))
            with trio.fail_after(10):
                while ("::1", 4321) not in found:
                    await trio.sleep(0.01)
            n.cancel_scope.cancel()
        nursery.cancel_scope.cancel()
    state = krpc.bdecode((tmp_path / "n1" / "dht6.state").read_bytes())
    saved = krpc.unpack_nodes(state[b"nodes"], v6=True)
    assert saved and all(n.addr[0] == "::1" for n in saved)


async def test_bep32_want_is_answered_from_each_familys_table():
    """A pair's IPv4 node, asked over IPv4 with want n4+n6, answers nodes and
    nodes6 (the latter from its IPv6 sibling's table); asked n6 alone, nodes6 alone;
    asked nothing, nodes alone. A lone IPv4 node asked n6 has none to give."""
    from torrentfs.net.dht import DhtPair
    async with trio.open_nursery() as nursery:
        boot4 = DHT(host="127.0.0.1", bootstrap=[])
        boot6 = DHT(host="::1", bootstrap=[])
        await nursery.start(boot4.run)
        await nursery.start(boot6.run)
        v4 = DHT(host="127.0.0.1", bootstrap=[("127.0.0.1", boot4.port)])
        v6 = DHT(host="::1", bootstrap=[("::1", boot6.port)])
        pair = DhtPair(v4, v6)
        assert v4.want == v6.want == frozenset({"n4", "n6"}) and boot4.want == frozenset()
        await nursery.start(v4.run)
        await nursery.start(v6.run)
        with trio.fail_after(10):
            await v4.bootstrapped.wait()
            await v6.bootstrapped.wait()
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        await sock.bind(("127.0.0.1", 0))
        me = b"q" * 20
        both = frozenset({"n4", "n6"})
        r = await query(sock, pair.port, krpc.encode(krpc.FindNode(b"f1", me, IH, want=both)))
        assert [n.addr for n in r.nodes] == [("127.0.0.1", boot4.port)]
        assert [n.addr for n in r.nodes6] == [("::1", boot6.port)]
        r = await query(sock, pair.port, krpc.encode(
            krpc.GetPeers(b"g1", me, IH, want=frozenset({"n6"}))))
        assert r.nodes == () and [n.addr for n in r.nodes6] == [("::1", boot6.port)]
        assert r.token
        r = await query(sock, pair.port, krpc.encode(krpc.FindNode(b"f2", me, IH)))
        assert [n.addr for n in r.nodes] == [("127.0.0.1", boot4.port)] and r.nodes6 == ()
        r = await query(sock, boot4.port, krpc.encode(krpc.FindNode(b"f3", me, IH, want=both)))
        assert [n.addr for n in r.nodes] == [("127.0.0.1", v4.port)] and r.nodes6 == ()
        nursery.cancel_scope.cancel()


async def test_bep32_a_pair_learns_ipv6_nodes_through_ipv4():
    """The pair's IPv6 node knows nobody; its IPv4 node bootstraps from a dual node
    (an IPv4 node whose sibling knows an IPv6 node): the nodes6 in the answers to
    its want n4+n6 are pinged by the IPv6 node, which so fills its table."""
    from torrentfs.net.dht import DhtPair
    async with trio.open_nursery() as nursery:
        far6 = DHT(host="::1", bootstrap=[])
        await nursery.start(far6.run)
        dual4 = DHT(host="127.0.0.1", bootstrap=[])
        dual6 = DHT(host="::1", bootstrap=[("::1", far6.port)])
        DhtPair(dual4, dual6)
        await nursery.start(dual4.run)
        await nursery.start(dual6.run)
        with trio.fail_after(10):
            await dual6.bootstrapped.wait()
        v4 = DHT(host="127.0.0.1", bootstrap=[("127.0.0.1", dual4.port)])
        v6 = DHT(host="::1", bootstrap=[])
        DhtPair(v4, v6)
        await nursery.start(v4.run)
        await nursery.start(v6.run)
        with trio.fail_after(10):
            await v4.bootstrapped.wait()
            while not len(v6.table):
                await trio.sleep(0.01)
        assert {n.addr for n in v6.table.closest(IH, 8)} <= {("::1", far6.port),
                                                             ("::1", dual6.port)}
        nursery.cancel_scope.cancel()
