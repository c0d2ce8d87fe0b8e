"""Generated torrents for scale tests: listing only, fake piece hashes.

``many_files(n)``: a multi-file torrent of ``n`` files (one byte each, spread over
folders of 1,000 so no directory is absurd); ``many_pieces(n)``: one file of ``n``
pieces of 16 KiB. Their pieces never verify (the hashes are made up): they are for
mounting, listing and stat, never for reading. Written with a plain bencoder, fast
enough for a million pieces.
"""

from __future__ import annotations

from pathlib import Path

import bencodepy

FILES_PER_DIR = 1000


def _fake_hashes(n: int) -> bytes:
    # Distinct, deterministic, cheap: a counter under a fixed prefix.
    return b"".join(b"fakehash" + i.to_bytes(12, "big") for i in range(n))


def many_files(n: int, *, piece_length: int = 16384, name: str = "many") -> bytes:
    files = [{b"length": 1 + i % 7,
              b"path": [b"d%03d" % (i // FILES_PER_DIR), b"f%06d.bin" % i]}
             for i in range(n)]
    total = sum(f[b"length"] for f in files)
    info = {b"name": name.encode(), b"piece length": piece_length, b"files": files,
            b"pieces": _fake_hashes(-(-total // piece_length))}
    return bencodepy.encode({b"info": info, b"comment": b"generated: listing only"})


def many_pieces(n: int, *, piece_length: int = 16384, name: str = "pieces.bin") -> bytes:
    info = {b"name": name.encode(), b"piece length": piece_length,
            b"length": n * piece_length, b"pieces": _fake_hashes(n)}
    return bencodepy.encode({b"info": info, b"comment": b"generated: listing only"})


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


if __name__ == "__main__":  # python -m tests.harness.bigtorrents OUTDIR
    import sys
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    write(out / "files100k.torrent", many_files(100_000))
    write(out / "pieces1m.torrent", many_pieces(1 << 20))
    print(f"written to {out}")
