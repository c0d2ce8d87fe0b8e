"""The UDP tracker client and the announcer over it, against fake BEP 15 trackers on a
fake datagram network, on trio's autojump clock: retries at 15 * 2^n s, connection
ids reused for a minute, trackers that never answer or answer garbage, tiers. One
test uses real UDP sockets on loopback. The fake trackers decode requests with
struct here, not with the code under test."""

from __future__ import annotations

import socket
import struct

import pytest
import trio

from torrentfs.core.announce import AnnounceRequest, AnnounceResponse, TrackerError
from torrentfs.core.udptracker import PROTOCOL_ID, ScrapeStats
from torrentfs.net import tracker
from torrentfs.net.udpclient import UdpTrackerClient

INFO_HASH = bytes(range(20))
PEER_ID = b"-TF0100-" + b"p" * 12
EVENTS = {0: "", 1: "completed", 2: "started", 3: "stopped"}


def v4(host: str, port: int) -> bytes:
    return socket.inet_aton(host) + struct.pack(">H", port)


def v6(host: str, port: int) -> bytes:
    return socket.inet_pton(socket.AF_INET6, host) + struct.pack(">H", port)


class FakeUdpTracker:
    """A BEP 15 tracker as a function of one datagram. ``mode``: 'ok', 'silent'
    (never answers), 'garbage' (answers noise that echoes no transaction id),
    'junk' (echoes the transaction id, then nonsense), 'error' (action 3).
    ``drop`` datagrams are ignored first. Records what it heard."""

    def __init__(self, mode="ok", peers=b"", drop=0, interval=1800):
        self.mode, self.peers, self.drop, self.interval = mode, peers, drop, interval
        self.heard: list[tuple[float, str]] = []  # (time, 'connect'|'announce'|'scrape')
        self.announces: list[dict] = []
        self.conn_ids: set[int] = set()
        self._next_id = 0x1000

    def handle(self, data: bytes) -> bytes | None:
        conn, action, tid = struct.unpack_from(">QII", data)
        self.heard.append((trio.current_time(), ["connect", "announce", "scrape"][action]))
        if self.drop:
            self.drop -= 1
            return None
        if self.mode == "silent":
            return None
        if self.mode == "garbage":
            return b"\xff" * 3 if len(self.heard) % 2 else b"HTTP/1.0 400 Bad Request\r\n"
        if self.mode == "junk":
            return struct.pack(">II", 1, tid) + b"\x00" * 5
        if self.mode == "error":
            return struct.pack(">II", 3, tid) + b"torrent not registered"
        if action == 0:
            assert conn == PROTOCOL_ID and len(data) == 16
            self._next_id += 1
            self.conn_ids.add(self._next_id)
            return struct.pack(">IIQ", 0, tid, self._next_id)
        if conn not in self.conn_ids:
            return struct.pack(">II", 3, tid) + b"bad connection id"
        if action == 1:
            assert len(data) == 98
            (info_hash, peer_id, downloaded, left, uploaded, event, ip, key, numwant,
             port) = struct.unpack_from(">20s20sQQQIIIiH", data, 16)
            self.announces.append(dict(info_hash=info_hash, peer_id=peer_id, left=left,
                                       uploaded=uploaded, downloaded=downloaded,
                                       event=EVENTS[event], ip=ip, key=key,
                                       numwant=numwant, port=port, conn=conn))
            return struct.pack(">IIiii", 1, tid, self.interval, 2, 1) + self.peers
        if action == 2:
            n = (len(data) - 16) // 20
            return struct.pack(">II", 2, tid) + struct.pack(">III", 4, 9, 1) * n
        return None


class FakeNet:
    """Datagrams between fake sockets and fake trackers by address, delivered at once."""

    def __init__(self, trackers: dict[tuple[str, int], FakeUdpTracker]):
        self.trackers = trackers
        self.opened: list[int] = []

    def open_socket(self, family: int) -> "FakeSocket":
        self.opened.append(family)
        return FakeSocket(self)

    async def resolve(self, host: str, port: int):
        if host == "nowhere.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if ":" in host:
            return [(socket.AF_INET6, (host, port, 0, 0))]
        return [(socket.AF_INET, (host, port))]


