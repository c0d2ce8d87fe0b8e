"""The slow-swarm section of scripts/bench (``--slow-swarm``): a video streamed from a
swarm whose uplinks add up to twice its bitrate, torrentfs beside btfs.

An 8 Mbit/s H.264 video (``--slow-video`` s, small frames with noise, so that the
bitrate is real) is seeded by two libtorrent seeders capped at 1 MB/s each. On a
fresh mount with an empty cache, ``ffmpeg -re -t PLAY -i FILE -f null -`` plays it
from 0, and on another from a cold ``-ss SEEK``; each reports its wall time, the
time to its first decoded frame, and its stalls: ffmpeg's progress (``-progress``,
every 0.1 s) standing still for STALL_S or more after the first frame. ``-re`` reads
at the video's own pace and catches up after a stall, so the wall time stays near
PLAY unless the stalls add up. The targets (issue 12): wall <= PLAY + 2 s, first
frame <= 2 s, no stall.

Then the download cap: the same video under another torrent (other pieces, so
another info-hash) seeded by two uncapped seeders, read sequentially for
``CAP_SECONDS`` through ``torrentfs mount --download-rate R`` for each R in
``--slow-caps`` (the CLI's units: 2M is 2 MiB/s): the measured rate should be 90-105 %
of R (btfs has no such option).

A capped libtorrent seeder hands out its upload quota in ticks (its
``tick_interval``, 500 ms): it sends in bursts half a second apart, and a reader at
the edge of what has arrived (as ``ffmpeg -re`` is after a cold seek, catching up
with a clock that started before its first packet) waits for the next burst.
``--slow-tick-ms`` sets the seeders' tick (100: bursts a tenth of a second apart),
to tell the seeders' bursts from the client's scheduling.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.programs import MOUNTS, run_bounded, say
from benchmarks.worker import BenchError, Timeout
from tests.harness.swarm import child_env, lt_create, lt_seeder
from torrentfs.cli.args import parse_size

SEEDER_RATE = 1_000_000        # B/s, each seeder's upload cap
VIDEO_BITRATE = 8_000_000      # bit/s
TOP, NAME = "slow-swarm", "film.mkv"
PIECE = 256 << 10              # the slow torrent's pieces
CAP_PIECE = 512 << 10          # the cap torrent's (another info-hash)
STALL_S = 0.3                  # progress standing still this long is a stall
CAP_SECONDS = 15.0             # how long each capped read lasts


def make_video(folder: Path, seconds: int) -> Path:
    """An 8 Mbit/s constant-bitrate H.264 video of ``seconds`` s in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / NAME
    rate = f"{VIDEO_BITRATE // 1_000_000}M"
    rc, _, text = run_bounded(
        ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
         "testsrc2=size=480x270:rate=25,noise=alls=80:allf=t+u", "-t", str(seconds),
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-pix_fmt", "yuv420p",
         "-b:v", rate, "-minrate", rate, "-maxrate", rate, "-bufsize", "2M",
         "-x264-params", "nal-hrd=cbr", str(out)], timeout=600)
    if rc != 0:
        raise SystemExit(f"bench: ffmpeg could not make the slow-swarm video:\n{text}")
    return out


def play(path: str, seek: float, seconds: float, timeout: float) -> dict[str, Any]:
    """``ffmpeg -re [-ss seek] -t seconds -i path -f null -``: wall s, first frame s,
    stalls (count and seconds). Raises Timeout past ``timeout``."""
    argv = ["ffmpeg", "-nostdin", "-v", "error", "-nostats", "-progress", "pipe:1",
            "-stats_period", "0.1", "-re"]
    if seek:
        argv += ["-ss", str(seek)]
    argv += ["-t", str(seconds), "-i", path, "-f", "null", "-"]
    reports: list[tuple[float, int, int]] = []  # (when, frames, out_time_us)
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env())
    errors: list[str] = []

    def read_progress() -> None:
        frame, out_us = 0, 0
        for line in proc.stdout:
            key, _, value = line.strip().partition("=")
            if key == "frame":
                frame = int(value or 0)
            elif key == "out_time_us" and value.lstrip("-").isdigit():
                out_us = int(value)
            elif key == "progress":
                reports.append((time.monotonic(), frame, out_us))

    readers = [threading.Thread(target=read_progress, daemon=True),
               threading.Thread(target=lambda: errors.extend(proc.stderr), daemon=True)]
    for th in readers:
        th.start()
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        raise Timeout(f"ffmpeg -re did not finish within {timeout:.0f}s") from None
    wall = time.monotonic() - t0
    for th in readers:
        th.join(5)
    if rc != 0:
        raise BenchError(f"ffmpeg -re failed ({rc}): {''.join(errors)[-500:]}")
    return {"wall_s": wall, **stalls(t0, reports)}


