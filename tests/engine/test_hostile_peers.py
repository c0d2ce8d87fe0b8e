"""Hostile and broken peers against a Torrent, on trio's autojump clock over memory
streams: each misbehaving fake peer is dropped (banned where it persists) while the
good peers keep serving byte-exact data, no exception escapes, and what a peer can
make us hold in memory stays bounded."""

from __future__ import annotations

import logging
import subprocess

import pytest
import trio

from tests.harness.fakepeer import Behaviour, block_fields, raw_message, start
from torrentfs.core import wire
from torrentfs.core.geometry import BLOCK_SIZE
from torrentfs.engine import connector as connector_module
from torrentfs.engine import upload
from torrentfs.engine.reads import ReadTimeout
from torrentfs.net import peer

PIECE = 32768
NUM_PIECES = 11            # make_swarm's default torrent: 10 pieces and 100 bytes
BLOCK = BLOCK_SIZE


@pytest.fixture(autouse=True)
def no_errors(caplog):
    """Whatever a peer does, nothing of ours fails: no error is logged (an internal
    error while handling a peer is logged at ERROR with its traceback)."""
    caplog.set_level(logging.INFO, logger="torrentfs")
    yield
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors


def closed_reasons(caplog, host: str) -> list[str]:
    """Why the sessions with ``host`` ended, from the log."""
    prefix = f"<peer {host}:"
    return [r.getMessage() for r in caplog.records
            if r.getMessage().startswith(prefix) and " closed: " in r.getMessage()]


async def read_all(s) -> None:
    assert await s.torrent.read(0, 0, len(s.payload)) == s.payload


# -- data that fails its hash ----------------------------------------------------------


