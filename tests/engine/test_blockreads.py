"""Block-level reads of v2 torrents (engine.blockreads), on trio's autojump clock with
fake peers serving at 1 MB/s in the order asked: a 64 KiB read in a 1 MiB piece
waits for its own blocks (whose leaves a peer sent, proved to the piece hash), not
for the piece; bad leaves drop the peer; a peer without them, or a corrupt block,
leaves the read to wait for the whole verified piece; nothing unverified is ever
returned; a v1 torrent reads as before."""

from __future__ import annotations

import pytest
import trio

from tests.harness.fakepeer import Behaviour, Swarm, inline, quiet
from torrentfs.core.metainfo import parse
from torrentfs.disk.create import create_torrent
from torrentfs.engine.torrent import Torrent

MB = 1_000_000
PIECE = 1 << 20
SIZE = 5 * PIECE + 12345
READ = 64 << 10
AT = 2 * PIECE + 600_000  # in the middle of piece 2


def payload_bytes(size: int) -> bytes:
    import hashlib
    out = bytearray()
    n = 0
    while len(out) < size:
        out += hashlib.sha256(b"blockreads:%d" % n).digest()
        n += 1
    return bytes(out[:size])


async def v2_swarm(nursery, tmp_path, version: str = "v2") -> Swarm:
    data = payload_bytes(SIZE)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    meta = parse(create_torrent(src, piece_length=PIECE, creation_date=0, version=version))
    stream = data + bytes(-SIZE % PIECE)  # the padding after the file, as on the wire
    t = Torrent(meta, tmp_path / "cache", quiet(), offload=inline)
    await nursery.start(t.run)
    return Swarm(nursery, t, meta, stream)


@pytest.mark.parametrize("version", ["v2", "hybrid"])
async def test_a_read_waits_for_its_blocks_not_its_piece(tmp_path, autojump_clock, version):
    async with trio.open_nursery() as n:
        s = await v2_swarm(n, tmp_path, version)
        peer = s.add(Behaviour(rate=MB, leaves="answer"))
        await trio.sleep(0.5)
        t = s.torrent
        t0 = trio.current_time()
        data = await t.read(0, AT, READ)
        took = trio.current_time() - t0
        assert bytes(data) == s.payload[AT:AT + READ]
        assert t.reads.blocks.served == 1
        assert [r.length for r in peer.hash_requests] == [64]   # the piece's 64 leaves
        assert t.downloaded < PIECE // 2, t.downloaded          # far from the 1 MiB piece
        assert took < 0.5, took                                 # the piece takes 1.05 s
        assert 2 not in t.have
        # The rest of the piece still comes, verified whole, and reads as before.
        data = await t.read(0, 2 * PIECE, PIECE)
        assert bytes(data) == s.payload[2 * PIECE:3 * PIECE]
        assert 2 in t.have and not t.reads.blocks.bytes
        n.cancel_scope.cancel()


async def test_bad_leaves_drop_the_peer_and_another_is_asked(tmp_path, autojump_clock):
    async with trio.open_nursery() as n:
        s = await v2_swarm(n, tmp_path)
        liar = s.add(Behaviour(rate=MB, leaves="bad"))
        await trio.sleep(0.5)
        honest = s.add(Behaviour(rate=MB, leaves="answer"))
        await trio.sleep(0.5)
        t = s.torrent
        data = await t.read(0, AT, READ)
        assert bytes(data) == s.payload[AT:AT + READ]
        assert liar.closed and len(liar.hash_requests) == 1
        assert honest.hash_requests
        assert len(t.sessions) == 1
        n.cancel_scope.cancel()


@pytest.mark.parametrize("leaves", ["reject", None])
async def test_without_leaves_the_read_waits_for_the_whole_piece(tmp_path, autojump_clock,
                                                                 leaves):
    async with trio.open_nursery() as n:
        s = await v2_swarm(n, tmp_path)
        peer = s.add(Behaviour(rate=MB, leaves=leaves))
        await trio.sleep(0.5)
        t = s.torrent
        data = await t.read(0, AT, READ)
        assert bytes(data) == s.payload[AT:AT + READ]
        assert peer.hash_requests and not peer.closed
        assert t.reads.blocks.served == 0 and 2 in t.have
        n.cancel_scope.cancel()


