"""The connector's dialing (engine/connector.py): over memory streams on the
autojump clock, with the dials recorded instead of made."""

from __future__ import annotations

import trio
import trio.testing

from tests.harness.fakepeer import ExtBehaviour, ExtStats, ext_peer, quiet, small_torrent
from torrentfs.engine.torrent import Torrent


async def inline(fn, *args, limiter=None):
    return fn(*args)


async def test_a_peer_that_reached_us_is_not_dialed_at_its_listen_address(tmp_path,
                                                                           autojump_clock):
    """A peer connected to us names its listen port in its extension handshake:
    dialing that address (learned from PEX or a tracker) would only make a twin
    connection, refused after both handshakes, again at every retry."""
    meta, _ = small_torrent(tmp_path, 1 << 20, piece_length=16384)
    t = Torrent(meta, tmp_path / "cache", quiet(), offload=inline)
    dialed = []

    async def dial(addr, cand):
        dialed.append(addr)
        t.connector.connecting.discard(addr)

    t.connector._dial = dial
    async with trio.open_nursery() as n:
        await n.start(t.run)
        ours, theirs = trio.testing.memory_stream_pair()
        n.start_soon(ext_peer, theirs, meta.info_hash, ExtBehaviour(listen_port=7000),
                     ExtStats(), b"-FX0001-" + bytes(12))
        n.start_soon(t.accept, ours, ("127.0.0.5", 50123))
        await trio.sleep(1)
        t.add_peer(("127.0.0.5", 7000))   # the peer that connected to us
        t.add_peer(("127.0.0.6", 7000))   # another
        await trio.sleep(5)
        assert ("127.0.0.6", 7000) in dialed
        assert ("127.0.0.5", 7000) not in dialed
        n.cancel_scope.cancel()


async def test_a_full_torrent_makes_room_for_a_peer_that_dials_it(tmp_path, autojump_clock):
    """At max_peers, a peer that dials us replaces the session we would miss least,
    once that is older than admission.PROTECT and at most one per REPLACE_EVERY:
    in a swarm larger than max_peers the nodes that started first fill their slots
    with each other, and a late joiner would otherwise be refused by every one."""
    from torrentfs.core.admission import PROTECT, REPLACE_EVERY
    from torrentfs.engine.options import TorrentOptions

    meta, _ = small_torrent(tmp_path, 1 << 20, piece_length=16384)
    t = Torrent(meta, tmp_path / "cache", TorrentOptions(max_peers=2), offload=inline)
    ended: dict[str, float] = {}

    async def peer(name, n):
        ours, theirs = trio.testing.memory_stream_pair()

        async def run():
            try:
                await ext_peer(theirs, meta.info_hash, ExtBehaviour(), ExtStats(),
                               b"-FX0001-" + bytes([n]) * 12)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass   # closed while it sent its handshake
            ended[name] = trio.current_time()

        n_.start_soon(run)
        n_.start_soon(t.accept, ours, (f"127.0.0.{n}", 50000 + n))
        await trio.sleep(0.5)

    async with trio.open_nursery() as n_:
        await n_.start(t.run)
        await peer("a", 1)
        await peer("b", 2)
        await peer("c", 3)       # full, and a and b are too young to make room
        assert set(t.sessions) == {("127.0.0.1", 50001), ("127.0.0.2", 50002)}
        assert "c" in ended and not {"a", "b"} & set(ended)
        assert not t.connector.admissible(("127.0.0.9", 50009))
        await trio.sleep(PROTECT)
        assert t.connector.admissible(("127.0.0.9", 50009))
        await peer("d", 4)       # a replaced (neither sent a block: the oldest)
        await peer("e", 5)       # one replacement per REPLACE_EVERY: refused
        assert "a" in ended and "b" not in ended and "e" in ended
        assert ("127.0.0.4", 50004) in t.sessions
        assert ("127.0.0.5", 50005) not in t.sessions
        await trio.sleep(REPLACE_EVERY)
        await peer("f", 6)       # b goes; d is too young
        assert "b" in ended and "d" not in ended
        assert set(t.sessions) == {("127.0.0.4", 50004), ("127.0.0.6", 50006)}
        n_.cancel_scope.cancel()


async def test_a_peer_that_would_be_refused_is_closed_before_its_handshake(tmp_path,
                                                                          autojump_clock):
    """A full torrent closes a uTP connection at once, not after the (encrypted)
    handshake it would run and then refuse: that handshake costs a Diffie-Hellman,
    and a peer whose encrypted handshake succeeded and was then closed cannot tell
    a full peer from one that refuses it (it logged "expected a handshake", again at
    each retry)."""
    from torrentfs.engine.options import TorrentOptions

    meta, _ = small_torrent(tmp_path, 1 << 20, piece_length=16384)
    t = Torrent(meta, tmp_path / "cache", TorrentOptions(max_peers=1), offload=inline)
    async with trio.open_nursery() as n:
        await n.start(t.run)
        ours, theirs = trio.testing.memory_stream_pair()
        n.start_soon(ext_peer, theirs, meta.info_hash, ExtBehaviour(), ExtStats(),
                     b"-FX0001-" + bytes(12))
        n.start_soon(t.accept, ours, ("127.0.0.1", 50001))
        await trio.sleep(1)
        ours, theirs = trio.testing.memory_stream_pair()
        start = trio.current_time()
        await t.connector.handle_incoming_utp(ours, ("127.0.0.2", 50002))  # sends nothing
        assert trio.current_time() - start < 1
        assert await theirs.receive_some() == b""   # closed, nothing said
        n.cancel_scope.cancel()