@pytest.mark.parametrize("honest, piece_length", [(2, PIECE), (1, 4 * BLOCK)])
async def test_liar_sharing_pieces_with_good_peers_is_banned_alone(
        make_swarm, autojump_clock, caplog, honest, piece_length):
    """The liar's blocks are mixed with good ones in the same pieces (a read splits
    each piece over the peers): the pieces fail, are fetched again, one peer at a
    time, and only the liar is banned (by address and peer id); the honest peers that
    shared those pieces stay."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=40 * piece_length, piece_length=piece_length,
                        read_timeout=60)
        good = [s.add() for _ in range(honest)]
        liar = s.add(Behaviour(corrupt=set(range(40))))
        # One piece alone first: it is split over the peers each time it is fetched,
        # unless a failed piece is fetched again from one peer only.
        assert await s.torrent.read(0, 0, piece_length) == s.payload[:piece_length]
        await read_all(s)
        t = s.torrent
        liar_host = f"fake{honest + 1}"
        assert liar.sent_bytes, "the liar did contribute blocks"
        assert liar_host in t.banned_ips and liar.closed
        assert t.banned_ips == {liar_host}
        assert len(t.sessions) == honest
        assert all(g.sent_bytes and not g.closed for g in good)
        bans = [r.getMessage() for r in caplog.records if r.getMessage().startswith("banned")]
        assert len(bans) == 1 and f"<peer {liar_host}:6881>" in bans[0]
        n.cancel_scope.cancel()


async def test_banned_peer_is_refused_by_address_and_by_peer_id(make_swarm, autojump_clock,
                                                                caplog, monkeypatch):
    dialled = []

    async def connect(addr):
        dialled.append(addr)
        raise OSError("no route (test)")

    monkeypatch.setattr(connector_module, "connect", connect)
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, read_timeout=30)
        liar_id = b"-FK0001-liarliarliar"
        liar = s.add(Behaviour(corrupt=set(range(NUM_PIECES))), peer_id=liar_id)
        with pytest.raises(ReadTimeout):
            await s.torrent.read(0, 0, PIECE)
        assert liar.closed and s.torrent.banned_ips == {"fake1"}
        # It comes back: from its address (connecting to us), or from another
        # address with the same peer id. Neither gets as far as a request.
        back = s.add(incoming=True, host="fake1")
        again = s.add(peer_id=liar_id)
        good = s.add()
        assert await s.torrent.read(0, 0, PIECE) == s.payload[:PIECE]
        await trio.sleep(1)
        assert back.closed and not back.handshaken  # refused before a word
        assert again.closed and not again.requests
        assert good.sent_bytes >= PIECE
        assert any("banned peer" in r for r in closed_reasons(caplog, "fake3"))
        # Its address, from a tracker say, is not even dialled; another one is.
        s.torrent.add_peer(("fake1", 7000))
        s.torrent.add_peer(("fake9", 7000))
        await trio.sleep(2)
        assert dialled == [("fake9", 7000)]
        n.cancel_scope.cancel()


# -- broken framing and invalid messages ------------------------------------------------


def have(index: int) -> bytes:
    return raw_message(4, block_fields(index))


BAD_MESSAGES = {
    "length prefix over the limit": ((1 << 31).to_bytes(4, "big") + b"\x07" + b"x" * 4096,
                                     "exceeds the limit"),
    "have: index out of range": (have(NUM_PIECES), "have piece index"),
    "request: index out of range": (raw_message(6, block_fields(NUM_PIECES, 0, BLOCK)),
                                    "request piece index"),
    "request: length 0": (raw_message(6, block_fields(0, 0, 0)), "request length 0"),
    "request: length over 128 KiB": (raw_message(6, block_fields(0, 0, 1 << 20)),
                                     "request length"),
    "cancel: index out of range": (raw_message(8, block_fields(1 << 31, 0, BLOCK)),
                                   "cancel piece index"),
    "piece: index out of range": (raw_message(7, block_fields(NUM_PIECES, 0) + b"x" * 10),
                                  "piece piece index"),
    "piece: block over 128 KiB": (raw_message(7, block_fields(0, 0) + b"x" * (1 << 17 | 1)),
                                  "exceeds 131072"),
    "have: wrong payload size": (raw_message(4, b"\x00\x00"), "have payload is 2 bytes"),
    "bitfield after other messages": (have(0) + raw_message(5, b"\xff\xe0"),
                                      "only allowed as the first message"),
}

BAD_BITFIELDS = {
    "too short": (raw_message(5, b"\xff"), "bitfield payload is 1 bytes"),
    "too long": (raw_message(5, b"\xff\xe0\x00"), "bitfield payload is 3 bytes"),
    "spare bits set": (raw_message(5, b"\xff\xe1"), "spare bits set"),
}


@pytest.mark.parametrize("greeting", [False, True], ids=["after-bitfield", "as-greeting"])
@pytest.mark.parametrize("name", sorted(BAD_MESSAGES) + [f"bitfield {b}" for b in BAD_BITFIELDS])
async def test_invalid_message_drops_the_peer_at_once(make_swarm, autojump_clock, caplog,
                                                      name, greeting):
    if name.startswith("bitfield ") and name[9:] in BAD_BITFIELDS:
        raw, reason = BAD_BITFIELDS[name[9:]]
        behaviour = Behaviour(greeting=raw)
    elif greeting:
        raw, reason = BAD_MESSAGES[name]
        behaviour = Behaviour(greeting=raw)
    else:
        raw, reason = BAD_MESSAGES[name]
        behaviour = Behaviour(raw=raw)
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, read_timeout=30)
        bad = s.add(behaviour)
        s.add()
        t0 = trio.current_time()
        await trio.sleep(0.01)
        assert bad.closed and trio.current_time() - t0 < 0.1
        (why,) = closed_reasons(caplog, "fake1")
        assert "protocol error" in why and reason in why, why
        await read_all(s)
        assert s.torrent.wasted == 0
        n.cancel_scope.cancel()


async def test_requests_outside_a_piece_are_refused_not_served(make_swarm, autojump_clock):
    """Valid framing, but offsets or lengths that do not fit the piece: rejected
    (BEP 6), never answered with data; a valid request in between is served."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm)
        s.add()
        await read_all(s)  # we have every piece now, and will upload
        last = NUM_PIECES - 1  # 100 bytes long
        bad_requests = [(0, PIECE, BLOCK), (0, PIECE - 10, BLOCK), (last, 0, 101),
                        (last, 100, 1), (3, (1 << 32) - 1, 1)]
        raw = raw_message(2)  # interested: the choker unchokes it at once
        for r in bad_requests[:2] + [(1, 0, BLOCK)] + bad_requests[2:]:
            raw += raw_message(6, block_fields(*r))
        raw += raw_message(8, block_fields(2, 7, 9))  # a cancel of nothing: ignored
        prober = s.add(Behaviour(have=set(), raw=raw, answer=False))
        await trio.sleep(1)
        assert prober.blocks == [(1, 0, BLOCK)]
        assert sorted(prober.rejects) == sorted(bad_requests)
        assert not prober.closed
        n.cancel_scope.cancel()