def stalls(t0: float, reports: list[tuple[float, int, int]]) -> dict[str, Any]:
    """From ffmpeg's progress reports: when the first frame was out, and how often
    and how long the output stood still for STALL_S or more after it."""
    started = [r for r in reports if r[1] > 0]
    if not started:
        return {"first_frame_s": None, "stalls": None, "stall_s": None}
    count, total = 0, 0.0
    since, last_out = started[0][0], started[0][2]
    for when, _, out_us in started[1:] + [(started[-1][0], 0, -1)]:
        if out_us != last_out:
            frozen = when - since
            if frozen >= STALL_S and out_us >= 0:
                count += 1
                total += frozen
            since, last_out = when, out_us
    return {"first_frame_s": started[0][0] - t0, "stalls": count, "stall_s": total}


def run(bench, tracker, stack: contextlib.ExitStack) -> dict[str, Any]:
    """The whole section: the video, both swarms, both systems; every number."""
    a = bench.args
    out: dict[str, Any] = {"config": {"video_s": a.slow_video, "play_s": a.slow_play,
                                      "seek_s": a.slow_seek, "caps": a.slow_caps,
                                      "tick_ms": a.slow_tick_ms or 500}}
    data = bench.tmp / "slow"
    say(f"slow swarm: making a {a.slow_video} s 8 Mbit/s video")
    video = make_video(data / TOP, a.slow_video)
    out["video_bytes"] = size = video.stat().st_size
    out["video_Mbps"] = size * 8 / a.slow_video / 1e6
    slow_t, cap_t = bench.tmp / "slow.torrent", bench.tmp / "slow-cap.torrent"
    tracker.add(lt_create(data / TOP, slow_t, tracker.announce_url, PIECE))
    tracker.add(lt_create(data / TOP, cap_t, tracker.announce_url, CAP_PIECE))
    for n in range(2):
        stack.enter_context(lt_seeder(slow_t, data, ip=f"127.0.0.{60 + n}",
                                      upload_rate=SEEDER_RATE,
                                      tick_ms=a.slow_tick_ms or None,
                                      workdir=bench.tmp / "slow-seeders", timeout=180))
        stack.enter_context(lt_seeder(cap_t, data, ip=f"127.0.0.{62 + n}",
                                      workdir=bench.tmp / "slow-seeders", timeout=180))
    timeout = a.slow_play * 3 + 60
    for system in [s for s in ("torrentfs", "btfs") if s in a.only]:
        res = out[system] = {}
        for label, seek in (("from 0", 0), (f"from -ss {a.slow_seek}", a.slow_seek)):
            key = "play0" if not seek else "play_seek"
            say(f"{system}: slow swarm, ffmpeg -re -t {a.slow_play} {label}")
            try:
                with mounted(bench, system, slow_t, size, f"slow-{key}") as m:
                    res[key] = play(str(m.mnt / TOP / NAME), seek, a.slow_play, timeout)
            except Timeout as e:
                res[key] = "timeout"
                res.setdefault("notes", []).append(f"{label}: timeout: {e}")
            except (BenchError, OSError, subprocess.SubprocessError) as e:
                res[key] = "error"
                res.setdefault("notes", []).append(f"{label}: error: {e}")
    if "torrentfs" in a.only:
        res = out.setdefault("torrentfs", {})
        for cap in a.slow_caps:
            say(f"torrentfs: --download-rate {cap}: {CAP_SECONDS:.0f} s sequential read")
            try:
                with mounted(bench, "torrentfs", cap_t, size, f"slow-cap-{cap}",
                             ["--download-rate", cap]) as m:
                    r = m.worker.call(CAP_SECONDS + 60, op="seq",
                                      path=str(m.mnt / TOP / NAME), chunk=1 << 20,
                                      budget=CAP_SECONDS)
                    if "error" in r:
                        raise BenchError(r["error"])
                    secs = r["t1"] - r["t0"]
                    res[f"cap_{cap}_MBps"] = r["bytes"] / secs / 1e6
                    if not r["partial"]:  # a short measure: the burst weighs in
                        res.setdefault("notes", []).append(
                            f"--download-rate {cap}: the whole video was read in "
                            f"{secs:.1f} s, less than {CAP_SECONDS:.0f} s: make it longer")
            except Timeout as e:
                res[f"cap_{cap}_MBps"] = "timeout"
                res.setdefault("notes", []).append(f"--download-rate {cap}: timeout: {e}")
            except (BenchError, OSError, subprocess.SubprocessError) as e:
                res[f"cap_{cap}_MBps"] = "error"
                res.setdefault("notes", []).append(f"--download-rate {cap}: error: {e}")
    return out


