"""multi: many torrents served together (no FUSE here: a recording stand-in for the
filesystem). Routing by info-hash, the shared limits, and following a folder of
.torrent files. Real loopback sockets; every wait bounded."""

from __future__ import annotations

import errno
import logging
import shutil
from pathlib import Path

import pyfuse3
import pytest
import trio
import trio.testing

from tests.harness.fakepeer import fake_peer, quiet, small_torrent
from torrentfs.core import wire
from torrentfs.core.tree import ROOT_INODE, Tree
from torrentfs.disk.create import create_torrent
from torrentfs.engine.multi import (
    MultiMount,
    Shared,
)
from torrentfs.engine.options import TorrentOptions
from torrentfs.engine.sources import Skip, Source, load_file
from torrentfs.engine.torrent import Torrent
from torrentfs.fs.multifs import SLOT_BITS, MultiFS

LIMIT = 20  # seconds any one test may take


def write_torrent(folder: Path, name: str, size: int, seed: int, out: Path) -> bytes:
    """A single-file torrent ``name`` of ``size`` bytes written to ``out``; its payload."""
    folder.mkdir(parents=True, exist_ok=True)
    meta, payload = small_torrent(folder, size, seed=seed)
    src = folder / name
    (folder / "payload.bin").rename(src)
    out.write_bytes(create_torrent(src, piece_length=32768, creation_date=0))
    return src.read_bytes()


class RecordingFS:
    """What MultiMount tells the filesystem, recorded; names made unique as MultiFS does."""

    def __init__(self) -> None:
        self.shown: dict[str, Torrent] = {}
        self.removed: list[str] = []

    def add(self, name, torrent, tree):
        from torrentfs.core.watchdir import unique_name
        name = unique_name(name, self.shown)
        self.shown[name] = torrent
        return name

    def remove(self, name):
        del self.shown[name]
        self.removed.append(name)

    def names(self):
        return list(self.shown)


# -- pure helpers ------------------------------------------------------------------

def test_loaders(tmp_path):
    write_torrent(tmp_path / "d", "x.bin", 1000, 1, tmp_path / "x.TORRENT")
    assert load_file(tmp_path / "x.TORRENT").meta.name == "x.bin"
    (tmp_path / "y.magnet").write_text("magnet:?xt=urn:btih:" + "a" * 40)
    with pytest.raises(Skip, match="magnet links need the CLI's loader"):
        load_file(tmp_path / "y.magnet")
    (tmp_path / "z.torrent").write_bytes(b"garbage")
    with pytest.raises(Skip, match="not a torrent file"):
        load_file(tmp_path / "z.torrent")


# -- shared limits --------------------------------------------------------------------

def test_torrents_share_rate_limits_and_the_peer_cap(tmp_path):
    for d in "ab":
        (tmp_path / d).mkdir()
    shared = Shared(max_peers=3, upload_rate=1000, download_rate=2000)
    ta = Torrent(small_torrent(tmp_path / "a", 5000, seed=1)[0], tmp_path / "ca",
                 quiet(max_peers=3), shared=shared)
    tb = Torrent(small_torrent(tmp_path / "b", 5000, seed=2)[0], tmp_path / "cb",
                 quiet(max_peers=3), shared=shared)
    shared.torrents += [ta, tb]
    assert ta.uploads.limit is tb.uploads.limit is shared.upload
    assert ta.download_limit is tb.download_limit is shared.download
    assert shared.upload.rate == 1000 and shared.download.rate == 2000
    assert ta.connector.room() and tb.connector.room()
    ta.sessions[("10.0.0.1", 1)] = object()
    ta.sessions[("10.0.0.2", 1)] = object()
    assert tb.connector.room() and ta.connector.room()
    ta.connector.connecting.add(("10.0.0.3", 1))  # a connection being made counts too
    # B has no peer of its own, but the mount's three are taken.
    assert not tb.connector.room() and not ta.connector.room()
    ta.connector.connecting.clear()
    assert tb.connector.room()
    shared.torrents.remove(ta)  # a stopped torrent's peers no longer count
    ta.connector.connecting.add(("10.0.0.3", 1))
    assert tb.connector.room()