# -- blocks we never asked for ------------------------------------------------------------


@pytest.mark.parametrize("count, dropped", [(5, False), (200, True)])
async def test_unrequested_blocks_are_not_written_and_a_flood_drops_the_peer(
        make_swarm, autojump_clock, caplog, count, dropped):
    blocks = [(i % NUM_PIECES, 0) for i in range(count)]
    raw = b"".join(raw_message(7, block_fields(i, b) + b"\x00" * BLOCK) for i, b in blocks)
    # Misshapen ones too: unaligned, short, past the end of the piece.
    raw += raw_message(7, block_fields(0, 5) + b"\x00" * 10)
    raw += raw_message(7, block_fields(0, PIECE) + b"\x00" * BLOCK)
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, read_timeout=30)
        pusher = s.add(Behaviour(raw=raw))
        await trio.sleep(0.1)
        t = s.torrent
        assert not t._buffers and t.have.count == 0 and t.downloaded == 0
        assert pusher.closed == dropped
        if dropped:
            # Dropped at the first block past the slack: none of the rest was read.
            assert closed_reasons(caplog, "fake1") == [
                "<peer fake1:6881> closed: sent blocks we never asked for "
                f"(received {peer.UNREQUESTED_SLACK * BLOCK} bytes of blocks, sent 0)"]
        s.add()
        await read_all(s)
        n.cancel_scope.cancel()


# -- floods ---------------------------------------------------------------------------


@pytest.fixture
def high_water(monkeypatch):
    """The most bytes any PeerConnection held unparsed, and the longest upload queue
    and FIFO of any session, over the test."""
    seen = {"buffered": 0, "queued": 0, "fifo": 0}
    receive = wire.PeerConnection.receive_data
    request = upload.Uploader.request

    def receive_data(self, data):
        receive(self, data)
        seen["buffered"] = max(seen["buffered"], self.buffered)

    def on_request(self, s, msg):
        request(self, s, msg)
        seen["queued"] = max(seen["queued"], len(s.queued))
        seen["fifo"] = max(seen["fifo"], len(s.upload_fifo))

    monkeypatch.setattr(wire.PeerConnection, "receive_data", receive_data)
    monkeypatch.setattr(upload.Uploader, "request", on_request)
    return seen


FLOOD = 100_000


@pytest.mark.parametrize("kind", ["have", "keepalive", "unknown", "choke-unchoke",
                                  "interest-toggle"])
async def test_flood_of_harmless_messages_holds_bounded_memory(make_swarm, autojump_clock,
                                                              high_water, kind):
    """100k cheap, valid messages: nothing to drop the peer for, but nothing piles up,
    and a read served meanwhile by another peer is exact."""
    msg = {"have": have(3), "keepalive": b"\x00\x00\x00\x00",
           "unknown": raw_message(99, b"z" * 16),
           "choke-unchoke": raw_message(0) + raw_message(1),
           "interest-toggle": raw_message(2) + raw_message(3)}[kind]
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, read_timeout=30)
        flooder = s.add(Behaviour(raw=msg * FLOOD, answer=False))
        s.add()
        await read_all(s)
        await trio.sleep(1)
        assert not flooder.closed
        conn_max = wire.DEFAULT_MAX_MESSAGE + 4
        assert 0 < high_water["buffered"] <= peer.RECV_SIZE + conn_max
        n.cancel_scope.cancel()


