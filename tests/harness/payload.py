"""What the tests feed torrentfs and how they check what comes back: deterministic
bytes, a sample payload folder, a folder's tree, byte-for-byte comparisons, magnet
links."""

from __future__ import annotations

import hashlib
import os
import random
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from tests.harness.mounts import Mount


def data_of(n: int, seed: int) -> bytes:
    """``n`` deterministic, non-repeating bytes (a SHA-256 chain from ``seed``)."""
    out = bytearray()
    block = seed.to_bytes(4, "big")
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:n])


def make_payload(root: Path, big_size: int, seed: int = 1) -> Path:
    """A directory like real torrents have: one big file, a small tree with nested
    folders, an empty file, a non-ASCII name, files smaller than a piece."""
    rng = random.Random(seed)
    root.mkdir(parents=True)
    (root / "big.bin").write_bytes(rng.randbytes(big_size))
    (root / "docs" / "deep" / "er").mkdir(parents=True)
    (root / "docs" / "readme.txt").write_text("hello from torrentfs\n")
    (root / "docs" / "deep" / "er" / "nested.dat").write_bytes(rng.randbytes(300_001))
    (root / "docs" / "empty").write_bytes(b"")
    (root / "données été.txt").write_text("non-ASCII name ✓\n", encoding="utf-8")
    (root / "z-small.bin").write_bytes(rng.randbytes(777))
    return root


def tree_of(root: Path) -> dict[str, int | None]:
    """Relative path -> size (None for directories) of everything under ``root``."""
    out: dict[str, int | None] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = None
        for f in filenames:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = os.stat(p).st_size
    return out


def cmp_tree(original: Path, mounted: Path, mount: Mount | None = None) -> None:
    """``cmp`` every file under ``original`` with its twin under ``mounted``; a
    difference, or a ``cmp`` still running after 60 s, fails the test with the tail
    of ``mount``'s log as it is then, to say why."""
    for path in sorted(p for p in original.rglob("*") if p.is_file()):
        rel = path.relative_to(original)
        try:
            r = subprocess.run(["cmp", str(path), str(mounted / rel)], capture_output=True,
                               text=True, timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{rel}: cmp still running after 60 s\n"
                                 f"{_log_tail(mount)}") from None
        assert r.returncode == 0, f"{rel}: {r.stdout}{r.stderr}\n{_log_tail(mount)}"


def _log_tail(mount: Mount | None) -> str:
    return "" if mount is None else mount.log[-3000:]


def dd_random_ranges(mounted: Path, original: bytes, seed: int, piece: int,
                     count: int = 50) -> None:
    """Read ``count`` random ranges of ``mounted`` with ``dd`` (sizes from one byte to
    a piece and a byte, at random offsets, a generator seeded with ``seed``) and check
    each against the same range of ``original``."""
    rng = random.Random(seed)
    for _ in range(count):
        size = rng.choice([1, 100, 4096, 65536, 300_000, piece + 1])
        offset = rng.randrange(0, len(original) - 1)
        r = subprocess.run(["dd", f"if={mounted}", "bs=65536", f"skip={offset}",
                            f"count={size}", "iflag=skip_bytes,count_bytes",
                            "status=none"], capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert r.stdout == original[offset:offset + size], (offset, size)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def same_tree(a: Path, b: Path, *, empty_files: bool = True) -> None:
    """Every file of ``a`` is in ``b`` byte for byte (and nothing else is in ``b``).
    ``empty_files=False`` for clients that never create zero-length files."""
    want, got = tree_of(a), tree_of(b)
    if not empty_files:
        want = {k: v for k, v in want.items() if v != 0}
    assert want == got
    for f in (p for p in a.rglob("*") if p.is_file() and (empty_files or p.stat().st_size)):
        assert sha256(f) == sha256(b / f.relative_to(a)), f


def magnet_of(info_hash: bytes, *, trackers=(), peers=(), name=None) -> str:
    uri = f"magnet:?xt=urn:btih:{info_hash.hex()}"
    if name:
        uri += "&dn=" + quote(name)
    uri += "".join("&tr=" + quote(t, safe="") for t in trackers)
    uri += "".join(f"&x.pe={p}" for p in peers)
    return uri
