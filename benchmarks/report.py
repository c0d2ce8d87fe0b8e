"""How scripts/bench reports: the medians of the runs, the side-by-side table and its
notes, and the machine and program versions the numbers were taken on."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import statistics
import subprocess
import sys
from typing import Any

from benchmarks.programs import SYSTEMS, TORRENTFS

ROWS = [  # (label, key, better, format)
    ("mount -> file listed{resident}, s", "ready_s", "lower", "{:.2f}"),
    ("first 64 KiB at offset 0, ms", "ttfb_ms", "lower", "{:.0f}"),
    ("20 cold random 64 KiB reads: median ms", "random_median_ms", "lower", "{:.0f}"),
    ("  p90 ms", "random_p90_ms", "lower", "{:.0f}"),
    ("  max ms", "random_max_ms", "lower", "{:.0f}"),
    ("sequential read, MB/s", "seq_MBps", "higher", "{:.1f}"),
    ("CPU s per GiB read (fs process)", "cpu_s_per_GiB", "lower", "{:.2f}"),
    ("RssAnon once listed, MiB", "ready_rss_mib", "lower", "{:.1f}"),
    ("peak RssAnon, MiB", "peak_rss_mib", "lower", "{:.1f}"),
    ("seeders that sent >= 1 MiB (seq read)", "peers", "", "{:.0f}"),
    ("ffprobe of the video (cold, median of {av}; torrentfs: --head-start on), s", "ffprobe_s", "lower", "{:.3f}"),
    ("ffmpeg -ss 40, 1 frame (cold, median of {av}; head start on), s", "seek_s", "lower", "{:.3f}"),
    ("RssAnon once listed, {big} GiB torrent, MiB", "big_rss_mib", "lower", "{:.1f}"),
    ("mount -> listed, {files}-file torrent, s", "scale_files_ready_s", "lower", "{:.2f}"),
    ("  RssAnon then, MiB", "scale_files_rss_mib", "lower", "{:.1f}"),
    ("  find MOUNT | wc -l, s", "scale_find_s", "lower", "{:.2f}"),
    ("mount -> listed, {pieces}-piece torrent, s", "scale_pieces_ready_s", "lower", "{:.2f}"),
    ("  RssAnon then, MiB", "scale_pieces_rss_mib", "lower", "{:.1f}"),
]
SCALE_KEYS = ("scale_files_ready_s", "scale_files_rss_mib", "scale_find_s",
              "scale_pieces_ready_s", "scale_pieces_rss_mib")


def combine(values: list[Any]) -> Any:
    """The median of the runs' numbers; a string if every run failed."""
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if nums:
        return statistics.median(nums)
    strs = [v for v in values if isinstance(v, str)]
    return strs[0] if strs else None


def summarise(runs: list[dict], big: dict | None, scale: dict | None = None) -> dict:
    summary: dict[str, dict] = {}
    for system in SYSTEMS:
        per = [r[system] for r in runs if system in r]
        if not per:
            continue
        s = {}
        for _, key, _, _ in ROWS:
            vals = [p.get(key) for p in per if key in p]
            if vals:
                s[key] = combine(vals)
        if any(p.get("seq_partial") for p in per):
            s["seq_partial"] = True
        summary[system] = s
    if big:
        for system in ("torrentfs", "btfs"):
            if system in big and system in summary:
                summary[system]["big_rss_mib"] = big[system].get("rss_mib")
    if scale:
        for system in ("torrentfs", "btfs"):
            if system in scale:
                summary.setdefault(system, {}).update(
                    {k: scale[system].get(k) for k in SCALE_KEYS})
    return summary


def fmt(value: Any, spec: str, partial: bool = False) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    text = spec.format(value)
    return text + " (partial)" if partial else text


