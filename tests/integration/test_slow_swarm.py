"""Integration: streaming from a slow swarm, and the download cap, on real mounts.

Two libtorrent seeders capped at 500 kB/s each (their own upload limit, which
applies on loopback) serve a 4 Mbit/s video: the link is twice the bitrate, as in
issue 12's 8 Mbit/s film from two 1 MB/s seeders. ``ffmpeg -re`` plays it through
the mount from the start and from a cold seek; asserted loosely for a busy CI
machine (exact figures: ``scripts/bench --slow-swarm``): it finishes within 1.5x the
time played, and its output never stands still for more than a few seconds.
Then ``--download-rate 1M`` against uncapped seeders measures within 85-110 % of
the cap (the bench's target is 90-105 %)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.harness.swarm import lt_create, lt_seeder, opentracker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

BITRATE = "4M"             # the video's, bit/s: 0.5 MB/s
SEEDER_RATE = 500_000      # each seeder's upload cap, B/s: together twice the bitrate
VIDEO_S = 40
PLAY_S = 15
SEEK_S = 20


@pytest.fixture(scope="module")
def slow_swarm(tmp_path_factory):
    """(slow torrent, fast torrent, the video): the same video under two torrents,
    one seeded by two capped seeders, the other by two uncapped ones."""
    base = tmp_path_factory.mktemp("slow")
    data = base / "data"
    (data / "film").mkdir(parents=True)
    video = data / "film" / "film.mkv"
    r = subprocess.run(
        ["ffmpeg", "-v", "error", "-nostdin", "-f", "lavfi", "-i",
         "testsrc2=size=320x180:rate=25,noise=alls=80:allf=t+u", "-t", str(VIDEO_S),
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-pix_fmt", "yuv420p",
         "-b:v", BITRATE, "-minrate", BITRATE, "-maxrate", BITRATE, "-bufsize", "1M",
         "-x264-params", "nal-hrd=cbr", str(video)],
        capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    assert video.stat().st_size > 0.8 * 4e6 / 8 * VIDEO_S  # the bitrate is real
    with opentracker() as tracker:
        slow, fast = base / "slow.torrent", base / "fast.torrent"
        tracker.add(lt_create(data / "film", slow, tracker.announce_url, piece_size=256 << 10))
        tracker.add(lt_create(data / "film", fast, tracker.announce_url, piece_size=512 << 10))
        with lt_seeder(slow, data, ip="127.0.0.31", upload_rate=SEEDER_RATE), \
                lt_seeder(slow, data, ip="127.0.0.32", upload_rate=SEEDER_RATE), \
                lt_seeder(fast, data, ip="127.0.0.33"), lt_seeder(fast, data, ip="127.0.0.34"):
            yield slow, fast, video


def play(path: Path, seek: int = 0) -> tuple[float, float]:
    """``ffmpeg -re -t PLAY_S``: (wall seconds, the longest time its output stood
    still after the first frame)."""
    argv = ["ffmpeg", "-nostdin", "-v", "error", "-nostats", "-progress", "pipe:1",
            "-stats_period", "0.1", "-re"]
    if seek:
        argv += ["-ss", str(seek)]
    argv += ["-t", str(PLAY_S), "-i", str(path), "-f", "null", "-"]
    reports: list[tuple[float, int, int]] = []
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def read() -> None:
        frame = out = 0
        for line in proc.stdout:
            key, _, value = line.strip().partition("=")
            if key == "frame":
                frame = int(value or 0)
            elif key == "out_time_us" and value.isdigit():
                out = int(value)
            elif key == "progress":
                reports.append((time.monotonic(), frame, out))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        _, err = proc.communicate(timeout=PLAY_S * 4 + 60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    wall = time.monotonic() - t0
    reader.join(5)
    assert proc.returncode == 0, err
    started = [r for r in reports if r[1] > 0]
    assert started, "no frame decoded"
    still, since, last = 0.0, started[0][0], started[0][2]
    for when, _, out in started[1:]:
        if out != last:
            still, since, last = max(still, when - since), when, out
    return wall, still


@pytest.mark.parametrize("seek", [0, SEEK_S])
def test_video_from_a_slow_swarm_plays_in_real_time(slow_swarm, mount_torrent, seek):
    slow, _, video = slow_swarm
    m = mount_torrent(slow)
    wall, still = play(m.path / "film" / "film.mkv", seek)
    assert wall < PLAY_S * 1.5, (wall, still)
    assert still < 3.0, (wall, still)


READER = """
import sys, time
t0 = time.monotonic(); n = 0
with open(sys.argv[1], 'rb', buffering=0) as f:
    while time.monotonic() - t0 < float(sys.argv[2]):
        k = len(f.read(1 << 20))
        if not k:
            break
        n += k
print(n, time.monotonic() - t0)
"""


def test_download_cap_delivers_what_it_says(slow_swarm, mount_torrent):
    _, fast, video = slow_swarm
    cap = 1 << 20  # --download-rate 1M
    m = mount_torrent(fast, "--download-rate", "1M")
    r = subprocess.run([sys.executable, "-c", READER, str(m.path / "film" / "film.mkv"), "8"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    got, secs = r.stdout.split()
    rate = int(got) / float(secs)
    assert 0.85 * cap <= rate <= 1.10 * cap, rate / cap