class FakeSocket:
    def __init__(self, net: FakeNet):
        self.net = net
        self.inbox_send, self.inbox = trio.open_memory_channel(100)
        self.closed = False

    async def bind(self, addr):
        await trio.lowlevel.checkpoint()

    async def sendto(self, data: bytes, addr):
        await trio.lowlevel.checkpoint()
        t = self.net.trackers.get((addr[0], addr[1]))
        if t is not None:
            reply = t.handle(data)
            if reply is not None:
                self.inbox_send.send_nowait((reply, addr))

    async def recvfrom(self, bufsize: int):
        return await self.inbox.receive()

    def close(self):
        self.closed = True


def req(event: str = "started", left: int = 100) -> AnnounceRequest:
    return AnnounceRequest(INFO_HASH, PEER_ID, 6881, 5, 6, left, event, key="0badf00d")


def client(net: FakeNet, **kw) -> UdpTrackerClient:
    return UdpTrackerClient(open_socket=net.open_socket, resolve=net.resolve, **kw)


URL = "udp://10.0.0.1:6969/announce"
ADDR = ("10.0.0.1", 6969)


async def test_announce_sends_bep15_fields_and_reuses_connection_id(autojump_clock):
    t = FakeUdpTracker(peers=v4("10.0.0.5", 7000) + v4("10.0.0.6", 7001))
    net = FakeNet({ADDR: t})
    async with client(net) as c:
        r = await c.announce(URL, req("started"))
        assert r.peers == (("10.0.0.5", 7000), ("10.0.0.6", 7001))
        assert (r.interval, r.complete, r.incomplete) == (1800, 1, 2)
        await trio.sleep(30)
        await c.announce(URL, req("completed", left=0))
        await trio.sleep(31)  # the id is now 61 s old: a new one is asked for
        await c.announce(URL, req("stopped", left=0))
    a = t.announces
    assert [x["event"] for x in a] == ["started", "completed", "stopped"]
    assert a[0] | {"conn": 0} == dict(info_hash=INFO_HASH, peer_id=PEER_ID, left=100,
                                      uploaded=5, downloaded=6, event="started", ip=0,
                                      key=0x0BADF00D, numwant=50, port=6881, conn=0)
    assert [(round(when), what) for when, what in t.heard] == [
        (0, "connect"), (0, "announce"), (30, "announce"), (61, "connect"), (61, "announce")]
    assert a[0]["conn"] == a[1]["conn"] != a[2]["conn"]
    assert net.opened == [socket.AF_INET]  # one socket for it all


async def test_lost_datagrams_are_sent_again_at_15_30_60_s(autojump_clock):
    t = FakeUdpTracker(drop=2)
    async with client(FakeNet({ADDR: t})) as c:
        await c.announce(URL, req())
    assert [(round(when), what) for when, what in t.heard] == [
        (0, "connect"), (15, "connect"), (45, "connect"), (45, "announce")]


async def test_tracker_that_never_answers_gives_up_after_the_retries(autojump_clock):
    t = FakeUdpTracker(mode="silent")
    async with client(FakeNet({ADDR: t})) as c:
        with pytest.raises(TrackerError, match="did not answer .3 tries over 105 s"):
            await c.announce(URL, req())
        assert round(trio.current_time()) == 105
    assert [round(when) for when, _ in t.heard] == [0, 15, 45]


async def test_retry_base_and_count_are_configurable(autojump_clock):
    t = FakeUdpTracker(mode="silent")
    async with client(FakeNet({ADDR: t}), retry_base=0.5, retries=3) as c:
        with pytest.raises(TrackerError):
            await c.announce(URL, req())
        assert trio.current_time() == pytest.approx(7.5)
    assert [when for when, _ in t.heard] == pytest.approx([0, 0.5, 1.5, 3.5])


async def test_connection_id_expires_between_resends(autojump_clock):
    """Announces lost for over a minute: the id is renewed before the next resend."""
    t = FakeUdpTracker()
    real = t.handle

    def announces_lost(data):
        reply = real(data)
        return None if reply[:4] == b"\x00\x00\x00\x01" else reply
    t.handle = announces_lost
    async with client(FakeNet({ADDR: t}), retries=3) as c:
        with pytest.raises(TrackerError):
            await c.announce(URL, req())
    assert [(round(when), what) for when, what in t.heard] == [
        (0, "connect"), (0, "announce"), (15, "announce"), (45, "announce"),
        (105, "connect"), (105, "announce")]