@pytest.mark.parametrize("kind", ["choked", "unchoked", "request-cancel"])
async def test_request_flood_is_bounded_and_drops_the_peer(make_swarm, autojump_clock,
                                                           caplog, high_water, kind):
    """100k requests: the queue holds at most MAX_UPLOAD_QUEUE of them, the rest are
    refused, and a peer refused that often is dropped. Requests each cancelled at once
    do not pile up either (and are a waste of time, not a reason to drop a peer)."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm)
        s.add()
        await read_all(s)
        reqs = [raw_message(6, block_fields(i % 10, i // 10 % 32000, 100))  # all distinct
                for i in range(FLOOD)]
        if kind == "request-cancel":
            raw = raw_message(2) + b"".join(
                r + raw_message(8, r[5:]) for r in reqs[:FLOOD // 2])
        else:
            raw = (raw_message(2) if kind == "unchoked" else b"") + b"".join(reqs)
        flooder = s.add(Behaviour(have=set(), raw=raw, answer=False))
        await trio.sleep(5)
        assert high_water["queued"] <= upload.MAX_UPLOAD_QUEUE
        assert high_water["fifo"] <= 2 * upload.MAX_UPLOAD_QUEUE
        assert high_water["buffered"] <= peer.RECV_SIZE + wire.DEFAULT_MAX_MESSAGE + 4
        if kind == "request-cancel":
            assert not flooder.closed
        else:
            assert flooder.closed
            (why,) = closed_reasons(caplog, "fake2")
            assert "requests refused in a row" in why
        # The torrent still serves: a fresh peer's reads, a reader's bytes.
        assert await s.torrent.read(0, 5, 1000) == s.payload[5:1005]
        n.cancel_scope.cancel()


# -- wrong torrent ----------------------------------------------------------------------


@pytest.mark.parametrize("incoming", [False, True], ids=["we-connect", "it-connects"])
async def test_wrong_info_hash_is_dropped_at_once(make_swarm, autojump_clock, caplog,
                                                 incoming):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm)
        stranger = s.add(Behaviour(info_hash=b"\x01" * 20), incoming=incoming)
        await trio.sleep(0.01)
        assert stranger.closed and not stranger.requests
        (why,) = closed_reasons(caplog, "fake1")
        assert "info_hash is not ours" in why
        assert not s.torrent.sessions
        s.add()
        await read_all(s)
        n.cancel_scope.cancel()


# -- stalls ------------------------------------------------------------------------------


async def test_half_a_message_then_silence_is_timed_out(make_swarm, autojump_clock, caplog):
    """Slowloris: the first bytes of a block, then nothing (while our keep-alives
    flow): dropped after PARTIAL_TIMEOUT, long before the idle timeout."""
    half = raw_message(7, block_fields(0, 0) + b"\x00" * BLOCK)[:BLOCK // 2]
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, read_timeout=300)
        loris = s.add(Behaviour(raw=half, mute=True))
        s.add()
        await read_all(s)
        t0 = trio.current_time()
        with trio.fail_after(peer.PARTIAL_TIMEOUT + 5):
            while not loris.closed:
                await trio.sleep(0.25)
        assert trio.current_time() - t0 <= peer.PARTIAL_TIMEOUT + 0.5
        (why,) = closed_reasons(caplog, "fake1")
        assert "half a message pending for 60 s" in why
        n.cancel_scope.cancel()


async def test_a_silent_peer_is_dropped_after_the_idle_timeout_a_quiet_one_is_not(
        make_swarm, autojump_clock, caplog):
    """No byte at all for IDLE_TIMEOUT: dropped then, not much later and not before;
    a peer that only sends a keep-alive now and then stays (the receiver moves its
    deadline lazily: it must still fire on time, and never drop a live peer)."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm)
        mute = s.add(Behaviour(mute=True))
        quiet = s.add(Behaviour(mute=True, keepalive_every=peer.IDLE_TIMEOUT / 3))
        t0 = trio.current_time()
        with trio.fail_after(peer.IDLE_TIMEOUT + 5):
            while not mute.closed:
                await trio.sleep(0.25)
        assert peer.IDLE_TIMEOUT - 1 <= trio.current_time() - t0 <= peer.IDLE_TIMEOUT + 1
        (why,) = closed_reasons(caplog, "fake1")
        assert f"peer silent for {peer.IDLE_TIMEOUT:.0f} s" in why
        await trio.sleep(3 * peer.IDLE_TIMEOUT)
        assert not quiet.closed
        n.cancel_scope.cancel()


