"""The demo behind scripts/demo: a whole local swarm, a mount, and reads, with timings.

Everything it starts (tracker, seeders, the mount) is stopped on the way out, also on
failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from tests.harness.swarm import lt_seeder, opentracker  # the test harness's real peers

TORRENTFS = str(Path(sys.executable).with_name("torrentfs"))


def step(msg: str) -> float:
    print(f"==> {msg}", flush=True)
    return time.monotonic()


def done(t0: float, extra: str = "") -> None:
    print(f"    done in {time.monotonic() - t0:.2f} s{('  ' + extra) if extra else ''}",
          flush=True)


def make_payload(root: Path, size_mib: int) -> None:
    (root / "videos").mkdir(parents=True)
    with open(root / "videos" / "big-file.bin", "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(1 << 20))
    (root / "docs" / "nested" / "deeper").mkdir(parents=True)
    (root / "docs" / "README.txt").write_text("A torrentfs demo payload.\n")
    (root / "docs" / "nested" / "deeper" / "data.bin").write_bytes(os.urandom(1_500_000))
    (root / "docs" / "empty-file").write_bytes(b"")
    (root / "docs" / "café ünïcode ✓.txt").write_text("non-ASCII names work\n")


def sha256(path: Path) -> tuple[str, int]:
    h, n = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


def run(argv: list[str]) -> subprocess.CompletedProcess:
    r = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                       timeout=300)
    if r.returncode != 0:
        sys.exit(f"demo: {' '.join(argv[:2])} failed: {r.stderr.strip()}")
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=300, help="big file size in MiB (300)")
    ap.add_argument("--seeders", type=int, default=2, help="libtorrent seeders (2)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="torrentfs-demo-") as tmp, ExitStack() as stack:
        tmp = Path(tmp)
        data, payload = tmp / "data", tmp / "data" / "demo-payload"
        mnt, cache = tmp / "mnt", tmp / "cache"
        mnt.mkdir()

        t = step(f"building a payload: a {args.size} MiB file and a small tree")
        make_payload(payload, args.size)
        done(t)

        t = step("starting opentracker on loopback")
        tracker = stack.enter_context(opentracker())
        done(t, tracker.announce_url)

        t = step("torrentfs create")
        torrent = tmp / "demo.torrent"
        out = run([TORRENTFS, "create", str(payload), "-o", str(torrent),
                   "--tracker", tracker.announce_url])
        done(t, out.stdout.splitlines()[0])
        info_hash = next(l.split()[-1] for l in out.stdout.splitlines()
                         if l.startswith("info-hash"))
        tracker.add(info_hash)
        print(run([TORRENTFS, "info", str(torrent)]).stdout.rstrip().replace("\n", "\n    "))

        t = step(f"starting {args.seeders} libtorrent seeders (separate processes)")
        seeders = [stack.enter_context(lt_seeder(torrent, data, ip=f"127.0.0.{2 + i}"))
                   for i in range(args.seeders)]
        done(t, ", ".join(s.endpoint for s in seeders))

        t = step(f"torrentfs mount {torrent.name} {mnt}")
        # The first mount leaves a resident process (torrentfs resident) for the next
        # ones; one the demo started is stopped with the rest on the way out.
        if subprocess.run([TORRENTFS, "resident", "status"], capture_output=True,
                          stdin=subprocess.DEVNULL, timeout=60).returncode == 3:
            stack.callback(lambda: subprocess.run(
                [TORRENTFS, "resident", "stop"], capture_output=True,
                stdin=subprocess.DEVNULL, timeout=60))
        run([TORRENTFS, "mount", str(torrent), str(mnt), "--cache-dir", str(cache), "--no-dht"])
        stack.callback(lambda: subprocess.run(
            [TORRENTFS, "unmount", str(mnt), "--cache-dir", str(cache)],
            capture_output=True, timeout=60) if os.path.ismount(mnt) else None)
        done(t)

        t = step(f"ls -lR {mnt}  (before any data is downloaded)")
        listing = run(["ls", "-lR", str(mnt)]).stdout
        done(t)
        print("    " + listing.rstrip().replace("\n", "\n    "))

        t_all = step("reading and verifying every file (sha256 through the mount vs original)")
        total = 0
        for original in sorted(p for p in payload.rglob("*") if p.is_file()):
            rel = original.relative_to(data)
            t = time.monotonic()
            got, n = sha256(mnt / rel)
            dt = time.monotonic() - t
            want, _ = sha256(original)
            if got != want:
                sys.exit(f"demo: {rel} differs from the original!")
            total += n
            rate = f"{n / dt / 1e6:8.1f} MB/s" if n > 1 << 20 else " " * 13
            print(f"    ok  {dt:7.3f} s {rate}  {n:>11} B  {rel}")
        dt = time.monotonic() - t_all
        print(f"    all files byte-exact: {total / 1e6:.1f} MB in {dt:.2f} s "
              f"({total / dt / 1e6:.1f} MB/s)")

        t = step("a cold random read: dd 64 KiB from the middle of a fresh mount")
        run([TORRENTFS, "unmount", str(mnt), "--cache-dir", str(cache)])
        run([TORRENTFS, "mount", str(torrent), str(mnt), "--cache-dir", str(tmp / "cache2")])
        t = time.monotonic()
        big = mnt / "demo-payload" / "videos" / "big-file.bin"
        off = (args.size << 20) // 2 + 12345
        r = subprocess.run(["dd", f"if={big}", "bs=65536", f"skip={off}", "count=65536",
                            "iflag=skip_bytes,count_bytes", "status=none"],
                           capture_output=True, timeout=120)
        dt = time.monotonic() - t
        with open(payload / "videos" / "big-file.bin", "rb") as f:
            f.seek(off)
            assert r.stdout == f.read(65536), "random read differs"
        print(f"    64 KiB at offset {off}: byte-exact in {dt * 1000:.0f} ms")
        run([TORRENTFS, "unmount", str(mnt), "--cache-dir", str(tmp / "cache2")])

        t = step("unmounting and stopping the swarm")
    done(t)
    print("demo finished: everything it started is stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
