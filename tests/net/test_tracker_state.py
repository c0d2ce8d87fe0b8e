"""Each tracker's last answer or error, with its time, for ``torrentfs status``
(issue 12): kept by the announcer, refusals included, in tier order."""

import trio

from torrentfs.core.announce import AnnounceResponse, TrackerError
from torrentfs.net import tracker


def fake_announce(answers):
    async def announce(client, url, req, timeout=tracker.TIMEOUT):
        answer = answers[url]
        if isinstance(answer, Exception):
            raise answer
        return answer
    return announce


async def test_refusal_then_answer_are_both_kept(monkeypatch, autojump_clock):
    answers = {"http://a/ann": TrackerError("tracker refused: unregistered torrent"),
               "http://b/ann": AnnounceResponse(interval=600, peers=(("127.0.0.2", 7),),
                                                warning="slow down"),
               "http://c/ann": AnnounceResponse(interval=600)}
    monkeypatch.setattr(tracker, "announce_http", fake_announce(answers))
    a = tracker.Announcer([["http://a/ann", "http://b/ann"], ["http://c/ann"]], b"i" * 20,
                          b"p" * 20, lambda: 6881, lambda: (0, 0, 1), lambda peers: None)
    a.clock = trio.current_time  # the status file has wall-clock times; any clock here
    assert [s["status"] for s in a.tracker_states()] == ["not tried"] * 3
    async with trio.open_nursery() as n:
        await trio.sleep(7)
        await n.start(a.run)
        await trio.sleep(1)
        n.cancel_scope.cancel()
    states = {s["url"]: s for s in a.tracker_states()}
    assert states["http://a/ann"] == {
        "url": "http://a/ann", "status": "error", "at": 7.0, "peers": 0, "warning": None,
        "message": "tracker refused: unregistered torrent"}
    assert states["http://b/ann"] == {
        "url": "http://b/ann", "status": "ok", "at": 7.0, "peers": 1,
        "warning": "slow down", "message": ""}
    assert states["http://c/ann"]["status"] == "not tried"  # tier 1 answered
    # tier order (BEP 12 moved b to the front of its tier)
    assert [s["url"] for s in a.tracker_states()] == [
        "http://b/ann", "http://a/ann", "http://c/ann"]


async def test_every_failure_of_a_round_is_recorded(monkeypatch, autojump_clock):
    answers = {"http://a/ann": TrackerError("tracker http://a/ann unreachable: refused"),
               "udp://b:1": TrackerError("tracker udp://b:1 did not answer")}
    monkeypatch.setattr(tracker, "announce_http", fake_announce(answers))
    a = tracker.Announcer([["http://a/ann"], ["udp://b:1"]], b"i" * 20, b"p" * 20,
                          lambda: 6881, lambda: (0, 0, 1), lambda peers: None)

    async def udp_announce(url, req):
        raise answers[url]
    monkeypatch.setattr(a.udp, "announce", udp_announce)
    a.clock = trio.current_time
    async with trio.open_nursery() as n:
        await n.start(a.run)
        await trio.sleep(1)
        n.cancel_scope.cancel()
    states = a.tracker_states()
    assert [(s["status"], s["message"]) for s in states] == [
        ("error", "tracker http://a/ann unreachable: refused"),
        ("error", "tracker udp://b:1 did not answer")]
    assert a.last_error == "tracker udp://b:1 did not answer"
