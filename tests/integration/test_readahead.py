"""Integration: a mount's kernel readahead is 1 MiB, so a sequential reader's requests
come 1 MiB at a time (8 times fewer FUSE round trips than 128 KiB ones). It must be
raised after the kernel's INIT is answered: the answer lowers it to the 128 KiB the
kernel offered, whatever was set before (it was so until session 4)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.harness.swarm import lt_create, lt_seeder, wait_until
from torrentfs.fs.fuse import KERNEL_READAHEAD_KIB

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PIECE = 256 * 1024


def _bdi_readahead(mountpoint: Path) -> int | None:
    """read_ahead_kb of the mount's backing device, from /proc/self/mountinfo."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if fields[4] == str(mountpoint):
            return int(Path(f"/sys/class/bdi/{fields[2]}/read_ahead_kb").read_text())
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="raising the readahead needs root")
def test_the_kernel_readahead_is_raised_once_init_is_answered(tmp_path, mount_torrent):
    data = tmp_path / "data"
    data.mkdir()
    payload = data / "seq.bin"
    payload.write_bytes(os.urandom(8 * 1024 * 1024))
    torrent = tmp_path / "seq.torrent"
    lt_create(payload, torrent, None, piece_size=PIECE)
    with lt_seeder(torrent, data, ip="127.0.0.2") as seeder:
        m = mount_torrent(torrent, "--peer", seeder.endpoint)
        mountpoint = Path(os.path.realpath(m.path))
        assert wait_until(lambda: _bdi_readahead(mountpoint) == KERNEL_READAHEAD_KIB, 10,
                          interval=0.05)
        out = subprocess.run(["dd", f"if={mountpoint / 'seq.bin'}", "of=/dev/null",
                              "bs=1M"], capture_output=True, timeout=60)
        assert out.returncode == 0, out.stderr
        # Still raised after the reads (nothing lowered it again).
        assert _bdi_readahead(mountpoint) == KERNEL_READAHEAD_KIB


@pytest.mark.skipif(os.geteuid() != 0, reason="setting the readahead needs root")
def test_a_video_not_all_here_is_read_in_smaller_kernel_requests(tmp_path, mount_torrent):
    """The kernel copies the mount's readahead into a file as its open is answered:
    a video some of whose pieces are missing is opened with STREAM_READAHEAD_KIB (a
    player waits for the whole of each kernel request), any other file with
    KERNEL_READAHEAD_KIB."""
    from torrentfs.fs.fuse import STREAM_READAHEAD_KIB

    data = tmp_path / "data" / "films"
    data.mkdir(parents=True)
    (data / "film.mkv").write_bytes(os.urandom(4 * 1024 * 1024))
    (data / "seq.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    torrent = tmp_path / "films.torrent"
    lt_create(data, torrent, None, piece_size=PIECE)
    with lt_seeder(torrent, tmp_path / "data", ip="127.0.0.2") as seeder:
        m = mount_torrent(torrent, "--peer", seeder.endpoint)
        mountpoint = Path(os.path.realpath(m.path))
        assert wait_until(lambda: _bdi_readahead(mountpoint) == KERNEL_READAHEAD_KIB, 10,
                          interval=0.05)
        with open(mountpoint / "films" / "film.mkv", "rb") as f:
            assert _bdi_readahead(mountpoint) == STREAM_READAHEAD_KIB
            assert len(f.read(1 << 20)) == 1 << 20
        with open(mountpoint / "films" / "seq.bin", "rb") as f:
            assert _bdi_readahead(mountpoint) == KERNEL_READAHEAD_KIB
            assert len(f.read()) == 4 << 20