async def test_garbage_is_ignored_until_the_tracker_times_out(autojump_clock):
    t = FakeUdpTracker(mode="garbage")
    async with client(FakeNet({ADDR: t}), retry_base=1, retries=1) as c:
        with pytest.raises(TrackerError, match="did not answer"):
            await c.announce(URL, req())


async def test_answer_with_our_transaction_id_but_junk_fails_at_once(autojump_clock):
    t = FakeUdpTracker(mode="junk")
    async with client(FakeNet({ADDR: t})) as c:
        with pytest.raises(TrackerError, match="answered 'announce' to a 'connect'"):
            await c.announce(URL, req())
        assert trio.current_time() == 0


async def test_error_answer_fails_with_its_message(autojump_clock):
    async with client(FakeNet({ADDR: FakeUdpTracker(mode="error")})) as c:
        with pytest.raises(TrackerError, match=f"tracker {URL}: tracker refused: torrent not "
                                               "registered"):
            await c.announce(URL, req())


async def test_stale_connection_id_error_is_forgotten(autojump_clock):
    """The tracker restarted and forgot our id: the error drops it, the next announce
    connects again."""
    t = FakeUdpTracker()
    async with client(FakeNet({ADDR: t})) as c:
        await c.announce(URL, req())
        t.conn_ids.clear()
        with pytest.raises(TrackerError, match="bad connection id"):
            await c.announce(URL, req(""))
        await c.announce(URL, req(""))
    assert [what for _, what in t.heard] == ["connect", "announce", "announce", "connect",
                                             "announce"]


async def test_datagrams_from_another_address_are_dropped(autojump_clock):
    t = FakeUdpTracker()
    net = FakeNet({ADDR: t})
    async with client(net, retry_base=1, retries=0) as c:
        real_sendto = FakeSocket.sendto

        async def spoofed(self, data, addr):
            # An answer-shaped datagram from elsewhere arrives first.
            self.inbox_send.send_nowait((struct.pack(">IIQ", 0, struct.unpack_from(
                ">I", data, 12)[0], 1), ("10.6.6.6", 6969)))
            await real_sendto(self, data, addr)
        FakeSocket.sendto = spoofed
        try:
            await c.announce(URL, req())
        finally:
            FakeSocket.sendto = real_sendto
    assert t.announces[0]["conn"] != 1


async def test_ipv6_tracker_gives_18_byte_peers(autojump_clock):
    t = FakeUdpTracker(peers=v6("2001:db8::7", 6881) + v6("fd00::1", 1))
    net = FakeNet({("2001:db8::1", 6969): t})
    async with client(net) as c:
        r = await c.announce("udp://[2001:db8::1]:6969/announce", req())
    assert r.peers == (("2001:db8::7", 6881), ("fd00::1", 1))
    assert net.opened == [socket.AF_INET6]


async def test_scrape(autojump_clock):
    async with client(FakeNet({ADDR: FakeUdpTracker()})) as c:
        stats = await c.scrape(URL, [INFO_HASH, b"x" * 20])
    assert stats == (ScrapeStats(4, 9, 1), ScrapeStats(4, 9, 1))


@pytest.mark.parametrize("url, message", [
    ("udp://10.0.0.1/announce", "bad UDP tracker URL"),
    ("udp://10.0.0.1:99999/announce", "bad UDP tracker URL"),
    ("udp://:6969", "bad UDP tracker URL"),
    ("udp://nowhere.invalid:6969", "cannot resolve nowhere.invalid"),
])
async def test_bad_urls_and_names(url, message, autojump_clock):
    async with client(FakeNet({})) as c:
        with pytest.raises(TrackerError, match=message):
            await c.announce(url, req())


# -- through the announcer -----------------------------------------------------------


