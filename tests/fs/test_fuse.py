"""The FUSE layer's reader watch: reading /proc/PID/status (no mount needed)."""

import os
import signal
import subprocess
import sys

from tests.harness.swarm import wait_until
from torrentfs.fs.fuse import process_gave_up, reader_gave_up, thread_group

STATUS = """Name:\tcat
State:\t{state}
Tgid:\t4242
SigQ:\t0/95537
SigPnd:\t{pnd}
ShdPnd:\t{shd}
SigBlk:\t{blk}
SigIgn:\t0000000000000000
SigCgt:\t0000000000000000
"""


def status(state="S (sleeping)", pnd=0, shd=0, blk=0):
    return STATUS.format(state=state, pnd=f"{pnd:016x}", shd=f"{shd:016x}", blk=f"{blk:016x}")


def bit(sig):
    return 1 << (sig - 1)


def test_a_waiting_reader_is_left_alone():
    assert not reader_gave_up(status())
    assert not reader_gave_up(status(state="D (disk sleep)"))
    assert not reader_gave_up(status(shd=bit(signal.SIGCHLD) | bit(signal.SIGWINCH)))


def test_fatal_and_stop_signals_end_the_wait():
    assert reader_gave_up(status(pnd=bit(signal.SIGKILL)))  # any fatal signal
    assert reader_gave_up(status(shd=bit(signal.SIGINT)))   # Ctrl-C, caught
    assert reader_gave_up(status(shd=bit(signal.SIGTERM)))
    assert reader_gave_up(status(pnd=bit(signal.SIGHUP)))


def test_blocked_signals_do_not_count_but_sigkill_does():
    assert not reader_gave_up(status(shd=bit(signal.SIGINT), blk=bit(signal.SIGINT)))
    assert reader_gave_up(status(pnd=bit(signal.SIGKILL), blk=bit(signal.SIGKILL)))


def test_dead_or_dying_readers():
    assert reader_gave_up(status(state="Z (zombie)"))
    assert reader_gave_up(status(state="X (dead)"))
    assert not reader_gave_up("garbage\nSigPnd:\tzz\n")


def test_live_process_and_gone_process():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert not process_gave_up(p.pid)
        assert thread_group(p.pid) == p.pid
    finally:
        p.kill()
    wait_until(lambda: process_gave_up(p.pid), timeout=10)  # a zombie, then gone
    p.wait(10)
    assert process_gave_up(p.pid)
    assert not process_gave_up(os.getpid())


# -- status in the filesystem: st_blocks and xattrs (no mount: the handlers) ----------

async def test_st_blocks_and_xattrs_follow_verified_pieces(make_swarm, autojump_clock):
    import errno

    import pyfuse3
    import pytest
    import trio

    from tests.harness.fakepeer import start
    from torrentfs.core.tree import Tree
    from torrentfs.fs.fuse import TorrentFS

    async with trio.open_nursery() as n:
        s = await start(n, make_swarm)
        fs = TorrentFS(s.torrent, Tree.from_metainfo(s.meta))
        [node] = fs.tree.children(fs.tree.root.inode)
        size = len(s.payload)
        assert (await fs.getattr(node.inode)).st_blocks == 0
        assert (await fs.getattr(node.inode)).st_size == size
        s.add()
        await s.torrent.read(0, 10 * 32768, 1)  # the last piece: 100 bytes
        await s.torrent.read(0, 0, 1)
        assert (await fs.getattr(node.inode)).st_blocks == (32768 + 100 + 511) // 512
        assert (await fs.lookup(fs.tree.root.inode, node.name.encode())).st_blocks == 65
        assert (await fs.getattr(fs.tree.root.inode)).st_blocks == 0  # a folder
        assert await fs.getxattr(node.inode, b"user.torrentfs.progress", None) == \
            f"{32768 + 100}/{size}".encode()
        assert await fs.getxattr(fs.tree.root.inode, b"user.torrentfs.infohash", None) == \
            s.meta.info_hash.hex().encode()
        names = await fs.listxattr(fs.tree.root.inode, None)
        assert b"user.torrentfs.peers" in names and b"user.torrentfs.progress" in names
        assert set(await fs.listxattr(node.inode, None)) == {
            b"user.torrentfs.progress", b"user.torrentfs.verified", b"user.torrentfs.pieces"}
        for name in (b"user.torrentfs.infohash", b"user.torrentfs.nope", b"user.other",
                     b"security.selinux"):
            with pytest.raises(pyfuse3.FUSEError) as e:
                await fs.getxattr(node.inode, name, None)
            assert e.value.errno == errno.ENODATA
        with pytest.raises(pyfuse3.FUSEError) as e:
            await fs.getxattr(999, b"user.torrentfs.progress", None)
        assert e.value.errno == errno.ENOENT
        n.cancel_scope.cancel()


# -- the kernel's readahead, chosen per open (no mount: a file stands for sysfs) -------

def test_a_video_not_all_here_is_opened_with_the_streaming_readahead(tmp_path):
    from types import SimpleNamespace

    from torrentfs.core.bitfield import Bitfield
    from torrentfs.core.geometry import Geometry
    from torrentfs.fs.fuse import (
        KERNEL_READAHEAD_KIB,
        STREAM_READAHEAD_KIB,
        KernelReadahead,
        TorrentFS,
        is_video,
    )

    assert is_video("Film.MKV") and is_video("a/b.mp4") and not is_video("big.bin")
    sysfs = tmp_path / "read_ahead_kb"
    knob = KernelReadahead(str(sysfs))
    geometry = Geometry(1 << 20, (4 << 20, 4 << 20))  # two files of 4 pieces
    have = Bitfield(8)
    fs = SimpleNamespace(kernel_readahead=knob,
                         torrent=SimpleNamespace(geometry=geometry, have=have))
    film = SimpleNamespace(name="film.mkv", file_index=0)

    def opened(node) -> int:
        TorrentFS._choose_readahead(fs, node, is_video(node.name))
        return int(sysfs.read_text())

    assert opened(film) == STREAM_READAHEAD_KIB
    assert opened(SimpleNamespace(name="data.bin", file_index=1)) == KERNEL_READAHEAD_KIB
    for i in range(4):
        have.add(i)
    assert opened(film) == KERNEL_READAHEAD_KIB        # all here: read it fast
    sysfs.write_text("7")
    assert opened(film) == 7                            # unchanged: not written again
    fs.kernel_readahead = None                          # not root: left alone
    assert opened(SimpleNamespace(name="x.webm", file_index=1)) == 7
    assert not KernelReadahead(str(tmp_path / "no" / "such")).set(256)