# -- the filesystem's root ---------------------------------------------------------------

async def test_multifs_root_follows_adds_and_removes(tmp_path):
    calls = []
    fs = MultiFS(invalidate=lambda *a, **kw: calls.append((a, kw)))
    for d in "12":
        (tmp_path / d).mkdir()
    meta1, _ = small_torrent(tmp_path / "1", 100_000, seed=1)
    meta2, _ = small_torrent(tmp_path / "2", 100_000, seed=2)
    t1 = Torrent(meta1, tmp_path / "c1", quiet())
    t2 = Torrent(meta2, tmp_path / "c2", quiet())
    assert fs.add(meta1.name, t1, Tree.from_metainfo(meta1)) == "payload.bin"
    assert fs.add(meta2.name, t2, Tree.from_metainfo(meta2)) == "payload.bin (2)"
    assert calls == []  # a new name needs no word to the kernel

    root = await fs.getattr(ROOT_INODE)
    assert root.st_nlink == 4
    folder = await fs.lookup(ROOT_INODE, b"payload.bin (2)")
    assert folder.st_ino >> SLOT_BITS == 2 and stat_is_dir(folder.st_mode)
    file2 = await fs.lookup(folder.st_ino, b"payload.bin")
    assert file2.st_size == 100_000 and file2.st_ino >> SLOT_BITS == 2
    file1 = await fs.lookup((await fs.lookup(ROOT_INODE, b"payload.bin")).st_ino,
                            b"payload.bin")
    assert file1.st_ino >> SLOT_BITS == 1 and file1.st_ino != file2.st_ino
    assert (await fs.getattr(file2.st_ino)).st_size == 100_000

    info = await fs.open(file2.st_ino, 0, None)
    fs.remove("payload.bin (2)")
    assert calls == [((ROOT_INODE, b"payload.bin (2)"), {"ignore_enoent": True})]
    with pytest.raises(pyfuse3.FUSEError) as e:
        await fs.lookup(ROOT_INODE, b"payload.bin (2)")
    assert e.value.errno == errno.ENOENT
    # The open file: its reads fail with EIO; it can still be looked at and closed.
    with pytest.raises(pyfuse3.FUSEError) as e:
        await fs.read(info.fh, 0, 4096)
    assert e.value.errno == errno.EIO
    assert (await fs.getattr(file2.st_ino)).st_size == 100_000
    await fs.release(info.fh)
    with pytest.raises(pyfuse3.FUSEError) as e:  # let go at the last close
        await fs.getattr(file2.st_ino)
    assert e.value.errno == errno.ENOENT
    assert (await fs.getattr(ROOT_INODE)).st_nlink == 3
    assert (await fs.statfs(None)).f_blocks == (100_000 + 511) // 512


def stat_is_dir(mode: int) -> bool:
    import stat
    return stat.S_ISDIR(mode)


# -- a watched folder, served -------------------------------------------------------------

@pytest.fixture
def watched(tmp_path):
    d = tmp_path / "watched"
    d.mkdir()
    return d


async def start_multi(nursery, watched: Path, cache: Path, fs=None) -> MultiMount:
    mm = MultiMount(watched, fs or RecordingFS(), cache, Shared(10), listen_host="127.0.0.1",
                    torrent_options=TorrentOptions(announce=False))
    mm.poll = 3600  # the test scans when it means to
    await nursery.start(mm.run)
    return mm


