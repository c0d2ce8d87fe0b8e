"""The announcer loop, with a fake HTTP layer and trio's autojump clock: events in
order, re-announce at the tracker's interval, backoff on failure, tier order,
'stopped' on the way out. No sockets, no real time."""

import trio

from torrentfs.core.announce import AnnounceResponse, TrackerError
from torrentfs.net import tracker


class FakeTrackers:
    """Answers announces per URL from a script; records (time, url, event, left)."""

    def __init__(self, answers):
        self.answers = answers  # url -> AnnounceResponse | TrackerError
        self.log = []

    async def __call__(self, client, url, req, timeout=tracker.TIMEOUT):
        self.log.append((trio.current_time(), url, req.event, req.left))
        answer = self.answers[url]
        if isinstance(answer, Exception):
            raise answer
        return answer


def make(monkeypatch, answers, tiers, left=100):
    fake = FakeTrackers(answers)
    monkeypatch.setattr(tracker, "announce_http", fake)
    peers = []
    state = {"left": left}
    a = tracker.Announcer(tiers, b"i" * 20, b"p" * 20, lambda: 6881,
                          lambda: (0, 0, state["left"]), peers.extend)
    return a, fake, peers, state


async def test_started_then_interval_then_stopped(monkeypatch, autojump_clock):
    ok = AnnounceResponse(interval=120, peers=(("127.0.0.2", 7000),))
    a, fake, peers, _ = make(monkeypatch, {"http://t/a": ok}, [["http://t/a"]])
    async with trio.open_nursery() as n:
        await n.start(a.run)
        await trio.sleep(250)
        n.cancel_scope.cancel()
    events = [(round(t), e) for t, _, e, _ in fake.log]
    assert events == [(0, "started"), (120, ""), (240, ""), (250, "stopped")]
    assert peers[0] == ("127.0.0.2", 7000)


async def test_completed_is_announced_at_once(monkeypatch, autojump_clock):
    ok = AnnounceResponse(interval=1800)
    a, fake, _, state = make(monkeypatch, {"http://t/a": ok}, [["http://t/a"]])
    async with trio.open_nursery() as n:
        await n.start(a.run)
        await trio.sleep(10)
        state["left"] = 0
        a.completed()
        await trio.sleep(10)
        n.cancel_scope.cancel()
    assert [(round(t), e, left) for t, _, e, left in fake.log] == [
        (0, "started", 100), (10, "completed", 0), (20, "stopped", 0)]


async def test_failure_backs_off_and_next_tracker_in_tier_is_tried(monkeypatch, autojump_clock):
    down = TrackerError("tracker down")
    a, fake, _, _ = make(monkeypatch, {"http://bad": down, "http://bad2": down},
                         [["http://bad"], ["http://bad2"]])
    async with trio.open_nursery() as n:
        await n.start(a.run)
        await trio.sleep(100)
        n.cancel_scope.cancel()
    times = sorted({round(t) for t, *_ in fake.log})
    # 15 s, then 30 s, then 60 s between rounds; both tiers tried each round.
    assert times == [0, 15, 45]
    assert [u for _, u, *_ in fake.log[:2]] == ["http://bad", "http://bad2"]
    assert a.last_error == "tracker down"
    # Never announced successfully: no 'stopped' is sent.
    assert all(e != "stopped" for _, _, e, _ in fake.log)


async def test_working_tracker_moves_to_front_of_its_tier(monkeypatch, autojump_clock):
    ok = AnnounceResponse(interval=60)
    a, fake, _, _ = make(monkeypatch, {"http://x": TrackerError("x"), "http://y": ok},
                         [["http://x", "http://y"]])
    async with trio.open_nursery() as n:
        await n.start(a.run)
        await trio.sleep(61)
        n.cancel_scope.cancel()
    assert [u for _, u, *_ in fake.log] == ["http://x", "http://y", "http://y", "http://y"]
    assert a.tiers == [["http://y", "http://x"]]


