"""Integration: streaming through the mount. A video plays and seeks through it with
ffprobe/ffmpeg (the frame decoded at 40 s is the same as from the original file), a
listed video's head-start pieces wait in the kernel's page cache before anything
reads them, and a small read in the middle of a big file fetches a few MiB, not the
torrent."""

from __future__ import annotations

import ctypes
import mmap
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.harness.swarm import lt_create, lt_seeder, opentracker, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

MiB = 1 << 20


def framemd5(path: Path, seek: float | None = None) -> list[str]:
    argv = ["ffmpeg", "-v", "error", "-nostdin"]
    if seek is not None:
        argv += ["-ss", str(seek)]
    argv += ["-i", str(path), "-frames:v", "1", "-f", "framemd5", "-"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return [line for line in r.stdout.splitlines() if not line.startswith("#")]


@pytest.fixture(scope="module")
def video_swarm(tmp_path_factory):
    base = tmp_path_factory.mktemp("video")
    data = base / "data"
    (data / "film").mkdir(parents=True)
    video = data / "film" / "film.mkv"
    r = subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i",
                        "testsrc2=size=640x360:rate=25", "-t", "60", "-c:v", "libx264",
                        "-preset", "ultrafast", "-g", "25", str(video)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (data / "film" / "notes.txt").write_text("a film\n")
    with opentracker() as tracker:
        torrent = base / "film.torrent"
        tracker.add(lt_create(data / "film", torrent, tracker.announce_url,
                              piece_size=256 * 1024))
        with lt_seeder(torrent, data, ip="127.0.0.7"), lt_seeder(torrent, data, ip="127.0.0.8"):
            yield torrent, video


def test_ffprobe_and_seek_through_the_mount(video_swarm, mount_torrent):
    torrent, video = video_swarm
    m = mount_torrent(torrent)
    through = m.path / "film" / "film.mkv"
    r = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                        "format=duration:stream=codec_name,width,height", "-of",
                        "default=nw=1", str(through)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert "codec_name=h264" in r.stdout and "width=640" in r.stdout
    assert abs(float(re.search(r"duration=([\d.]+)", r.stdout).group(1)) - 60) < 1
    # A cold seek to 40 s decodes the very frame the original file gives.
    assert framemd5(through, seek=40) == framemd5(video, seek=40)
    # And playback from the start decodes the same first frame.
    assert framemd5(through) == framemd5(video)


def test_seek_before_anything_else_fetches_little(video_swarm, mount_torrent):
    torrent, video = video_swarm
    m = mount_torrent(torrent)
    assert framemd5(m.path / "film" / "film.mkv", seek=40) == framemd5(video, seek=40)
    assert m.unmount().returncode == 0
    got = int(re.search(r"totals: downloaded (\d+) bytes", m.log).group(1))
    assert got < video.stat().st_size  # not the whole film for one frame


def resident(path: Path, offset: int, length: int) -> list[bool]:
    """Which pages of ``[offset, offset+length)`` of a file are in the kernel's page
    cache (mincore on a mapping of it: nothing is read)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    pages = -(-length // mmap.PAGESIZE)
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, length, mmap.PROT_READ, mmap.MAP_SHARED, fd, offset)
        assert addr not in (None, ctypes.c_void_p(-1).value), ctypes.get_errno()
        try:
            vec = ctypes.create_string_buffer(pages)
            assert libc.mincore(addr, length, vec) == 0, ctypes.get_errno()
            return [bool(b & 1) for b in vec.raw]
        finally:
            libc.munmap(addr, length)
    finally:
        os.close(fd)


def test_a_listed_videos_head_start_waits_in_the_page_cache(video_swarm, mount_torrent):
    """Listing the folder brings the video's first and last pieces (the head start)
    and hands them to the kernel (fs/pagecache): a program that then opens the video
    reads them without a round trip to the daemon, and reads the film's bytes."""
    torrent, video = video_swarm
    m = mount_torrent(torrent)
    through = m.path / "film" / "film.mkv"
    assert "film.mkv" in os.listdir(m.path / "film")
    size = video.stat().st_size
    piece = 256 * 1024
    tail = (size - 1) // mmap.PAGESIZE * mmap.PAGESIZE  # the last page
    wait_until(lambda: all(resident(through, 0, piece)) and all(resident(through, tail, 1)),
               30, interval=0.05)
    with open(through, "rb") as f, open(video, "rb") as original:
        assert f.read(piece) == original.read(piece)
        f.seek(tail)
        original.seek(tail)
        assert f.read() == original.read()


def test_small_read_in_a_big_file_fetches_only_a_few_mib(tmp_path, mount_torrent):
    """1 MiB read in the middle of a 1 GiB file fetches a few MiB (the pieces it
    touches, the first and last pieces, a short readahead), not the torrent."""
    data = tmp_path / "data"
    data.mkdir()
    big = data / "huge.img"
    with open(big, "wb") as f:  # 1 GiB, sparse but for marks the read must return
        f.truncate(1 << 30)
        f.seek(512 * MiB)
        f.write(os.urandom(MiB))
    torrent = tmp_path / "huge.torrent"
    lt_create(big, torrent, None, piece_size=MiB)
    with lt_seeder(torrent, data, ip="127.0.0.10", timeout=120) as seeder:
        m = mount_torrent(torrent, "--peer", seeder.endpoint)
        r = subprocess.run(["dd", f"if={m.path / 'huge.img'}", "bs=1M", "skip=512",
                            "count=1", "status=none"], capture_output=True, timeout=60)
        assert r.returncode == 0
        with open(big, "rb") as f:
            f.seek(512 * MiB)
            assert r.stdout == f.read(MiB)
        assert m.unmount().returncode == 0
    got = int(re.search(r"totals: downloaded (\d+) bytes", m.log).group(1))
    assert MiB <= got <= 8 * MiB, got
