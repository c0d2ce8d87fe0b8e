"""Issue 14's BEP 52 row of scripts/bench (``--v2-reads``): cold random 64 KiB reads
of the same payload as a v1 torrent and as a v2 torrent, both with 16 MiB pieces.

Each torrent is made by libtorrent (lt_peer.py create --version v1 / v2), seeded by
one libtorrent seeder of its own (found through the bench's tracker), and read on a
fresh torrentfs mount with an empty cache: 64 KiB preads at random offsets of
big.bin, each in a 16 MiB piece of its own, never the first or last (20, or one per
such piece of a smaller payload: ``--size 64`` gives 2), so every read is cold;
every chunk is checked against the payload. Reported: median and
p90 ms of both, and the MiB each mount downloaded in all (its closing log line). A
v1 read must fetch and SHA-1 its whole 16 MiB piece before it returns; a v2 read
waits only for its own 16 KiB blocks, each verified against leaf hashes the seeder
sends (proved to the piece's merkle node: engine/blockreads.py). Readahead still
fetches the rest of the piece after the read returns, so the downloaded total is
the same order for both; the read times are the difference.
"""

from __future__ import annotations

import random
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
READS = 20
SEEDER_IPS = {"v1": "127.0.0.200", "v2": "127.0.0.201"}


def cold_offsets(size: int, n: int = READS, seed: int = 14) -> list[int]:
    """Offsets of 64 KiB reads, each in the middle half of a 16 MiB piece of its own
    (a read in a piece fetched before is not cold): ``n`` of them, or one per whole
    inner piece of a smaller file, in a seeded random order."""
    rng = random.Random(seed)
    pieces = max(1, size // PIECE)
    # Not the first and last pieces when there are others: opening a file fetches
    # them (readahead of a container's index).
    inner = range(1, pieces - 1) if pieces > 2 else range(pieces)
    chosen = sorted(rng.sample(inner, min(n, len(inner))))
    out = [i * PIECE + PIECE // 4 + rng.randrange(PIECE // 2 - CHUNK) for i in chosen]
    out = [o for o in out if o + CHUNK <= size] or [0]
    rng.shuffle(out)
    return out


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
    offsets = cold_offsets(bench.size)
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
                for off in offsets:
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
