"""scripts/bench --scale: the mount time and memory of big torrents, torrentfs beside
btfs (issue 14). Two generated listing-only torrents (fake piece hashes, no data,
no peers: tests/harness/bigtorrents.py): one of ``--scale-files`` files (100,000)
and one of ``--scale-pieces`` pieces of 16 KiB (1,048,576: 16 GiB). For each system,
on a fresh mount: mount -> the last file listed with its size, RssAnon then, and
for the many-files torrent the time of ``find MOUNT | wc -l``.
"""

from __future__ import annotations

import subprocess
from typing import Any

from benchmarks.procstats import rss_anon_kib
from benchmarks.programs import MOUNTS, run_bounded, say
from benchmarks.worker import BenchError, Timeout
from tests.harness.bigtorrents import FILES_PER_DIR, many_files, many_pieces


def _one(bench, system: str, torrent, top: str, name: str, size: int,
         find: bool) -> dict[str, Any]:
    m = MOUNTS[system](bench, "scale")
    try:
        m.start(torrent, top, name, size, bench.args.mount_timeout)
        kib = rss_anon_kib(m.pid) if m.pid else None
        out: dict[str, Any] = {"ready_s": m.ready_s,
                               "rss_mib": kib / 1024 if kib is not None else None}
        if find:
            rc, secs, text = run_bounded(["sh", "-c", f"find '{m.mnt}' | wc -l"],
                                         bench.args.mount_timeout)
            out["find_s"] = secs if rc == 0 else "error"
            out["find_lines"] = text.strip()
        return out
    except Timeout as e:
        m.wedged = True
        return {"ready_s": "timeout", "note": str(e)}
    except (BenchError, OSError, subprocess.SubprocessError) as e:
        return {"ready_s": "error", "note": str(e)}
    finally:
        m.close()


def run_scale(bench) -> dict[str, Any]:
    """Both torrents on every mounting system of ``--only``; raw numbers by system."""
    files, pieces = bench.args.scale_files, bench.args.scale_pieces
    t_files = bench.tmp / "scale-files.torrent"
    t_files.write_bytes(many_files(files))
    t_pieces = bench.tmp / "scale-pieces.torrent"
    t_pieces.write_bytes(many_pieces(pieces))
    last = files - 1
    out: dict[str, Any] = {"files": files, "pieces": pieces}
    for system in [s for s in ("torrentfs", "btfs") if s in bench.args.only]:
        say(f"{system}: mount a torrent of {files} files")
        f = _one(bench, system, t_files, f"many/d{last // FILES_PER_DIR:03d}",
                 f"f{last:06d}.bin", 1 + last % 7, find=True)
        say(f"{system}: mount a torrent of {pieces} pieces")
        p = _one(bench, system, t_pieces, "", "pieces.bin", pieces * 16384, find=False)
        out[system] = {"scale_files_ready_s": f.get("ready_s"),
                       "scale_files_rss_mib": f.get("rss_mib"),
                       "scale_find_s": f.get("find_s"),
                       "scale_pieces_ready_s": p.get("ready_s"),
                       "scale_pieces_rss_mib": p.get("rss_mib"),
                       "notes": [n for n in (f.get("note"), p.get("note")) if n]}
    return out
