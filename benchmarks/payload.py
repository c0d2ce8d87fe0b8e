"""What scripts/bench serves: the payload (a big random file and an H.264 video made by
ffmpeg) and a .torrent of a sparse all-zero file made without reading it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from benchmarks.programs import run_bounded

VIDEO_SECONDS = 60


def make_payload(folder: Path, size_mib: int) -> str:
    """The big random file (os.urandom in 1 MiB chunks) and the video; returns the
    big file's sha256."""
    folder.mkdir(parents=True)
    h = hashlib.sha256()
    with open(folder / "big.bin", "wb") as f:
        for _ in range(size_mib):
            block = os.urandom(1 << 20)
            h.update(block)
            f.write(block)
    rc, elapsed, out = run_bounded(
        ["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi",
         "-i", "testsrc2=size=1280x720:rate=30", "-t", str(VIDEO_SECONDS),
         "-c:v", "libx264", "-preset", "ultrafast", "-g", "30", "-pix_fmt", "yuv420p",
         str(folder / "video.mkv")], timeout=300)
    if rc != 0:
        raise SystemExit(f"bench: ffmpeg could not make the video:\n{out}")
    return h.hexdigest()


def bencode(v: Any) -> bytes:
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(map(bencode, v)) + b"e"
    if isinstance(v, dict):
        items = sorted((k.encode() if isinstance(k, str) else k, x) for k, x in v.items())
        return b"d" + b"".join(bencode(k) + bencode(x) for k, x in items) + b"e"
    raise TypeError(type(v))


def write_zeros_torrent(out: Path, top: str, name: str, size: int, piece: int,
                        tracker: str) -> bytes:
    """A .torrent of folder `top` holding one file of `size` zero bytes, as
    `torrentfs create` or libtorrent would make of a sparse file, without reading
    16 GiB of holes: every full piece of zeros has the same SHA-1. Returns the
    info-hash. (Nothing seeds it: the mount only has to show it.)"""
    full, rest = divmod(size, piece)
    pieces = hashlib.sha1(bytes(piece)).digest() * full
    if rest:
        pieces += hashlib.sha1(bytes(rest)).digest()
    info = {"files": [{"length": size, "path": [name]}], "name": top,
            "piece length": piece, "pieces": pieces}
    out.write_bytes(bencode({"announce": tracker, "created by": "torrentfs bench",
                             "info": info}))
    return hashlib.sha1(bencode(info)).digest()
