"""Issue 14's BEP 52 row of scripts/bench (``--v2-reads``): cold random 64 KiB reads
of the same payload as a v1 torrent and as a v2 torrent, both with 16 MiB pieces.

Each torrent is made by libtorrent (lt_peer.py create --version v1 / v2), seeded by
one libtorrent seeder of its own (found through the bench's tracker), and read on a
fresh torrentfs mount with an empty cache: the bench's 20 random offsets of big.bin,
one 64 KiB pread each, every chunk checked against the payload. Reported: median and
p90 ms of both, and the MiB each mount downloaded in all (its closing log line). A
v1 read must fetch and SHA-1 its whole 16 MiB piece before it returns; a v2 read
waits only for its own 16 KiB blocks, each verified against leaf hashes the seeder
sends (proved to the piece's merkle node: engine/blockreads.py). Readahead still
fetches the rest of the piece after the read returns, so the downloaded total is
the same order for both; the read times are the difference.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import time
from typing import Any

from benchmarks.programs import MOUNTS, say
from benchmarks.worker import BenchError, Timeout
from tests.harness.swarm import lt_create, lt_seeder

PIECE = 16 << 20
CHUNK = 64 * 1024
SEEDER_IPS = {"v1": "127.0.0.200", "v2": "127.0.0.201"}


def _p90(values: list[float]) -> float:
    v = sorted(values)
    k = (len(v) - 1) * 0.9
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def _downloaded_mib(m) -> float | None:
    """MiB of blocks the mount downloaded (its ``totals`` log line, at unmount)."""
    try:
        text = m.log_path.with_suffix(".fs.log").read_text(errors="replace")
    except OSError:
        return None
    found = re.findall(r"totals: downloaded (\d+) bytes", text)
    return int(found[-1]) / 2**20 if found else None


def run(bench, tracker) -> dict[str, Any]:
    """{"v1": {...}, "v2": {...}}: each the median, p90 and every read's ms, or an
    "error"/"timeout" note."""
    out: dict[str, Any] = {}
    a = bench.args
    for version in ("v1", "v2"):
        torrent = bench.tmp / f"pieces16m-{version}.torrent"
        t0 = time.monotonic()
        ih = lt_create(bench.payload, torrent, tracker.announce_url, PIECE, version=version)
        tracker.add(ih)
        say(f"v2 reads: {version} torrent with 16 MiB pieces made in "
            f"{time.monotonic() - t0:.1f} s; seeding it")
        res: dict[str, Any] = {"info_hash": ih.hex()}
        with lt_seeder(torrent, bench.tmp / "data", ip=SEEDER_IPS[version],
                       workdir=bench.tmp / "seeders", timeout=180):
            tracker.wait_peers(ih, 1, timeout=30)
            m = MOUNTS["torrentfs"](bench, f"pieces16m-{version}")
            try:
                m.start(torrent, bench.top, "big.bin", bench.size, a.mount_timeout)
                times = []
                for off in bench.offsets:
                    r = m.worker.call(a.read_timeout, op="pread", path=m.path("big.bin"),
                                      offset=off, size=CHUNK)
                    bench.check_chunk(r, off)
                    times.append((r["t1"] - r["t0"]) * 1000.0)
                res.update(median_ms=statistics.median(times), p90_ms=_p90(times),
                           all_ms=[round(t, 2) for t in times])
            except Timeout as e:
                m.wedged = True
                res["note"] = f"timeout: {e}"
            except (BenchError, OSError, subprocess.SubprocessError) as e:
                res["note"] = f"error: {e}"
            finally:
                m.close()
            res["downloaded_mib"] = _downloaded_mib(m)
        out[version] = res
    return out


def print_rows(out: dict[str, Any]) -> None:
    print("\ncold random 64 KiB reads, big.bin as a torrent with 16 MiB pieces (torrentfs):")
    for version in ("v1", "v2"):
        r = out.get(version, {})
        got = r.get("downloaded_mib")
        got = f", {got:.0f} MiB downloaded in all" if got is not None else ""
        if "median_ms" in r:
            print(f"  {version}: median {r['median_ms']:.0f} ms, p90 {r['p90_ms']:.0f} ms "
                  f"({len(r['all_ms'])} reads{got})")
        else:
            print(f"  {version}: {r.get('note', 'not run')}")
