"""BEP 55 holepunch inside a running Torrent (engine/holepunch.py), with scripted
peers over memory streams on the autojump clock: we offer ut_holepunch, relay a
rendezvous between two peers we are connected to (connect to both), answer errors,
survive malformed messages and floods, flag holepunch peers in PEX, ask a relay
for a peer we cannot dial, and dial over uTP when told to connect.
What this does not show: NAT traversal itself (no NAT here)."""

from __future__ import annotations

import trio
import trio.testing

from tests.harness.fakepeer import ExtBehaviour, ExtStats, ext_peer, quiet, small_torrent
from torrentfs.core import holepunch as hp
from torrentfs.core import pex
from torrentfs.core.holepunch import CONNECT, ERROR, RENDEZVOUS, Message
from torrentfs.engine.torrent import Torrent

A, B, C = ("127.0.0.5", 7000), ("127.0.0.6", 7001), ("127.0.0.7", 7002)


async def inline(fn, *args, limiter=None):
    return fn(*args)


def make(tmp_path, **kw):
    meta, _ = small_torrent(tmp_path, 1 << 20, piece_length=16384)
    return Torrent(meta, tmp_path / "cache", quiet(**kw), offload=inline)


def attach(nursery, torrent, addr, behaviour) -> ExtStats:
    ours, theirs = trio.testing.memory_stream_pair()
    stats = ExtStats()
    nursery.start_soon(ext_peer, theirs, torrent.meta.info_hash, behaviour, stats,
                       b"-FX0001-" + f"{addr[1]:012d}".encode())
    nursery.start_soon(torrent.attach, ours, addr)
    return stats


def got(stats: ExtStats) -> list[Message]:
    return [hp.decode(p) for p in stats.holepunch]


async def test_relays_a_rendezvous_between_two_peers(tmp_path, autojump_clock):
    t = make(tmp_path)
    async with trio.open_nursery() as n:
        await n.start(t.run)
        sb = attach(n, t, B, ExtBehaviour(holepunch=True))
        await trio.sleep(1)
        assert sb.handshake.supports("ut_holepunch")
        sa = attach(n, t, A, ExtBehaviour(holepunch=True, holepunch_send=[
            hp.encode(Message(RENDEZVOUS, B))]))
        await trio.sleep(1)
        assert got(sa) == [Message(CONNECT, B)]
        assert got(sb) == [Message(CONNECT, A)]
        assert t.ext.holepunch.relayed == 1
        n.cancel_scope.cancel()


async def test_relay_errors_junk_and_floods(tmp_path, autojump_clock):
    t = make(tmp_path)
    junk = [b"", b"\x07\x00", bytes([0, 0, 1, 2, 3, 4, 0, 0]), bytes([0, 9]) + bytes(20)]
    async with trio.open_nursery() as n:
        await n.start(t.run)
        sb = attach(n, t, B, ExtBehaviour(holepunch=True))
        sc = attach(n, t, C, ExtBehaviour())                 # no ut_holepunch
        await trio.sleep(1)
        flood = [hp.encode(Message(RENDEZVOUS, B))] * 100
        sa = attach(n, t, A, ExtBehaviour(holepunch=True, holepunch_send=[
            *junk, hp.encode(Message(RENDEZVOUS, ("10.9.9.9", 1))),
            hp.encode(Message(RENDEZVOUS, C)), hp.encode(Message(RENDEZVOUS, A)), *flood]))
        await trio.sleep(1)
        answers = got(sa)
        assert answers[:3] == [Message(ERROR, ("10.9.9.9", 1), hp.NOT_CONNECTED),
                               Message(ERROR, C, hp.NO_SUPPORT),
                               Message(ERROR, A, hp.NO_SUCH_PEER)]
        # the burst allows 5 rendezvous: 3 spent above, 2 of the flood relayed
        assert answers[3:] == [Message(CONNECT, B)] * 2
        assert got(sb) == [Message(CONNECT, A)] * 2 and sc.holepunch == []
        assert not sa.closed and A in t.sessions        # junk is no reason to drop it
        n.cancel_scope.cancel()


async def test_holepunch_peers_are_flagged_in_pex(tmp_path, autojump_clock):
    t = make(tmp_path)
    async with trio.open_nursery() as n:
        await n.start(t.run)
        sa = attach(n, t, A, ExtBehaviour())
        attach(n, t, B, ExtBehaviour(holepunch=True))
        attach(n, t, C, ExtBehaviour())
        await trio.sleep(2)
        flags = dict(a for m in sa.pex for a in m.added)
        assert flags[B] & pex.FLAG_HOLEPUNCH and not flags[C] & pex.FLAG_HOLEPUNCH
        n.cancel_scope.cancel()


async def test_no_utp_no_holepunch(tmp_path, autojump_clock):
    t = make(tmp_path, utp=False)
    async with trio.open_nursery() as n:
        await n.start(t.run)
        sa = attach(n, t, A, ExtBehaviour(holepunch=True))
        await trio.sleep(1)
        assert not sa.handshake.supports("ut_holepunch") and t.ext.holepunch is None
        n.cancel_scope.cancel()


class FakeUtp:
    """Stands for the uTP socket: each connect gets a memory stream to a scripted peer."""

    def __init__(self, nursery, info_hash):
        self.nursery, self.info_hash, self.dialed, self.peers = nursery, info_hash, [], []

    async def connect(self, addr, timeout=4.0):
        self.dialed.append(addr)
        ours, theirs = trio.testing.memory_stream_pair()
        stats = ExtStats()
        self.peers.append(stats)
        self.nursery.start_soon(ext_peer, theirs, self.info_hash, ExtBehaviour(), stats,
                                b"-FX0001-" + b"9" * 12)
        return ours


async def test_a_connect_dials_utp_and_an_unreachable_peer_gets_a_rendezvous(
        tmp_path, autojump_clock, caplog):
    import logging
    caplog.set_level(logging.INFO, "torrentfs.holepunch")
    t = make(tmp_path)
    async with trio.open_nursery() as n:
        await n.start(t.run)
        t.connector.utp = utp = FakeUtp(n, t.meta.info_hash)
        target = ("10.1.1.1", 6881)
        # the relay tells of the target by PEX with the holepunch flag, then asks us
        # to connect to it (as the other side of its rendezvous)
        sr = attach(n, t, A, ExtBehaviour(holepunch=True, pex=[target],
                                          pex_flags=pex.FLAG_HOLEPUNCH | pex.FLAG_UTP,
                                          holepunch_send=[hp.encode(Message(CONNECT, target))]))
        await trio.sleep(1)
        assert utp.dialed == [target]
        assert target in t.sessions and t.sessions[target].transport == "utp"
        assert utp.peers[0].handshake is not None
        assert t.ext.holepunch.via[target] is t.sessions[A]
        # a peer no transport reaches: the relay that told of it is asked, once a minute
        other = ("10.2.2.2", 6881)
        t.ext.holepunch.via[other] = t.sessions[A]
        t.connector.on_unreachable(other)
        t.connector.on_unreachable(other)
        await trio.sleep(1)
        assert got(sr) == [Message(RENDEZVOUS, other)]
        await trio.sleep(hp.RETRY_AFTER)
        t.connector.on_unreachable(other)
        await trio.sleep(1)
        assert got(sr) == [Message(RENDEZVOUS, other)] * 2
        n.cancel_scope.cancel()
    assert caplog.text.count("to put us in touch with 10.2.2.2:6881") == 2, caplog.text
