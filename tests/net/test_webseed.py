"""Web seeds in the torrent shell: a Torrent whose web seed answers through an
httpx MockTransport (``webseeds.MockSeed``), alone or beside scripted fake peers,
on trio's autojump clock. No sockets, no real waiting."""

from __future__ import annotations

import logging

import pytest
import trio

from tests.harness.fakepeer import Behaviour, inline, quiet, small_tree_torrent, start
from tests.harness.webseeds import MockSeed, SeedBehaviour, files_of
from torrentfs.core.picker import NOW, READAHEAD
from torrentfs.engine.reads import ReadTimeout
from torrentfs.engine.torrent import Torrent
from torrentfs.net import webseed as httpseed

URL = "http://seed.test/files/"
PLEN = 32768


async def start_with_seed(nursery, make_swarm, behaviour=None, **kw):
    """A running Torrent (single file) with one web seed at URL and no peers."""
    seed = MockSeed({}, behaviour or SeedBehaviour())
    s = await start(nursery, make_swarm, web_seeds=[URL], http_transport=seed.transport, **kw)
    seed.files.update(files_of(s.meta, s.payload, "/files/"))
    return s, seed


async def test_whole_file_from_the_web_seed_alone(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s, seed = await start_with_seed(n, make_swarm, SeedBehaviour(delay=0.01),
                                        size=40 * PLEN + 100)
        assert await s.torrent.read(0, 0, len(s.payload)) == s.payload
        assert s.torrent.have.count == s.meta.num_pieces
        paths = {p for p, _, _ in seed.ranges()}
        assert paths == {"/files/payload.bin"}  # URL + name: the URL ends with '/'
        assert 1 < seed.peak <= httpseed.SLOTS
        # Each request is a run of whole blocks inside one piece, and no byte is
        # fetched twice.
        spans = sorted((a, b) for _, a, b in seed.ranges())
        assert all(a % 16384 == 0 and a // PLEN == b // PLEN for a, b in spans)
        assert sum(b - a + 1 for a, b in spans) == len(s.payload)
        n.cancel_scope.cancel()


async def test_multi_file_pieces_map_onto_files(tmp_path, autojump_clock):
    """Pieces that straddle files become one range request per file, at the right
    offsets, with percent-encoded names; an empty file is never asked for."""
    files = {"a.bin": 50_000, "sub dir/b#1?.bin": 3, "sub dir/empty": 0,
             "sub dir/c été.bin": 70_001, "z.bin": 30_000}
    meta, payload = small_tree_torrent(tmp_path, files, PLEN)
    seed = MockSeed(files_of(meta, payload, "/"), SeedBehaviour(delay=0.01))
    torrent = Torrent(meta, tmp_path / "cache", quiet(web_seeds=["http://seed.test"]),
                      offload=inline, http_transport=seed.transport)
    async with trio.open_nursery() as n:
        await n.start(torrent.run)
        for i, f in enumerate(meta.files):
            assert await torrent.read(i, 0, f.length + 1) == payload[f.offset:f.end]
        paths = {p for p, _, _ in seed.ranges()}
        assert paths == {"/tree/a.bin", "/tree/sub%20dir/b%231%3F.bin",
                         "/tree/sub%20dir/c%20%C3%A9t%C3%A9.bin", "/tree/z.bin"}
        assert ("/tree/sub%20dir/b%231%3F.bin", 0, 2) in seed.ranges()
        n.cancel_scope.cancel()


async def test_the_most_urgent_piece_is_fetched_first(make_swarm, autojump_clock):
    """The web seed takes work from the picker like a peer: a read's NOW piece
    before readahead, readahead in deadline order; its SLOTS requests at once."""
    async with trio.open_nursery() as n:
        s, seed = await start_with_seed(n, make_swarm, SeedBehaviour(delay=0.5),
                                        size=40 * PLEN)
        raise_some(s.torrent)
        await trio.sleep(0.1)
        # Three slots: the three most urgent go at once (started in any order).
        assert sorted(a // PLEN for _, a, _ in seed.ranges()) == [7, 20, 25]
        await trio.sleep(5)
        assert [a // PLEN for _, a, _ in seed.ranges()][3:] == [30]
        assert {7, 20, 25, 30} <= set(s.torrent.have)
        n.cancel_scope.cancel()


async def test_one_slot_fetches_in_order_of_urgency(make_swarm, autojump_clock,
                                                    monkeypatch):
    monkeypatch.setattr(httpseed, "SLOTS", 1)
    async with trio.open_nursery() as n:
        s, seed = await start_with_seed(n, make_swarm, SeedBehaviour(delay=0.5),
                                        size=40 * PLEN)
        raise_some(s.torrent)
        await trio.sleep(5)
        assert [a // PLEN for _, a, _ in seed.ranges()] == [7, 20, 25, 30]
        n.cancel_scope.cancel()


def raise_some(t) -> None:
    """Piece 7 at NOW; 30, 20, 25 at READAHEAD with deadlines in the order 20, 25, 30."""
    now = trio.current_time()
    t.picker.raise_priority("ra", [30], READAHEAD, now + 5)
    t.picker.raise_priority("ra", [20], READAHEAD, now + 1)
    t.picker.raise_priority("ra", [25], READAHEAD, now + 3)
    t.picker.raise_priority("now", [7], NOW, now + 0.05)
    t.schedule()


async def test_web_seed_and_peer_share_a_read(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s, seed = await start_with_seed(n, make_swarm, SeedBehaviour(delay=0.05),
                                        size=60 * PLEN)
        peer = s.add(Behaviour(delay=0.05))
        await trio.sleep(0.5)
        assert await s.torrent.read(0, 0, len(s.payload)) == s.payload
        assert seed.ranges() and peer.sent_bytes
        n.cancel_scope.cancel()


async def test_a_slow_web_seed_does_not_hold_a_read(make_swarm, autojump_clock):
    """Blocks late against the read's deadline are asked of a peer too; the peer's
    answer wins, and the web seed's request is cancelled."""
    async with trio.open_nursery() as n:
        s, seed = await start_with_seed(n, make_swarm, SeedBehaviour(delay=600))
        t0 = trio.current_time()
        result = []
        async with trio.open_nursery() as inner:
            async def read():
                result.append(await s.torrent.read(0, 0, PLEN))
            inner.start_soon(read)
            await trio.sleep(0.2)
            assert seed.in_flight == 1  # the seed was asked first (the only source)
            s.add()
        assert result == [s.payload[:PLEN]]
        assert trio.current_time() - t0 < 5
        await trio.sleep(0.1)
        assert seed.in_flight == 0  # its request was given up
        n.cancel_scope.cancel()


async def test_a_down_web_seed_backs_off_and_peers_serve(make_swarm, autojump_clock,
                                                          caplog):
    caplog.set_level(logging.WARNING, "torrentfs.webseed")
    async with trio.open_nursery() as n:
        s, seed = await start_with_seed(n, make_swarm, SeedBehaviour(down=True),
                                        size=40 * PLEN)
        t = s.torrent
        t0 = trio.current_time()
        done = []
        async with trio.open_nursery() as inner:
            async def read_only_the_seed_has():
                done.append(await t.read(0, 30 * PLEN, 100))
            inner.start_soon(read_only_the_seed_has)
            await trio.sleep(0.1)
            s.add(Behaviour(have=set(range(20))))
            # What the peer has is read at once: the seed's failures hold nothing.
            assert await t.read(0, 0, 20 * PLEN) == s.payload[:20 * PLEN]
            assert trio.current_time() - t0 < 5
            await trio.sleep(200 - (trio.current_time() - t0))
            assert not done
            tries = sorted({round(ts - t0) for ts, *_ in seed.requests})
            # One try (a probe) per retry time: 5, 10, 20, 40, 80 s apart.
            assert [b - a for a, b in zip(tries, tries[1:])] == [5, 10, 20, 40, 80], tries
            assert "failed (connection refused): retrying in 5 s" in caplog.text
            assert "retrying in 160 s" in caplog.text
            seed.behaviour.down = False  # back: it serves at its next try (155 + 160)
        assert done == [s.payload[30 * PLEN:30 * PLEN + 100]]
        assert round(trio.current_time() - t0) == 315
        n.cancel_scope.cancel()


async def test_a_down_web_seed_alone(make_swarm, autojump_clock):
    """With the web seed down and no peer, a read waits for the seed to come back
    (or for its read timeout, which says why)."""
    async with trio.open_nursery() as n:
        s, seed = await start_with_seed(n, make_swarm, SeedBehaviour(status=503),
                                        read_timeout=30)
        with pytest.raises(ReadTimeout, match="1 of 1 web seeds down"):
            await s.torrent.read(0, 0, 100)
        seed.behaviour.status = None
        t0 = trio.current_time()
        assert await s.torrent.read(0, 0, 100) == s.payload[:100]
        assert round(trio.current_time() - t0) == 5  # tries at 0, 5, 15, 35
        n.cancel_scope.cancel()


async def test_retry_after_is_honoured(make_swarm, autojump_clock, caplog):
    caplog.set_level(logging.WARNING, "torrentfs.webseed")
    async with trio.open_nursery() as n:
        s, seed = await start_with_seed(n, make_swarm,
                                        SeedBehaviour(status=429, retry_after="120"))
        with trio.move_on_after(100):
            await s.torrent.read(0, 0, 100)
        assert len({round(t) for t, *_ in seed.requests}) == 1  # no retry within 120 s
        assert "HTTP 429): retrying in 120 s" in caplog.text
        n.cancel_scope.cancel()


async def test_a_stalled_body_is_given_up(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s, seed = await start_with_seed(n, make_swarm, SeedBehaviour(stall=True))
        ws = s.torrent.webseeds.seeds[0]
        with trio.move_on_after(httpseed.STALL_TIMEOUT + 1):
            await s.torrent.read(0, 0, 100)
        assert not ws.up and ws.failures == 1
        s.add()
        assert await s.torrent.read(0, 0, 100) == s.payload[:100]
        n.cancel_scope.cancel()


async def test_wrong_data_is_never_returned_and_the_seed_is_dropped(make_swarm,
                                                                     autojump_clock, caplog):
    caplog.set_level(logging.WARNING)
    async with trio.open_nursery() as n:
        s, seed = await start_with_seed(n, make_swarm, SeedBehaviour(corrupt=True),
                                        read_timeout=30)
        ws = s.torrent.webseeds.seeds[0]
        with pytest.raises(ReadTimeout):
            await s.torrent.read(0, 0, 100)
        assert ws.dropped and s.torrent.have.count == 0
        assert "dropped: sent the only data of 2 pieces that failed" in caplog.text
        asked = len(seed.requests)
        peer = s.add()
        assert await s.torrent.read(0, 0, len(s.payload)) == s.payload
        assert peer.sent_bytes >= len(s.payload) and len(seed.requests) == asked
        n.cancel_scope.cancel()


async def test_a_wrong_seed_beside_an_honest_peer(make_swarm, autojump_clock):
    """The seed's pieces fail (alone, or shared with the peer, whose good copy then
    proves the seed's blocks wrong): the seed is dropped, the peer kept."""
    async with trio.open_nursery() as n:
        s, seed = await start_with_seed(n, make_swarm, SeedBehaviour(corrupt=True),
                                        size=20 * PLEN)
        ws = s.torrent.webseeds.seeds[0]
        peer = s.add()
        assert await s.torrent.read(0, 0, len(s.payload)) == s.payload
        assert ws.dropped and not peer.closed
        n.cancel_scope.cancel()


async def test_a_server_ignoring_range(make_swarm, autojump_clock, caplog):
    """A 200 with the whole file: a range at the file's start is read and the rest
    left unread; a range further in gives the seed up. Memory stays bounded."""
    caplog.set_level(logging.WARNING, "torrentfs.webseed")
    async with trio.open_nursery() as n:
        s, seed = await start_with_seed(n, make_swarm, SeedBehaviour(ignore_range=True),
                                        size=400 * PLEN)
        assert await s.torrent.read(0, 0, 100) == s.payload[:100]
        assert seed.bytes_taken <= PLEN + 16384  # not the 12.5 MiB file
        ws = s.torrent.webseeds.seeds[0]
        with trio.move_on_after(5):
            await s.torrent.read(0, 200 * PLEN, 100)
        assert ws.dropped
        assert "ignores Range" in caplog.text
        assert seed.bytes_taken <= 4 * (PLEN + 16384)
        n.cancel_scope.cancel()


async def test_unusable_urls_are_ignored(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, web_seeds=["ftp://x/y", "file:///etc/passwd",
                                                  "http://", "http://ok.test/a"])
        assert [w.url for w in s.torrent.webseeds] == ["http://ok.test/a"]
        n.cancel_scope.cancel()


async def test_the_torrents_url_list_is_used(tmp_path, autojump_clock):
    from torrentfs.core.metainfo import parse
    from torrentfs.disk.create import create_torrent
    src = tmp_path / "f.bin"
    src.write_bytes(b"x" * 100_000)
    meta = parse(create_torrent(src, web_seeds=["http://a.test/f.bin", "http://b.test/"]))
    assert meta.url_list == ("http://a.test/f.bin", "http://b.test/")
    t = Torrent(meta, tmp_path / "cache", quiet(), offload=inline)
    assert [w.urls for w in t.webseeds] == [["http://a.test/f.bin"],
                                            ["http://b.test/f.bin"]]
    assert Torrent(meta, tmp_path / "c2", quiet(web_seeds=[])).webseeds.seeds == []


async def test_a_url_httpx_refuses_drops_the_seed(make_swarm, autojump_clock, caplog):
    caplog.set_level(logging.WARNING, "torrentfs.webseed")
    seed = MockSeed({})
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, web_seeds=["http://h/" + "a" * 70000],
                        http_transport=seed.transport, read_timeout=10)
        with pytest.raises(ReadTimeout):
            await s.torrent.read(0, 0, 100)
        assert s.torrent.webseeds.seeds[0].dropped and not seed.requests
        assert "dropped: cannot make a URL: URL too long" in caplog.text
        n.cancel_scope.cancel()