async def test_follows_the_folder(tmp_path, watched, caplog):
    caplog.set_level(logging.INFO, "torrentfs.multi")
    write_torrent(tmp_path / "p1", "same", 40_000, 1, watched / "a.torrent")
    write_torrent(tmp_path / "p2", "same", 50_000, 2, watched / "b.torrent")
    shutil.copy(watched / "a.torrent", watched / "c-dup.torrent")
    (watched / "broken.torrent").write_bytes(b"d4:infoi3ee")
    (watched / "link.magnet").write_text("magnet:?xt=urn:btih:" + "b" * 40)
    (watched / "readme.txt").write_text("hello")
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            mm = await start_multi(nursery, watched, tmp_path / "cache")
            fs = mm.fs
            assert sorted(fs.names()) == ["same", "same (2)"]
            for _ in range(3):
                await mm.scan()
            text = caplog.text
            assert text.count("skipped broken.torrent") == 1
            assert text.count("skipped c-dup.torrent: the same torrent as a.torrent") == 1
            assert text.count("skipped link.magnet: magnet links need the CLI's loader") == 1
            assert "readme" not in text

            # A new file shows once it has settled (two listings alike).
            write_torrent(tmp_path / "p3", "third", 30_000, 3, watched / "d.torrent")
            await mm.scan()
            assert "third" not in fs.names()
            await mm.scan()
            assert "third" in fs.names()

            # A removed file: its folder goes, its torrent stops and saves.
            b_hash = fs.shown["same (2)"].meta.info_hash.hex()
            (watched / "b.torrent").unlink()
            await mm.scan()
            assert fs.removed == ["same (2)"]
            assert sorted(fs.names()) == ["same", "third"]
            assert (tmp_path / "cache" / b_hash / "resume").exists()
            assert mm.shared.torrents == [fs.shown["same"], fs.shown["third"]]

            # The duplicate's turn comes when the file it repeats goes.
            a_torrent = fs.shown["same"]
            (watched / "a.torrent").unlink()
            await mm.scan()
            assert "same" not in fs.names()
            await mm.scan()
            assert "same" in fs.names() and fs.shown["same"] is not a_torrent
            assert fs.shown["same"].meta.info_hash == a_torrent.meta.info_hash
            nursery.cancel_scope.cancel()


async def test_incoming_peers_reach_the_torrent_their_handshake_names(tmp_path, watched):
    p1 = write_torrent(tmp_path / "p1", "one", 70_000, 1, watched / "one.torrent")
    p2 = write_torrent(tmp_path / "p2", "two", 90_000, 2, watched / "two.torrent")
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            mm = await start_multi(nursery, watched, tmp_path / "cache")
            t1, t2 = mm.fs.shown["one"], mm.fs.shown["two"]
            # A seeding peer of each connects in through the one port; each torrent
            # then reads its bytes from the peer that came for it.
            for t, payload in ((t2, p2), (t1, p1)):
                stream = await trio.open_tcp_stream("127.0.0.1", mm.port)
                nursery.start_soon(fake_peer, stream, t.meta, payload)
            assert bytes(await t1.read(0, 0, 70_000)) == p1
            assert bytes(await t2.read(0, 0, 90_000)) == p2
            assert len(t1.sessions) == 1 and len(t2.sessions) == 1

            # A handshake for a torrent not here, or no handshake: closed.
            for head in (wire.PeerConnection(b"\x01" * 20, b"-XX0000-" + b"2" * 12,
                                             num_pieces=1).handshake(),
                         b"GET / HTTP/1.0\r\n\r\n" + b"x" * 60):
                stream = await trio.open_tcp_stream("127.0.0.1", mm.port)
                await stream.send_all(head)
                try:
                    assert await stream.receive_some(100) == b""
                except trio.BrokenResourceError:  # reset: closed with bytes unread
                    pass
                await stream.aclose()

            # A removed torrent's peers are closed with it.
            (watched / "two.torrent").unlink()
            await mm.scan()
            assert t2.sessions == {} and len(t1.sessions) == 1
            nursery.cancel_scope.cancel()