@contextlib.contextmanager
def mounted(bench, system: str, torrent: Path, size: int, label: str,
            extra: list[str] = ()):
    """A fresh mount of ``torrent`` with an empty cache, always closed."""
    m = MOUNTS[system](bench, label)
    m.extra_args = list(extra)
    try:
        m.start(torrent, TOP, NAME, size, bench.args.mount_timeout)
        yield m
    except Timeout:
        m.wedged = True
        raise
    finally:
        m.close()


def report(out: dict[str, Any], args) -> str:
    """The section's table: torrentfs, btfs, the target."""
    play, seek = args.slow_play, args.slow_seek
    rows: list[tuple[str, str, str, str, str]] = []  # label, key, sub-key, format, target

    def cell(system: str, key: str, sub: str, spec: str) -> str:
        v = out.get(system, {}).get(key)
        if isinstance(v, dict):
            v = v.get(sub)
        if v is None:
            return "-"
        return v if isinstance(v, str) else spec.format(v)

    for key, label in (("play0", f"ffmpeg -re -t {play} from 0"),
                       ("play_seek", f"ffmpeg -re -t {play} from a cold -ss {seek}")):
        rows += [(f"{label}: wall s", key, "wall_s", "{:.1f}", f"<= {play + 2}"),
                 ("  first frame, s", key, "first_frame_s", "{:.2f}", "<= 2"),
                 (f"  stalls (output still >= {STALL_S} s)", key, "stalls", "{:.0f}", "0"),
                 ("  stalled, s", key, "stall_s", "{:.1f}", "0")]
    lines = []
    for label, key, sub, spec, target in rows:
        lines.append([label, cell("torrentfs", key, sub, spec), cell("btfs", key, sub, spec),
                      target])
    for cap in args.slow_caps:
        r = parse_size(cap) / 1e6  # the CLI's units: 2M is 2 MiB/s
        v = out.get("torrentfs", {}).get(f"cap_{cap}_MBps")
        shown = v if isinstance(v, str) else ("-" if v is None else
                                              f"{v:.2f} ({100 * v / r:.0f}%)")
        lines.append([f"--download-rate {cap}: MB/s", shown, "n/a",
                      f"{0.9 * r:.2f}-{1.05 * r:.2f}"])
    header = ["slow swarm", "torrentfs", "btfs", "target"]
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(4)]
    fmt = lambda r: "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                        for i, (c, w) in enumerate(zip(r, widths))) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    tick = out.get("config", {}).get("tick_ms", 500)
    head = (f"slow swarm: two libtorrent seeders capped at {SEEDER_RATE / 1e6:g} MB/s each "
            f"(quota every {tick} ms); "
            f"a {out.get('video_Mbps', 0):.1f} Mbit/s video of {args.slow_video} s "
            f"({out.get('video_bytes', 0) / 1e6:.0f} MB), pieces {PIECE >> 10} KiB; "
            f"the caps against two uncapped seeders")
    notes = [f"note: {s}: {n}" for s in ("torrentfs", "btfs")
             for n in out.get(s, {}).get("notes", [])]
    return "\n".join([head, fmt(header), sep, *map(fmt, lines), *notes])
