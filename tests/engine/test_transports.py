"""TCP and uTP under one Torrent, on real loopback sockets: a peer that speaks only
uTP is reached (TCP off, or TCP refused), one known to speak uTP is dialed over uTP
first, and incoming uTP is accepted like incoming TCP; the session is the same. A
dial never takes the place of the session a peer opened at the same address."""

from __future__ import annotations

from functools import partial

import trio
import trio.testing

from tests.harness.fakepeer import fake_peer, inline, small_torrent
from torrentfs.engine.options import TorrentOptions
from torrentfs.engine.torrent import Torrent
from torrentfs.net.utp import UtpSocket


def options(**kw) -> TorrentOptions:
    return TorrentOptions(listen_host="127.0.0.1", announce=False, **kw)


async def _utp_peer(nursery, meta, payload) -> UtpSocket:
    async def accept(stream, addr):
        await fake_peer(stream, meta, payload)
    sock = UtpSocket(host="127.0.0.1", accept=accept)
    await nursery.start(sock.run)
    return sock


async def test_reads_from_a_peer_that_speaks_only_utp(tmp_path):
    meta, payload = small_torrent(tmp_path, 3 << 20)
    with trio.fail_after(60):
        async with trio.open_nursery() as n:
            peer = await _utp_peer(n, meta, payload)
            # TCP on: the TCP dial is refused (nothing listens), then uTP.
            t = Torrent(meta, tmp_path / "c1", options(peers=[("127.0.0.1", peer.port)]),
                        offload=inline)
            await n.start(t.run)
            assert await t.read(0, 0, len(payload)) == payload
            s = next(iter(t.sessions.values()))
            assert s.transport == "utp" and t.candidates[("127.0.0.1", peer.port)].utp
            n.cancel_scope.cancel()


async def test_tcp_off_dials_utp_only(tmp_path):
    meta, payload = small_torrent(tmp_path, 1 << 20)
    with trio.fail_after(60):
        async with trio.open_nursery() as n:
            peer = await _utp_peer(n, meta, payload)
            t = Torrent(meta, tmp_path / "c2",
                        options(tcp=False, peers=[("127.0.0.1", peer.port)]), offload=inline)
            await n.start(t.run)
            assert await t.read(0, 1000, 300_000) == payload[1000:301_000]
            n.cancel_scope.cancel()


async def test_incoming_utp_is_a_session_like_tcp(tmp_path):
    """A seeding Torrent accepts a uTP connection on its port; a leeching Torrent
    with TCP off downloads everything from it."""
    meta, payload = small_torrent(tmp_path, 2 << 20)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / meta.name).write_bytes(payload)
    with trio.fail_after(60):
        async with trio.open_nursery() as n:
            seed = Torrent(meta, tmp_path / "s", options(seed_only=True,
                                                         data_dir=tmp_path / "data"),
                           offload=inline)
            await n.start(seed.run)
            leech = Torrent(meta, tmp_path / "l",
                            options(tcp=False, peers=[("127.0.0.1", seed.port)]),
                            offload=inline)
            await n.start(leech.run)
            assert await leech.read(0, 0, len(payload)) == payload
            [s] = [s for s in seed.sessions.values() if not s.closed]
            assert s.transport == "utp" and not s.outgoing
            n.cancel_scope.cancel()


async def test_no_utp_binds_no_udp_socket(tmp_path):
    meta, _ = small_torrent(tmp_path, 1 << 16)
    async with trio.open_nursery() as n:
        t = Torrent(meta, tmp_path / "c", options(utp=False), offload=inline)
        await n.start(t.run)
        assert t.connector.utp is None
        n.cancel_scope.cancel()


async def test_a_peer_known_to_speak_utp_is_dialed_over_utp_first(tmp_path):
    """The peer listens on TCP and uTP (one port number); told by PEX that it speaks
    uTP (the candidate's flag), the torrent dials uTP; not told, TCP."""
    meta, payload = small_torrent(tmp_path, 1 << 20)
    with trio.fail_after(60):
        async with trio.open_nursery() as n:
            peer = await _utp_peer(n, meta, payload)

            async def tcp_handler(stream):
                await fake_peer(stream, meta, payload)
            listeners = await trio.open_tcp_listeners(peer.port, host="127.0.0.1")
            n.start_soon(trio.serve_listeners, tcp_handler, listeners)
            for known, want in ((True, "utp"), (None, "tcp")):
                t = Torrent(meta, tmp_path / f"c-{want}", options(), offload=inline)
                t.connector.add(("127.0.0.1", peer.port), utp=known)
                async with trio.open_nursery() as inner:
                    await inner.start(t.run)
                    assert await t.read(0, 0, 100_000) == payload[:100_000]
                    assert next(iter(t.sessions.values())).transport == want
                    inner.cancel_scope.cancel()
            n.cancel_scope.cancel()


def test_a_link_local_address_without_zone_is_not_a_candidate(tmp_path):
    """PEX (its compact form has no room for a zone) may pass on fe80:: addresses:
    they name no link of ours (TCP cannot dial them, uTP replies come back zoned),
    so only a zoned one, as LSD hears it, is kept."""
    meta, _ = small_torrent(tmp_path, 1 << 16)
    t = Torrent(meta, tmp_path / "c", options(), offload=inline)
    for addr in [("fe80::1", 6881), ("fe80::1%2", 6881), ("2001:db8::1", 6881),
                 ("10.0.0.1", 6881)]:
        t.connector.add(addr)
    assert sorted(t.candidates) == [("10.0.0.1", 6881), ("2001:db8::1", 6881),
                                    ("fe80::1%2", 6881)]


async def test_a_dial_never_replaces_the_session_a_peer_opened_at_that_address(tmp_path):
    """uTP uses one port both ways: a peer that dialed us is at the very address we
    may be dialing it at (both sides dial at once when LSD makes them hear each
    other). The connection that lands second is closed, and the session already at
    that address stays in ``sessions``. Replaced there, it went on unseen, still
    registered: no HAVEs, never scheduled, its requests never served (a real peer
    waits for those until it gives up on us, 20 s later), and the dial ran as a
    second session with the same peer."""
    meta, payload = small_torrent(tmp_path, 1 << 20)
    addr = ("fe80::2%1", 6881)
    with trio.fail_after(60):
        async with trio.open_nursery() as n:
            t = Torrent(meta, tmp_path / "c", options(), offload=inline)
            await n.start(t.run)
            ours, theirs = trio.testing.memory_stream_pair()
            n.start_soon(fake_peer, theirs, meta, payload)
            n.start_soon(partial(t.accept, ours, addr, transport="utp"))
            while not (addr in t.sessions and t.sessions[addr].registered):
                await trio.sleep(0.01)
            first = t.sessions[addr]
            ours, theirs = trio.testing.memory_stream_pair()
            n.start_soon(fake_peer, theirs, meta, payload)
            second = None
            with trio.move_on_after(10):  # replacing it, the dial ran on as a session
                second = await t.attach(ours, addr, transport="utp")
            assert second is not None and second.closed and second.close_reason
            assert t.sessions.get(addr) is first and not first.closed
            assert await t.read(0, 0, len(payload)) == payload
            n.cancel_scope.cancel()