async def test_encrypted_incoming_peers_reach_their_torrent(tmp_path, watched):
    """MSE/PE on the shared port: the SKEY names the torrent among those served."""
    from torrentfs.net import mse
    p1 = write_torrent(tmp_path / "p1", "one", 70_000, 1, watched / "one.torrent")
    p2 = write_torrent(tmp_path / "p2", "two", 90_000, 2, watched / "two.torrent")
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            mm = await start_multi(nursery, watched, tmp_path / "cache")
            t1, t2 = mm.fs.shown["one"], mm.fs.shown["two"]
            for t, payload in ((t2, p2), (t1, p1)):
                stream = await trio.open_tcp_stream("127.0.0.1", mm.port)
                stream = await mse.initiate(stream, t.meta.info_hash, require=True)
                assert stream.encrypted
                nursery.start_soon(fake_peer, stream, t.meta, payload)
            assert bytes(await t1.read(0, 0, 70_000)) == p1
            assert bytes(await t2.read(0, 0, 90_000)) == p2
            assert len(t1.sessions) == 1 and len(t2.sessions) == 1
            # An encrypted handshake for a torrent not here: refused.
            stream = await trio.open_tcp_stream("127.0.0.1", mm.port)
            with pytest.raises((mse.MSEError, trio.BrokenResourceError)):
                await mse.initiate(stream, b"\x01" * 20)
            await stream.aclose()
            nursery.cancel_scope.cancel()


async def test_a_torrent_that_cannot_start_is_skipped(tmp_path, watched, caplog):
    write_torrent(tmp_path / "p1", "one", 40_000, 1, watched / "one.torrent")
    write_torrent(tmp_path / "p2", "two", 40_000, 2, watched / "two.torrent")
    from torrentfs.core.metainfo import parse
    blocked = parse((watched / "two.torrent").read_bytes()).info_hash.hex()
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / blocked).write_text("a file where its cache folder belongs")
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            mm = await start_multi(nursery, watched, cache)
            assert mm.fs.names() == ["one"]
            assert "skipped two.torrent" in caplog.text
            nursery.cancel_scope.cancel()


async def test_a_magnet_source_waits_for_its_metadata(tmp_path, watched):
    """The loader hook: a Source without metainfo is resolved first, and shown then."""
    write_torrent(tmp_path / "p1", "late", 40_000, 1, watched / "x.torrent")
    real = load_file(watched / "x.torrent")
    arrived = trio.Event()

    async def resolve():
        await arrived.wait()
        return real.meta

    def load(path):
        return Source(real.info_hash, None, resolve)

    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            mm = MultiMount(watched, RecordingFS(), tmp_path / "cache", Shared(10),
                            listen_host="127.0.0.1", load=load,
                            torrent_options=TorrentOptions(announce=False))
            mm.poll = 3600
            await nursery.start(mm.run)
            assert mm.fs.names() == []
            arrived.set()
            while not mm.fs.names():
                await trio.sleep(0.01)
            assert mm.fs.names() == ["late"]
            nursery.cancel_scope.cancel()


def test_a_torrents_log_lines_name_its_file():
    from torrentfs.engine.multi import TorrentTag, current_file
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Keep()
    handler.addFilter(TorrentTag())
    logger = logging.getLogger("torrentfs.torrent")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        logger.info("plain %d", 1)
        token = current_file.set("x.torrent")
        logger.info("tagged %d", 2)
        current_file.reset(token)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    assert records == ["plain 1", "[x.torrent] tagged 2"]


