"""The LSD shell on a fake multicast bus, on trio's autojump clock: two services find
each other (each ignores its own looped-back announcement), announce at start and
every 5 minutes, survive hostile datagrams, and a network without multicast only
turns LSD off. The real thing is tested against libtorrent in test_lsd_netns.py."""

from __future__ import annotations

import errno
import socket

import trio

from torrentfs.core.lsd import build_announce
from torrentfs.net.lsd import LsdService

IH = bytes(range(20))


class Bus:
    """Every datagram sent to the group reaches every member (the sender too, as
    multicast loopback does), from the sender's address."""

    def __init__(self):
        self.members: list[FakeSocket] = []
        self.sent: list[tuple[float, str, bytes]] = []

    def opener(self, ip: str, fail_v6: bool = True):
        async def open_socket(family):
            await trio.lowlevel.checkpoint()
            if family == socket.AF_INET6 and fail_v6:
                raise OSError(errno.ENODEV, "No such device")
            s = FakeSocket(self, ip)
            self.members.append(s)
            return s
        return open_socket

    def deliver(self, data: bytes, source: str) -> None:
        for m in self.members:
            if not m.closed:
                m.inbox_send.send_nowait((data, (source, 6771)))


class FakeSocket:
    def __init__(self, bus: Bus, ip: str):
        self.bus, self.ip, self.closed = bus, ip, False
        self.inbox_send, self.inbox = trio.open_memory_channel(1000)

    async def sendto(self, data, addr):
        await trio.lowlevel.checkpoint()
        assert addr == ("239.192.152.143", 6771)
        self.bus.sent.append((trio.current_time(), self.ip, data))
        self.bus.deliver(data, self.ip)

    async def recvfrom(self, n):
        return await self.inbox.receive()

    def close(self):
        self.closed = True


def service(bus, ip, port, found, info_hash=IH):
    return LsdService(info_hash, lambda: port, found.append, open_socket=bus.opener(ip))


async def test_two_services_find_each_other_and_not_themselves(autojump_clock):
    bus = Bus()
    found_a, found_b = [], []
    a = service(bus, "10.0.0.1", 6881, found_a)
    b = service(bus, "10.0.0.2", 7000, found_b)
    async with trio.open_nursery() as n:
        await n.start(b.run)
        await trio.sleep(1)  # b's first announcement is gone before a listens
        await n.start(a.run)
        await trio.sleep(1)
        assert found_b == [("10.0.0.1", 6881)] and found_a == []
        await trio.sleep(298.5)  # b's next one (at 300; a's is at 301)
        assert found_a == [("10.0.0.2", 7000)]
        n.cancel_scope.cancel()
    assert found_b == [("10.0.0.1", 6881)]  # a's own echoes and repeats added nothing
    assert [(round(t), ip) for t, ip, _ in bus.sent] == [
        (0, "10.0.0.2"), (1, "10.0.0.1"), (300, "10.0.0.2")]
    assert all(m.closed for m in bus.members)


async def test_announces_at_start_and_every_five_minutes(autojump_clock):
    bus = Bus()
    a = service(bus, "10.0.0.1", 6881, [])
    async with trio.open_nursery() as n:
        await n.start(a.run)
        await trio.sleep(1000)
        n.cancel_scope.cancel()
    assert [round(t) for t, _, _ in bus.sent] == [0, 300, 600, 900]
    assert b"Port: 6881\r\n" in bus.sent[0][2]
    assert (b"Infohash: " + IH.hex().encode()) in bus.sent[0][2]


async def test_hostile_datagrams_and_other_torrents_are_ignored(autojump_clock):
    bus = Bus()
    found = []
    a = service(bus, "10.0.0.1", 6881, found)
    async with trio.open_nursery() as n:
        await n.start(a.run)
        for junk in [b"", b"\xff" * 5000, b"BT-SEARCH * HTTP/1.1\r\nPort: x\r\n",
                     build_announce([bytes(20)], 9, "x")]:
            bus.deliver(junk, "10.6.6.6")
        for port in range(1000, 1100):  # a flood from one address: a few get through
            bus.deliver(build_announce([IH], port, "x"), "10.6.6.7")
        bus.deliver(build_announce([IH], 7001, "y"), "10.0.0.3")
        await trio.sleep(1)
        n.cancel_scope.cancel()
    assert found == [("10.6.6.7", p) for p in range(1000, 1004)] + [("10.0.0.3", 7001)]


async def test_no_multicast_turns_lsd_off_without_stopping_anything(autojump_clock):
    async def no_multicast(family):
        await trio.lowlevel.checkpoint()
        raise OSError(errno.ENODEV, "No such device")
    s = LsdService(IH, lambda: 6881, [].append, open_socket=no_multicast)
    with trio.fail_after(1):
        async with trio.open_nursery() as n:
            await n.start(s.run)  # returns at once: nothing to do