async def test_tracker_interval_has_a_floor(monkeypatch, autojump_clock):
    a, fake, _, _ = make(monkeypatch, {"http://t": AnnounceResponse(interval=1)},
                         [["http://t"]])
    async with trio.open_nursery() as n:
        await n.start(a.run)
        await trio.sleep(61)
        n.cancel_scope.cancel()
    assert [round(t) for t, _, e, _ in fake.log if e != "stopped"] == [0, 30, 60]


# -- a real HTTP layer (httpx) over a fake transport: trackers that misbehave ----------

import httpx  # noqa: E402


def misbehaving(answers):
    """An httpx transport answering announces from ``answers`` in turn (a response,
    or an exception to raise); records the virtual time of each request."""
    times = []

    async def handler(request: httpx.Request) -> httpx.Response:
        times.append(trio.current_time())
        answer = answers[min(len(times) - 1, len(answers) - 1)]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return httpx.MockTransport(handler), times


async def test_garbage_500_and_hangups_back_off(autojump_clock, caplog):
    caplog.set_level("INFO")
    transport, times = misbehaving([
        httpx.Response(200, content=b"<html>not a tracker</html>"),
        httpx.Response(500, content=b"oops"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.Response(200, content=b"d8:intervali60e5:peers6:\x7f\x00\x00\x02\x1a\xe1e"),
    ])
    peers = []
    a = tracker.Announcer([["http://t/announce"]], b"i" * 20, b"p" * 20, lambda: 6881,
                          lambda: (0, 0, 1), peers.extend, transport=transport)
    errors = []
    async with trio.open_nursery() as n:
        await n.start(a.run)
        for t in (1, 16, 46):
            await trio.sleep_until(t)
            errors.append(a.last_error)
        await trio.sleep_until(110)
        n.cancel_scope.cancel()
    assert [round(t) for t in times[:4]] == [0, 15, 45, 105]
    assert "not bencode" in errors[0] and "'<html>not a tracker</html>'" in errors[0]
    assert "answered HTTP 500" in errors[1]
    assert "unreachable: Server disconnected" in errors[2]
    assert peers == [("127.0.0.2", 6881)] and a.last_error is None
    # One log line per failed try, each a single line.
    lines = [r.getMessage() for r in caplog.records if r.name == "torrentfs.tracker"]
    assert sum("tracker" in m and "announced" not in m for m in lines[:3]) == 3
    assert all("\n" not in m for m in lines)


async def test_a_tracker_that_never_answers_times_out(autojump_clock):
    async def handler(request):
        await trio.sleep(3600)

    a = tracker.Announcer([["http://t/announce"]], b"i" * 20, b"p" * 20, lambda: 6881,
                          lambda: (0, 0, 1), lambda peers: None,
                          transport=httpx.MockTransport(handler))
    async with trio.open_nursery() as n:
        await n.start(a.run)
        await trio.sleep(tracker.TIMEOUT + 1)
        assert "did not answer" in a.last_error
        n.cancel_scope.cancel()


async def test_https_announce_through_httpx_with_ipv6_peers():
    """HTTPS goes through the same httpx client (here with a mock transport): the
    request keeps the tracker's own query, and ``peers6`` come back as IPv6 peers."""
    import struct

    import bencodepy
    import httpx

    from torrentfs.core.announce import AnnounceRequest

    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        v6 = bytes.fromhex("20010db8000000000000000000000002") + struct.pack(">H", 51413)
        return httpx.Response(200, content=bencodepy.encode({
            b"interval": 900, b"peers": bytes([10, 0, 0, 1, 0x1A, 0xE1]), b"peers6": v6}))

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        r = await tracker.announce_http(client, "https://t.example/announce?passkey=abc",
                                        AnnounceRequest(b"i" * 20, b"p" * 20, 6881))
    assert seen[0].scheme == "https" and seen[0].host == "t.example"
    assert seen[0].params["passkey"] == "abc" and seen[0].params["compact"] == "1"
    assert r.peers == (("10.0.0.1", 6881), ("2001:db8::2", 51413))


async def test_a_hybrid_announces_its_v2_swarm_to_the_tracker_that_answered(monkeypatch,
                                                                            autojump_clock):
    """Each announce of the v1 info-hash is followed by one of the v2 hash (cut to 20
    bytes) to the same tracker; peers of both swarms are taken, each once; both
    are announced stopped; a failure for the v2 hash alone changes nothing."""
    v2 = b"v" * 20
    seen = []

    async def fake(client, url, req, timeout=tracker.TIMEOUT):
        seen.append((round(trio.current_time()), url, req.info_hash, req.event))
        if url == "http://t/b":
            raise TrackerError("b is down")
        if req.info_hash == v2:
            if url == "http://t/c":
                raise TrackerError("no v2 here")
            return AnnounceResponse(interval=100, peers=(("10.0.0.2", 2), ("10.0.0.3", 3)))
        return AnnounceResponse(interval=100, peers=(("10.0.0.1", 1), ("10.0.0.2", 2)))

    monkeypatch.setattr(tracker, "announce_http", fake)
    peers = []
    a = tracker.Announcer([["http://t/b", "http://t/a"]], b"i" * 20, b"p" * 20,
                          lambda: 6881, lambda: (0, 0, 5), peers.extend, also=(v2,))
    async with trio.open_nursery() as n:
        await n.start(a.run)
        await trio.sleep(150)
        n.cancel_scope.cancel()
    assert [(t, u[-1], h[:1], e) for t, u, h, e in seen] == [
        (0, "b", b"i", "started"), (0, "a", b"i", "started"), (0, "a", b"v", "started"),
        (100, "a", b"i", ""), (100, "a", b"v", ""),
        (150, "a", b"i", "stopped"), (150, "a", b"v", "stopped")]
    assert peers[:3] == [("10.0.0.1", 1), ("10.0.0.2", 2), ("10.0.0.3", 3)]
    state = {st["url"]: st for st in a.tracker_states()}["http://t/a"]
    assert (state["status"], state["peers"]) == ("ok", 3)  # both swarms' peers, once each

    seen.clear()
    b = tracker.Announcer([["http://t/c"]], b"i" * 20, b"p" * 20, lambda: 6881,
                          lambda: (0, 0, 5), peers.extend, also=(v2,))
    async with trio.open_nursery() as n:
        await n.start(b.run)
        await trio.sleep(10)
        n.cancel_scope.cancel()
    assert b.last_error is None and [e for *_, e in seen][:2] == ["started", "started"]


async def test_peers_found_only_in_the_v2_swarm_go_to_their_own_callback(monkeypatch,
                                                                         autojump_clock):
    v2 = b"v" * 20

    async def fake(client, url, req, timeout=tracker.TIMEOUT):
        if req.info_hash == v2:
            return AnnounceResponse(interval=100, peers=(("10.0.0.2", 2), ("10.0.0.3", 3)))
        return AnnounceResponse(interval=100, peers=(("10.0.0.1", 1), ("10.0.0.2", 2)))

    monkeypatch.setattr(tracker, "announce_http", fake)
    main, other = [], []
    a = tracker.Announcer([["http://t/a"]], b"i" * 20, b"p" * 20, lambda: 6881,
                          lambda: (0, 0, 5), main.extend, also=(v2,),
                          on_other_peers=lambda h, peers: other.append((h, peers)))
    async with trio.open_nursery() as n:
        await n.start(a.run)
        await trio.sleep(1)
        n.cancel_scope.cancel()
    assert main == [("10.0.0.1", 1), ("10.0.0.2", 2)]  # the v1 swarm's (10.0.0.2 in both)
    assert other == [(v2, [("10.0.0.3", 3)])]           # only in the v2 swarm