async def test_the_last_tenth_of_the_slots_is_left_to_peers_that_dial_us(autojump_clock):
    """A torrent dials up to max_peers less a tenth (from 10 up): a peer that lost a
    session to a newcomer (replaced) does not dial a full peer at once, replacing
    one of its sessions in turn, round a swarm larger than max_peers."""
    from types import SimpleNamespace

    from torrentfs.engine.connector import Connector
    from torrentfs.engine.options import TorrentOptions

    for max_peers, open_, dials in ((50, 40, 5), (50, 45, 0), (10, 7, 2), (5, 3, 2)):
        t = SimpleNamespace(options=TorrentOptions(max_peers=max_peers), banned_ips=set(),
                            sessions={("10.0.0.1", i): object() for i in range(open_)})
        c = Connector(t, max_peers=max_peers)
        dialed = []

        async def dial(addr, cand, c=c, dialed=dialed):
            dialed.append(addr)   # still dialing: counts against the room
        c._dial = dial
        for i in range(20):
            c.add(("10.0.0.2", 7000 + i))
        async with trio.open_nursery() as n:
            n.start_soon(c.run)
            await trio.sleep(3)
            n.cancel_scope.cancel()
        assert len(dialed) == dials, (max_peers, open_)


async def test_another_address_of_a_peer_we_have_is_not_dialed_while_we_have_it(
        tmp_path, autojump_clock):
    """A peer dialed at one address answers with the peer id of a session we have
    (reached at another: IPv4 from the tracker, IPv6 link-local from LSD): refused
    as a twin, that address is not dialed again while the session lasts (each twin
    cost both ends a handshake, again at every retry), and is once it ended."""
    meta, _ = small_torrent(tmp_path, 1 << 20, piece_length=16384)
    t = Torrent(meta, tmp_path / "cache", quiet(), offload=inline)
    twin_id = b"-FX0001-" + b"t" * 12
    opened = []

    async def open_(addr, cand):
        opened.append(addr)
        ours, theirs = trio.testing.memory_stream_pair()
        n.start_soon(quiet_peer, theirs)
        return ours, "tcp"

    async def quiet_peer(stream):
        try:
            await ext_peer(stream, meta.info_hash, ExtBehaviour(), ExtStats(), twin_id)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass

    t.connector._open = open_
    first = trio.CancelScope()

    async def first_session(ours):
        with first:
            await t.accept(ours, ("127.0.0.5", 50123))

    async with trio.open_nursery() as n:
        await n.start(t.run)
        ours, theirs = trio.testing.memory_stream_pair()
        n.start_soon(quiet_peer, theirs)
        n.start_soon(first_session, ours)
        await trio.sleep(1)
        assert ("127.0.0.5", 50123) in t.sessions
        t.add_peer(("10.0.0.5", 6881))   # the same peer at another address
        await trio.sleep(1)
        assert opened == [("10.0.0.5", 6881)]
        assert ("10.0.0.5", 6881) not in t.sessions   # refused as a twin
        await trio.sleep(60)     # its back-off (15 s) ran out long ago
        assert ("127.0.0.5", 50123) in t.sessions
        assert opened == [("10.0.0.5", 6881)]
        first.cancel()           # the session at the first address ends
        await trio.sleep(60)
        assert opened.count(("10.0.0.5", 6881)) >= 2
        assert ("10.0.0.5", 6881) in t.sessions
        n.cancel_scope.cancel()


async def test_a_peer_refusing_plain_text_is_dialed_encrypted_again_after_a_failed_try(
        tmp_path, autojump_clock):
    """With --encryption prefer, a peer that closes plain connections is dialed
    encrypted at once; when that one encrypted handshake fails (libtorrent 2.0.8
    drops 1 in 256, net/mse.py), the next try is plain again, refused again, and the
    try after that encrypted again: the peer is not left to plain text for good."""
    from torrentfs.core import mse as core_mse
    from torrentfs.net import mse

    meta, _ = small_torrent(tmp_path, 1 << 20, piece_length=16384)
    t = Torrent(meta, tmp_path / "cache", quiet(utp=False), offload=inline)
    addr = ("127.0.0.7", 6881)
    tries: list[str] = []

    async def peer(theirs):
        head = await theirs.receive_some(20)
        if core_mse.looks_plain(head):
            tries.append("plain")
            await theirs.aclose()
            return
        tries.append("encrypted")
        if tries.count("encrypted") == 1:   # the one that fails
            await theirs.aclose()
            return
        inc = await mse.open_incoming(mse.EncryptedStream(theirs, head=head),
                                      [meta.info_hash], "require")
        await ext_peer(inc.stream, meta.info_hash, ExtBehaviour(), ExtStats(),
                       b"-LT2080-" + bytes(12))

    async def open_(addr_, cand):
        ours, theirs = trio.testing.memory_stream_pair()
        n.start_soon(peer, theirs)
        return ours, "tcp"

    t.connector._open = open_
    async with trio.open_nursery() as n:
        await n.start(t.run)
        t.add_peer(addr)
        for _ in range(600):
            if addr in t.sessions and t.sessions[addr].peer_id is not None:
                break
            await trio.sleep(1)
        assert tries == ["plain", "encrypted", "plain", "encrypted"]
        assert t.sessions[addr].peer_id == b"-LT2080-" + bytes(12)
        n.cancel_scope.cancel()