async def test_peer_that_unchokes_but_never_delivers_is_dropped(make_swarm, autojump_clock,
                                                                caplog):
    """It unchokes us, takes requests, and sends only keep-alives (so it never looks
    idle): its requests go elsewhere after SNUB_AFTER, and when it has still sent
    nothing after a second round it is dropped, even with nobody else to ask."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, read_timeout=120)
        staller = s.add(Behaviour(answer=False, keepalive_every=5))
        s.add(Behaviour(have=set(range(5))))
        # Pieces 0-4 come from the good peer; piece 8 only the staller has.
        assert await s.torrent.read(0, 0, 5 * PIECE) == s.payload[:5 * PIECE]
        with pytest.raises(ReadTimeout):
            await s.torrent.read(0, 8 * PIECE, 10)
        assert staller.closed and staller.requests
        (why,) = closed_reasons(caplog, "fake1")
        assert "sent no block for 40 s of requests" in why
        n.cancel_scope.cancel()


async def test_peer_hanging_up_mid_block_loses_its_requests_at_once(make_swarm,
                                                                    autojump_clock, caplog):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=20 * PIECE, read_timeout=30)
        quitter = s.add(Behaviour(cut_after=3))
        good = s.add(Behaviour(delay=0.01))
        t0 = trio.current_time()
        await read_all(s)
        assert trio.current_time() - t0 < 1, "no wait for a timeout or a snub"
        assert quitter.closed and len(quitter.requests) > 4
        (why,) = closed_reasons(caplog, "fake1")
        assert "closed mid-message" in why or "connection lost" in why, why
        # Everything asked of the quitter, but the 3 blocks it delivered, was asked of
        # the good peer.
        assert len(set(quitter.requests) - set(good.requests)) == 3
        n.cancel_scope.cancel()


# -- for real: a mount, a libtorrent seeder and hostile peers on loopback ----------------


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_mount_reads_exact_bytes_beside_hostile_peers(tmp_path, mount_torrent):
    """A libtorrent seeder on 127.0.0.2, and on 127.0.0.3 hostile fake peers, one per
    port: one corrupts every block, the others break the protocol in each way above.
    ``cmp`` of the whole file through the mount is exact, and the log says the
    corrupting peer was banned (and the seeder was not)."""
    from tests.harness.fakepeer import serve_fake_peers
    from tests.harness.payload import data_of
    from tests.harness.swarm import lt_seeder
    from torrentfs.core.metainfo import parse
    from torrentfs.disk.create import create_torrent

    data = tmp_path / "data"
    data.mkdir()
    payload = data_of(16 * 1024 * 1024 + 4321, seed=13)
    (data / "hostile.bin").write_bytes(payload)
    torrent_bytes = create_torrent(data / "hostile.bin", piece_length=256 * 1024,
                                   creation_date=0)
    torrent = tmp_path / "hostile.torrent"
    torrent.write_bytes(torrent_bytes)
    meta = parse(torrent_bytes)
    pieces = meta.num_pieces
    unrequested = b"".join(raw_message(7, block_fields(i % pieces, 0) + b"\x00" * BLOCK)
                           for i in range(100))
    requests = b"".join(raw_message(6, block_fields(i % pieces, 0, BLOCK)) for i in range(3000))
    bad_bitfield = raw_message(5, b"\xff" * (pieces // 8) + b"\x01" * (pieces % 8 > 0))
    behaviours = {
        "corrupt": Behaviour(corrupt=set(range(pieces))),
        "oversized": Behaviour(garbage_after=2),
        "spare bits": Behaviour(greeting=bad_bitfield),
        "bad index": Behaviour(raw=have(pieces)),
        "unrequested": Behaviour(raw=unrequested),
        "request flood": Behaviour(raw=requests),
        "half a message": Behaviour(raw=raw_message(7, block_fields(0, 0) + b"\x00" * 99)[:50],
                                    mute=True),
        "mid-block": Behaviour(cut_after=2),
        "wrong torrent": Behaviour(info_hash=b"\x02" * 20),
    }
    with lt_seeder(torrent, data, ip="127.0.0.2") as seeder, \
            serve_fake_peers(meta, payload, "127.0.0.3", list(behaviours.values())) as ports:
        hostile = [a for p in ports for a in ("--peer", f"127.0.0.3:{p}")]
        m = mount_torrent(torrent, "--peer", seeder.endpoint, *hostile)
        r = subprocess.run(["cmp", str(data / "hostile.bin"), str(m.path / "hostile.bin")],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, f"{r.stdout}{r.stderr}\n{m.log[-3000:]}"
        log = m.log
        corrupt = f"<peer 127.0.0.3:{ports[0]}>"
        assert f"banned {corrupt}" in log, log[-5000:]
        assert "banned <peer 127.0.0.2" not in log
        assert "Traceback" not in log and "internal error" not in log
        # Every hostile connection ended (its own fault, or the ban of its address).
        for name, port in zip(behaviours, ports):
            assert f"<peer 127.0.0.3:{port}> closed: " in log, (name, log[-5000:])
