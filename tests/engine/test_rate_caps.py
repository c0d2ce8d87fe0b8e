"""Rate caps deliver what they say: a leecher under ``download_rate`` and a seed under
``upload_rate`` move between 90 and 105 % of the cap, measured over many seconds of
trio's autojump clock (two Torrents linked by in-memory streams, or fake peers that
answer at once). The caps are applied where the bytes are: the download cap as
blocks are read off a peer's socket (``peer.PeerSession``), the upload cap as blocks
are sent (``upload.Uploader``)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tests.harness.fakepeer import inline, quiet, small_torrent, start
from torrentfs.engine.torrent import Torrent

M = 1_000_000
PIECE = 256 << 10


async def measure(torrent: Torrent, warmup: float = 1.0, span: float = 4.0) -> float:
    """Bytes/s the torrent downloads over ``span`` seconds after ``warmup``."""
    await trio.sleep(warmup)
    d0, t0 = torrent.downloaded, trio.current_time()
    await trio.sleep(span)
    return (torrent.downloaded - d0) / (trio.current_time() - t0)


@pytest.mark.parametrize("cap", [M, 4 * M])
async def test_download_cap_holds_with_two_fast_peers(make_swarm, autojump_clock, cap):
    """Two peers that answer at once: together they are held to the cap. (The cap
    once measured 30-40 % of itself: the wait of each block was counted from the
    time the socket was read, so blocks parsed after a wait waited it again.)"""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, size=24 << 20, piece_length=PIECE,
                        download_rate=cap, prefetch=True)
        s.add()
        s.add()
        rate = await measure(s.torrent)
        assert 0.90 * cap <= rate <= 1.05 * cap, rate / cap
        n.cancel_scope.cancel()


def pair(tmp_path, size: int, seed_opts: dict, leech_opts: dict) -> tuple[Torrent, Torrent]:
    """A seed serving the payload from its folder and an empty leecher that
    downloads everything (prefetch)."""
    meta, _ = small_torrent(tmp_path, size, PIECE)
    seed = Torrent(meta, tmp_path / "seed-cache",
                   quiet(seed_only=True, data_dir=tmp_path, **seed_opts), offload=inline)
    leech = Torrent(meta, tmp_path / "leech-cache", quiet(prefetch=True, **leech_opts),
                    offload=inline)
    return seed, leech


async def linked(nursery, seed: Torrent, leech: Torrent) -> None:
    await nursery.start(seed.run)
    await nursery.start(leech.run)
    ours, theirs = trio.testing.memory_stream_pair()
    nursery.start_soon(leech.attach, ours, ("seed", 6881))
    nursery.start_soon(seed.accept, theirs, ("leech", 6881))


async def test_upload_cap_holds(tmp_path, autojump_clock):
    cap = M
    seed, leech = pair(tmp_path, 8 << 20, {"upload_rate": cap}, {})
    async with trio.open_nursery() as n:
        await linked(n, seed, leech)
        rate = await measure(leech)
        assert 0.90 * cap <= rate <= 1.05 * cap, rate / cap
        assert seed.uploaded >= leech.downloaded
        n.cancel_scope.cancel()


async def test_download_cap_holds_against_a_real_seed(tmp_path, autojump_clock):
    cap = M
    seed, leech = pair(tmp_path, 8 << 20, {}, {"download_rate": cap})
    async with trio.open_nursery() as n:
        await linked(n, seed, leech)
        rate = await measure(leech)
        assert 0.90 * cap <= rate <= 1.05 * cap, rate / cap
        n.cancel_scope.cancel()