def table(summary: dict, args) -> str:
    cols = ["torrentfs", "btfs", "libtorrent", "torrentfs/btfs", "better"]
    rows = []
    for label, key, better, spec in ROWS:
        if not any(key in summary.get(s, {}) for s in SYSTEMS):
            continue
        resident = not getattr(args, "no_resident", True)
        label = label.format(resident=" (torrentfs: resident process on)" if resident else "",
                             big=args.big_size, files=getattr(args, "scale_files", 0),
                             pieces=getattr(args, "scale_pieces", 0),
                             av=getattr(args, "av_runs", 1))
        cells = []
        for s in SYSTEMS:
            v = summary.get(s, {}).get(key)
            cells.append(fmt(v, spec, key in ("seq_MBps", "cpu_s_per_GiB")
                             and summary.get(s, {}).get("seq_partial")))
        a, b = summary.get("torrentfs", {}).get(key), summary.get("btfs", {}).get(key)
        if better and isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
            ratio = f"{a / b:.2g}" if a / b < 0.1 else f"{a / b:.2f}"
            if key == "seq_MBps" and summary["btfs"].get("seq_partial"):
                ratio += " (vs partial)"
        elif better and isinstance(b, str) and isinstance(a, (int, float)):
            ratio = f"btfs {b}"
        else:
            ratio = "-"
        rows.append([label, *cells, ratio, better or "-"])
    header = ["measurement", *cols]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                         for i, (c, w) in enumerate(zip(r, widths))) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(header), sep, *map(line, rows)])


def python_build() -> str:
    """This interpreter's version and binary (the daemons': TORRENTFS is its venv's)."""
    base = getattr(sys, "_base_executable", sys.executable)
    return f"{platform.python_version()} ({os.path.realpath(base)})"


def versions() -> dict:
    def out(argv):
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.TimeoutExpired):
            return ""
    def deb(pkg):
        return out(["dpkg-query", "-W", "-f=${Version}", pkg]).strip() or "?"
    tfs = out([TORRENTFS, "--version"]).strip()
    m = re.search(r"btfs version: (\S+)", out(["btfs", "--version"]))
    lt_py = out(["/usr/bin/python3", "-c", "import libtorrent; print(libtorrent.__version__)"]).strip()
    return {
        "torrentfs": tfs.replace("torrentfs ", "") or "?",
        "python": python_build(),  # (an unoptimised one costs 5-13 %: scripts/install)
        "btfs": f"{m.group(1) if m else '?'} (Debian {deb('btfs')})",
        "libtorrent": f"{lt_py or '?'} (Debian libtorrent-rasterbar2.0 "
                      f"{deb('libtorrent-rasterbar2.0')}; btfs and the seeders use it)",
        "ffmpeg": deb("ffmpeg"),
        "opentracker": deb("opentracker"),
    }


def machine() -> dict:
    model = "?"
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / (1 << 20):.0f} GiB"
    u = os.uname()
    return {"nproc": os.cpu_count(), "kernel": f"{u.sysname} {u.release} {u.machine}",
            "cpu": model, "memory": mem}




def print_report(summary: dict, runs: list[dict], args) -> None:
    """The table, what it means, each run's notes and where its bytes came from."""
    print()
    print(table(summary, args))
    print()
    print("Times: lower is better; MB/s: higher is better (MB = 10^6 bytes). "
          "torrentfs/btfs < 1 means torrentfs is faster for times, > 1 for MB/s.")
    for system in SYSTEMS:
        for r_no, r in enumerate(runs, 1):
            for note in r.get(system, {}).get("notes", []):
                print(f"note: {system} run {r_no}: {note}")
            if "peer_bytes" in r.get(system, {}):
                pb = r[system]["peer_bytes"]
                tot = sum(pb.values()) or 1
                share = ", ".join(f"{ip} {n / 1e6:.0f} MB ({100 * n / tot:.0f}%)"
                                  for ip, n in pb.items())
                print(f"{system} run {r_no}: received from each seeder during the "
                      f"sequential read: {share or 'no TCP connection to a seeder seen'}")
                done, secs = r[system].get("recv_95pct_after_s"), r[system].get("seq_s")
                if done is not None and secs:
                    print(f"{system} run {r_no}: 95% of those bytes had arrived {done:.1f} s "
                          f"into the {secs:.1f} s it took")