async def test_skip_reasons_are_kept_for_status(tmp_path, watched):
    """Every file not shown has its reason in ``skipped`` (for status and the root's
    xattrs) until it goes; a magnet whose metadata does not come is one warning
    line, no traceback; a torrent another daemon holds is skipped naming it."""
    from torrentfs.disk.lock import TorrentLock
    from torrentfs.engine.sources import SourceError
    write_torrent(tmp_path / "p1", "one", 40_000, 1, watched / "one.torrent")
    write_torrent(tmp_path / "p2", "two", 40_000, 2, watched / "two.torrent")
    (watched / "broken.torrent").write_bytes(b"garbage")
    (watched / "slow.magnet").write_text("magnet:?xt=urn:btih:" + "c" * 40)
    from torrentfs.core.metainfo import parse
    held = parse((watched / "two.torrent").read_bytes()).info_hash.hex()
    cache = tmp_path / "cache"
    (cache / held).mkdir(parents=True)
    other = TorrentLock(cache / held).acquire(mountpoint="/mnt/other", what="mounted on")
    gave_up = trio.Event()

    async def never():
        await gave_up.wait()
        raise SourceError("no metadata for cccc after 1 s (asked 1 peer address)")

    def load(path):
        if path.suffix == ".magnet":
            return Source(b"\xcc" * 20, None, never)
        return load_file(path)

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep(logging.DEBUG)
    logging.getLogger("torrentfs.multi").addHandler(handler)
    try:
        with trio.fail_after(LIMIT):
            async with trio.open_nursery() as nursery:
                mm = MultiMount(watched, RecordingFS(), cache, Shared(10),
                                listen_host="127.0.0.1", load=load,
                                torrent_options=TorrentOptions(announce=False))
                mm.poll = 3600
                await nursery.start(mm.run)
                assert mm.fs.names() == ["one"]
                assert mm.fetching() == ["slow.magnet"]
                assert set(mm.skipped) == {"broken.torrent", "two.torrent"}
                assert "not a torrent file" in mm.skipped["broken.torrent"]
                assert mm.skipped["two.torrent"] == (
                    f"this torrent is already mounted on /mnt/other by pid "
                    f"{__import__('os').getpid()}, from cache {cache / held}")
                gave_up.set()
                while "slow.magnet" not in mm.skipped:
                    await trio.sleep(0.01)
                assert mm.skipped["slow.magnet"].startswith("no metadata for cccc")
                assert mm.fetching() == []
                (watched / "broken.torrent").unlink()
                await mm.scan()
                assert "broken.torrent" not in mm.skipped
                nursery.cancel_scope.cancel()
    finally:
        logging.getLogger("torrentfs.multi").removeHandler(handler)
        other.release()
    about_magnet = [r for r in records if "slow.magnet" in r.getMessage()]
    assert len(about_magnet) == 1 and about_magnet[0].exc_info is None
    assert all(r.exc_info is None for r in records)


async def test_a_hybrids_v2_swarm_peers_reach_it(tmp_path, watched):
    """A hybrid torrent in a watch mount: a peer that names its v2 info-hash (cut to
    20 bytes, as a client knowing only its urn:btmh magnet does) is routed to it,
    answered with that hash, and serves it."""
    import dataclasses
    src = tmp_path / "p" / "hy.bin"
    src.parent.mkdir()
    src.write_bytes(bytes(range(256)) * 300)
    (watched / "hy.torrent").write_bytes(
        create_torrent(src, piece_length=32768, creation_date=0, version="hybrid"))
    with trio.fail_after(LIMIT):
        async with trio.open_nursery() as nursery:
            mm = await start_multi(nursery, watched, tmp_path / "cache")
            t = mm.fs.shown["hy.bin"]
            assert t.meta.version == "hybrid"
            v2_swarm = dataclasses.replace(t.meta, info_hash=t.meta.info_hash_v2[:20])
            stream = await trio.open_tcp_stream("127.0.0.1", mm.port)
            payload = b"".join(bytes(f.length) if f.padding else src.read_bytes()
                               for f in t.meta.files)
            nursery.start_soon(fake_peer, stream, v2_swarm, payload)
            assert bytes(await t.read(0, 0, len(src.read_bytes()))) == src.read_bytes()
            assert len(t.sessions) == 1
            nursery.cancel_scope.cancel()