async def test_a_corrupt_block_is_never_returned(tmp_path, autojump_clock):
    """One peer sends bad blocks of piece 2 (its leaves are right): the read's blocks
    from it fail their leaf, which proves it lied: it is banned at once, and the
    blocks come again from the honest peer."""
    async with trio.open_nursery() as n:
        s = await v2_swarm(n, tmp_path)
        s.add(Behaviour(rate=4 * MB, leaves="answer", corrupt={2}))
        await trio.sleep(0.5)
        s.add(Behaviour(rate=MB, leaves="answer"))
        await trio.sleep(0.5)
        t = s.torrent
        with trio.fail_after(60):
            data = await t.read(0, 2 * PIECE, READ)  # fake peers flip each block's byte 0
        assert bytes(data) == s.payload[2 * PIECE:2 * PIECE + READ]
        assert t.banned_ips == {"fake1"} and t.wasted > 0
        assert 2 not in t.have and t.reads.blocks.served == 1
        n.cancel_scope.cancel()


async def test_a_read_spanning_a_whole_piece_and_a_missing_one(tmp_path, autojump_clock):
    async with trio.open_nursery() as n:
        s = await v2_swarm(n, tmp_path)
        s.add(Behaviour(rate=MB, leaves="answer"))
        await trio.sleep(0.5)
        t = s.torrent
        await t.read(0, PIECE, PIECE)  # piece 1 whole: waited for whole, as in v1
        assert 1 in t.have and t.reads.blocks.served == 0 and not t.reads.blocks.verified
        start = 2 * PIECE - 20_000
        data = await t.read(0, start, READ)
        assert bytes(data) == s.payload[start:start + READ]
        assert 2 not in t.have and t.reads.blocks.served == 1
        n.cancel_scope.cancel()


async def test_the_last_piece_of_the_file_short_block_and_padding(tmp_path, autojump_clock):
    async with trio.open_nursery() as n:
        s = await v2_swarm(n, tmp_path)
        s.add(Behaviour(rate=MB, leaves="answer"))
        await trio.sleep(0.5)
        t = s.torrent
        data = await t.read(0, SIZE - 1000, READ)  # short at the file's end
        assert bytes(data) == s.payload[SIZE - 1000:SIZE]
        assert t.reads.blocks.served == 1
        n.cancel_scope.cancel()


async def test_a_silent_peer_times_the_read_out(tmp_path, autojump_clock):
    from torrentfs.engine.reads import ReadTimeout
    async with trio.open_nursery() as n:
        data = payload_bytes(SIZE)
        src = tmp_path / "big.bin"
        src.write_bytes(data)
        meta = parse(create_torrent(src, piece_length=PIECE, creation_date=0, version="v2"))
        t = Torrent(meta, tmp_path / "cache", quiet(read_timeout=3.0), offload=inline)
        await n.start(t.run)
        s = Swarm(n, t, meta, data + bytes(-SIZE % PIECE))
        s.add(Behaviour(answer=False, leaves=None))
        await trio.sleep(0.5)
        t0 = trio.current_time()
        with pytest.raises(ReadTimeout, match="blocks of piece 2"):
            await t.read(0, AT, READ)
        assert 2.9 < trio.current_time() - t0 < 4.5
        n.cancel_scope.cancel()


async def test_v1_torrents_read_whole_pieces(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        from tests.harness.fakepeer import start
        s = await start(n, make_swarm, size=4 * PIECE, piece_length=PIECE)
        peer = s.add(Behaviour(rate=MB, leaves="answer"))
        await trio.sleep(0.5)
        t = s.torrent
        assert not t.reads.blocks.enabled
        data = await t.read(0, AT - PIECE, READ)
        assert bytes(data) == s.payload[AT - PIECE:AT - PIECE + READ]
        assert not peer.hash_requests and 1 in t.have
        n.cancel_scope.cancel()
