"""The extension protocol inside a running Torrent: it serves its metadata to a
magnet leecher and exchanges peers (BEP 11) both ways, bounded, or not at all with
--no-pex; scripted peers over memory streams on the autojump clock."""

from __future__ import annotations

import trio
import trio.testing

from tests.harness.fakepeer import ExtBehaviour, ExtStats, ext_peer, quiet, small_torrent
from torrentfs.core import metadata, pex
from torrentfs.engine.torrent import Torrent


async def inline(fn, *args, limiter=None):
    return fn(*args)


def make(tmp_path, size=1 << 20, **kw):
    meta, _ = small_torrent(tmp_path, size, piece_length=16384)
    return meta, Torrent(meta, tmp_path / "cache", quiet(**kw), offload=inline)


def attach(nursery, torrent, addr, behaviour) -> ExtStats:
    ours, theirs = trio.testing.memory_stream_pair()
    stats = ExtStats()
    nursery.start_soon(ext_peer, theirs, torrent.meta.info_hash, behaviour, stats,
                       b"-FX0001-" + f"{addr[1]:012d}".encode())
    nursery.start_soon(torrent.attach, ours, addr)
    return stats


async def test_serves_its_metadata_to_a_magnet_leecher(tmp_path, autojump_clock):
    meta, t = make(tmp_path, 14 << 20)  # 896 hashes: 2 metadata pieces
    async with trio.open_nursery() as n:
        await n.start(t.run)
        st = attach(n, t, ("127.0.0.5", 7000), ExtBehaviour(ask_metadata=True))
        await trio.sleep(1)
        hs = st.handshake
        assert hs.metadata_size == len(meta.info_bytes) and hs.supports("ut_metadata")
        assert hs.supports("ut_pex")
        count = metadata.num_pieces(len(meta.info_bytes))
        assert count >= 2 and sorted(st.metadata) == list(range(count))
        assert b"".join(st.metadata[i].data for i in range(count)) == meta.info_bytes
        n.cancel_scope.cancel()


async def test_learns_peers_by_pex_bounded(tmp_path, autojump_clock):
    meta, t = make(tmp_path, max_peers=1)  # no room: the learned peers stay candidates
    flood = [(f"127.1.{i // 250}.{i % 250 + 1}", 1) for i in range(300)]
    async with trio.open_nursery() as n:
        await n.start(t.run)
        attach(n, t, ("127.0.0.5", 7000), ExtBehaviour(pex=flood))
        await trio.sleep(1)
        learned = set(t.candidates) - {("127.0.0.5", 7000)}
        assert len(learned) == pex.MAX_ACCEPT and learned <= set(flood)
        n.cancel_scope.cancel()


async def test_a_link_local_address_from_pex_is_not_learned(tmp_path, autojump_clock):
    """PEX's compact form has no room for a zone: an fe80:: address it passes on
    names no link of ours, so it is neither a candidate nor counted as learned
    (peers on our link are heard over LSD, zoned)."""
    meta, t = make(tmp_path, max_peers=1)
    async with trio.open_nursery() as n:
        await n.start(t.run)
        attach(n, t, ("127.0.0.5", 7000), ExtBehaviour(
            pex=[("fe80::1", 7001), ("127.0.0.9", 7002)], pex_flags=pex.FLAG_UTP))
        await trio.sleep(1)
        assert set(t.candidates) == {("127.0.0.9", 7002)}
        assert t.candidates[("127.0.0.9", 7002)].utp
        assert t.ext.learned == 1
        n.cancel_scope.cancel()


async def test_tells_each_peer_of_the_others_once_a_minute(tmp_path, autojump_clock):
    meta, t = make(tmp_path)
    a, b, c = ("127.0.0.5", 7000), ("127.0.0.6", 7001), ("127.0.0.7", 7002)
    async with trio.open_nursery() as n:
        await n.start(t.run)
        sa = attach(n, t, a, ExtBehaviour())
        sb = attach(n, t, b, ExtBehaviour())
        await trio.sleep(2)
        assert [m.added for m in sa.pex] == [((b, pex.FLAG_REACHABLE),)]
        assert [m.added for m in sb.pex] == [((a, pex.FLAG_REACHABLE),)]
        attach(n, t, c, ExtBehaviour())
        await trio.sleep(30)
        assert len(sa.pex) == 1  # not again within the minute
        await trio.sleep(35)
        assert sa.pex[1].added == ((c, pex.FLAG_REACHABLE),)
        n.cancel_scope.cancel()