async def test_send_failure_is_not_fatal_and_port_zero_waits(autojump_clock):
    bus = Bus()
    port = {"n": 0}
    a = LsdService(IH, lambda: port["n"], [].append, open_socket=bus.opener("10.0.0.1"))

    async def unreachable(data, addr):
        await trio.lowlevel.checkpoint()
        raise OSError(errno.ENETUNREACH, "Network is unreachable")
    async with trio.open_nursery() as n:
        await n.start(a.run)
        await trio.sleep(5.5)
        assert bus.sent == []  # not listening yet: nothing announced
        bus.members[0].sendto = unreachable
        port["n"] = 6881
        await trio.sleep(2)
        del bus.members[0].sendto
        await trio.sleep(400)
        n.cancel_scope.cancel()
    # Port known at 5.5 s, seen at the next look (6 s); that announcement failed and
    # is tried again 2 s later (8 s), when the network is back; the next one is 5
    # minutes after that.
    assert [round(t) for t, _, _ in bus.sent] == [8, 308]


async def test_an_announcement_that_keeps_failing_is_tried_five_times_more(autojump_clock):
    # A daemon started with the network (a unit at boot) may find its address not
    # usable yet (IPv6 DAD): a failed announcement is tried again 2 s later, five
    # times at most, then the next waits the five minutes as usual.
    bus = Bus()
    port = {"n": 0}
    a = LsdService(IH, lambda: port["n"], [].append, open_socket=bus.opener("10.0.0.1"))
    tries = []

    async def unusable(data, addr):
        await trio.lowlevel.checkpoint()
        tries.append(round(trio.current_time()))
        raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
    async with trio.open_nursery() as n:
        await n.start(a.run)
        bus.members[0].sendto = unusable
        port["n"] = 6881
        await trio.sleep(100)
        del bus.members[0].sendto
        await trio.sleep(300)
        n.cancel_scope.cancel()
    # The first look at the port comes at 0 or 1 s: whether the service's task or
    # this one runs first after the start is trio's (it shuffles the order of tasks
    # woken together), so the times count from that first try.
    first = tries[0]
    assert first in (0, 1)
    assert [t - first for t in tries] == [0, 2, 4, 6, 8, 10]
    assert [round(t) - first for t, _, _ in bus.sent] == [310]


# -- LSD in a Torrent ------------------------------------------------------------------


async def test_torrent_adds_peers_lsd_finds_and_private_torrents_have_no_lsd(
        tmp_path, autojump_clock):
    from tests.harness.fakepeer import quiet, small_torrent
    from torrentfs.core.metainfo import parse
    from torrentfs.disk.create import create_torrent
    from torrentfs.engine.torrent import Torrent

    async def inline(fn, *args, limiter=None):
        return fn(*args)

    meta, _ = small_torrent(tmp_path, 40000)
    private = parse(create_torrent(tmp_path / "payload.bin", private=True))
    assert Torrent(private, tmp_path / "p", quiet(lsd=True)).lsd is None
    assert Torrent(meta, tmp_path / "n", quiet()).lsd is None
    t = Torrent(meta, tmp_path / "c", quiet(lsd=True), offload=inline)
    bus = Bus()
    t.lsd._open_socket = bus.opener("10.0.0.1")
    async with trio.open_nursery() as n:
        await n.start(t.run)
        bus.deliver(build_announce([meta.info_hash], 7777, "x"), "10.0.0.2")
        await trio.sleep(1)
        assert ("10.0.0.2", 7777) in t.candidates
        n.cancel_scope.cancel()


async def test_a_peer_heard_on_an_ipv6_link_local_address_keeps_its_zone(autojump_clock):
    """The socket reports a link-local sender's interface as the scope id, beside the
    address: the peer is handed on as ``fe80::...%<scope id>``, which TCP can dial
    (without the zone, connect fails with EINVAL). Other addresses stay as they are."""
    found = []

    class Heard(FakeSocket):
        def __init__(self, datagrams):
            self.closed, self.datagrams = False, list(datagrams)

        async def sendto(self, data, addr):
            await trio.lowlevel.checkpoint()

        async def recvfrom(self, n):
            if self.datagrams:
                return self.datagrams.pop(0)
            await trio.sleep_forever()

    by_family = {
        socket.AF_INET: Heard([(build_announce([IH], 6881, "a"), ("10.0.0.1", 6771))]),
        socket.AF_INET6: Heard([
            (build_announce([IH], 7000, "b", ipv6=True), ("fe80::1", 6771, 0, 3)),
            (build_announce([IH], 7001, "c", ipv6=True), ("2001:db8::2", 6771, 0, 0)),
        ]),
    }

    async def open_socket(family):
        await trio.lowlevel.checkpoint()
        return by_family[family]

    lsd = LsdService(IH, lambda: 6999, found.append, open_socket=open_socket)
    async with trio.open_nursery() as n:
        await n.start(lsd.run)
        await trio.sleep(1)
        n.cancel_scope.cancel()
    assert sorted(found) == [("10.0.0.1", 6881), ("2001:db8::2", 7001), ("fe80::1%3", 7000)]