def announcer(net, tiers, **kw):
    peers: list = []
    a = tracker.Announcer(tiers, INFO_HASH, PEER_ID, lambda: 6881, lambda: (0, 0, 100),
                          peers.extend, udp=client(net, **kw))
    return a, peers


async def test_silent_udp_tier_is_given_up_and_the_next_tier_answers(autojump_clock):
    silent, ok = FakeUdpTracker(mode="silent"), FakeUdpTracker(peers=v4("10.0.0.9", 9))
    net = FakeNet({ADDR: silent, ("10.0.0.2", 80): ok})
    a, peers = announcer(net, [[URL], ["udp://10.0.0.2:80"]])
    async with trio.open_nursery() as n:
        await n.start(a.run)
        await trio.sleep(200)
        n.cancel_scope.cancel()
    assert [round(when) for when, _ in silent.heard] == [0, 15, 45]
    assert [(round(when), what) for when, what in ok.heard] == [
        (105, "connect"), (105, "announce"), (200, "connect"), (200, "announce")]
    assert [x["event"] for x in ok.announces] == ["started", "stopped"]
    assert peers == [("10.0.0.9", 9)]
    assert a.tiers == [[URL], ["udp://10.0.0.2:80"]]


async def test_garbage_udp_tracker_then_http_tracker_in_the_same_tier(monkeypatch,
                                                                     autojump_clock):
    junk = FakeUdpTracker(mode="junk")
    http_log = []

    async def fake_http(client, url, req, timeout=tracker.TIMEOUT):
        http_log.append((trio.current_time(), url, req.event))
        return AnnounceResponse(interval=600, peers=(("10.1.1.1", 1),))
    monkeypatch.setattr(tracker, "announce_http", fake_http)
    a, peers = announcer(FakeNet({ADDR: junk}), [[URL, "http://t/announce"]])
    async with trio.open_nursery() as n:
        await n.start(a.run)
        await trio.sleep(700)
        n.cancel_scope.cancel()
    assert [(round(t), e) for t, _, e in http_log] == [(0, "started"), (600, ""), (700, "stopped")]
    assert a.tiers == [["http://t/announce", URL]]
    assert peers == [("10.1.1.1", 1)] * 2


async def test_completed_over_udp_reuses_the_connection(autojump_clock):
    t = FakeUdpTracker()
    a, _ = announcer(FakeNet({ADDR: t}), [[URL]])
    async with trio.open_nursery() as n:
        await n.start(a.run)
        await trio.sleep(10)
        a.completed()
        await trio.sleep(10)
        n.cancel_scope.cancel()
    assert [(round(when), what) for when, what in t.heard] == [
        (0, "connect"), (0, "announce"), (10, "announce"), (20, "announce")]
    assert [x["event"] for x in t.announces] == ["started", "completed", "stopped"]


# -- real sockets --------------------------------------------------------------------


async def serve_udp(sock, fake: FakeUdpTracker, task_status=trio.TASK_STATUS_IGNORED):
    task_status.started()
    while True:
        data, addr = await sock.recvfrom(2048)
        reply = fake.handle(data)
        if reply is not None:
            await sock.sendto(reply, addr)


@pytest.mark.parametrize("family, host", [(socket.AF_INET, "127.0.0.1"),
                                          (socket.AF_INET6, "::1")])
async def test_real_udp_sockets_on_loopback(family, host):
    try:
        server = trio.socket.socket(family, socket.SOCK_DGRAM)
        await server.bind((host, 0))
    except OSError:
        pytest.skip(f"no {host} here")
    port = server.getsockname()[1]
    peers = v6("::1", 7) if family == socket.AF_INET6 else v4("127.0.0.9", 7)
    fake = FakeUdpTracker(peers=peers)
    url = f"udp://{'[::1]' if family == socket.AF_INET6 else host}:{port}/announce"
    with server, trio.fail_after(10):
        async with trio.open_nursery() as n:
            await n.start(serve_udp, server, fake)
            async with UdpTrackerClient(retry_base=1.0, retries=2) as c:
                r = await c.announce(url, req())
            n.cancel_scope.cancel()
    assert r.peers == ((("::1" if family == socket.AF_INET6 else "127.0.0.9"), 7),)
    assert [x["event"] for x in fake.announces] == ["started"]