async def test_a_peer_with_nothing_to_learn_is_told_once_another_comes(tmp_path, autojump_clock):
    # Alone, a peer has nothing to be told: the tick skips it while the set of
    # peers stays the same, and tells it at the next tick once that set changes.
    meta, t = make(tmp_path)
    a, b = ("127.0.0.5", 7000), ("127.0.0.6", 7001)
    async with trio.open_nursery() as n:
        await n.start(t.run)
        sa = attach(n, t, a, ExtBehaviour())
        await trio.sleep(10)
        assert sa.pex == []
        attach(n, t, b, ExtBehaviour())
        await trio.sleep(2)
        assert [m.added for m in sa.pex] == [((b, pex.FLAG_REACHABLE),)]
        n.cancel_scope.cancel()


async def test_no_pex_neither_tells_nor_listens(tmp_path, autojump_clock):
    meta, t = make(tmp_path, pex=False)
    async with trio.open_nursery() as n:
        await n.start(t.run)
        sa = attach(n, t, ("127.0.0.5", 7000), ExtBehaviour(pex=[("127.1.0.1", 1)]))
        attach(n, t, ("127.0.0.6", 7001), ExtBehaviour())
        await trio.sleep(70)
        assert not sa.handshake.supports("ut_pex") and sa.handshake.supports("ut_metadata")
        assert sa.pex == [] and ("127.1.0.1", 1) not in t.candidates
        n.cancel_scope.cancel()


def test_we_advertise_the_request_queue_we_keep():
    """BEP 10 'reqq' tells a peer how many requests it may keep queued with us: the
    uploader must take that many, or the peer's extra requests are rejected and sent
    again, over and over (what kept uploads to libtorrent at 12 MB/s)."""
    from torrentfs.engine import peerext, upload
    assert peerext.REQQ == upload.MAX_UPLOAD_QUEUE

async def test_a_peer_telling_its_ipv6_address_becomes_a_candidate(tmp_path, autojump_clock):
    """BEP 7: an IPv4 peer whose extension handshake names an IPv6 address and a
    listen port is dialed there too; our handshake tells it the address we see."""
    meta, t = make(tmp_path)
    async with trio.open_nursery() as n:
        await n.start(t.run)
        st = attach(n, t, ("127.0.0.5", 7000),
                    ExtBehaviour(listen_port=6999, extra_handshake={b"ipv6": bytes(15) + b"\x01"}))
        await trio.sleep(1)
        assert ("::1", 6999) in t.candidates
        assert st.handshake.yourip == "127.0.0.5"
        n.cancel_scope.cancel()


async def test_a_pex_peer_preferring_encryption_is_dialed_encrypted(tmp_path, autojump_clock):
    """PEX flag 0x01: the connector dials that address with MSE first."""
    meta, t = make(tmp_path, max_peers=1)  # no room: the learned peers stay candidates
    async with trio.open_nursery() as n:
        await n.start(t.run)
        attach(n, t, ("127.0.0.5", 7000), ExtBehaviour(pex=[("127.1.0.1", 1), ("127.1.0.2", 2)],
                                                       pex_flags=pex.FLAG_ENCRYPTION))
        await trio.sleep(1)
        assert t.candidates[("127.1.0.1", 1)].encrypt is True
        n.cancel_scope.cancel()


async def test_encrypted_peers_are_flagged_in_pex(tmp_path, autojump_clock):
    """A peer whose session is RC4-encrypted is told to the others with flag 0x01."""
    from torrentfs.net import mse
    meta, t = make(tmp_path)
    a, b = ("127.0.0.5", 7000), ("127.0.0.6", 7001)
    async with trio.open_nursery() as n:
        await n.start(t.run)
        sa = attach(n, t, a, ExtBehaviour())
        ours, theirs = trio.testing.memory_stream_pair()
        got = {}

        async def respond():
            got["in"] = await mse.open_incoming(theirs, [meta.info_hash], "require")
        n.start_soon(respond)
        ours = await mse.initiate(ours, meta.info_hash, require=True)
        await trio.sleep(0.1)
        n.start_soon(ext_peer, got["in"].stream, meta.info_hash, ExtBehaviour(), ExtStats(),
                     b"-FX0001-" + b"0" * 12)
        n.start_soon(t.attach, ours, b)
        await trio.sleep(2)
        assert [m.added for m in sa.pex] == \
            [((b, pex.FLAG_REACHABLE | pex.FLAG_ENCRYPTION),)]
        n.cancel_scope.cancel()


async def test_pex_utp_flag_marks_the_candidate(tmp_path, autojump_clock):
    meta, t = make(tmp_path, max_peers=1)
    utp_peer, plain = ("127.0.3.1", 6881), ("127.0.3.2", 6881)
    async with trio.open_nursery() as n:
        await n.start(t.run)
        attach(n, t, ("127.0.0.5", 7000),
               ExtBehaviour(pex=[(utp_peer, pex.FLAG_UTP), plain]))
        await trio.sleep(1)
        assert t.candidates[utp_peer].utp is True
        assert t.candidates[plain].utp is None
        n.cancel_scope.cancel()
