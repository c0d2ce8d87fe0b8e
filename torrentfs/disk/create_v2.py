"""The BEP 52 half of ``torrentfs create``: v2-only and hybrid torrents.

Shell code like ``create`` (it reads the files). Each file is hashed on its own,
piece by piece from its first byte: the SHA-256 of every 16 KiB block gives its
piece layer and its ``pieces root`` (``core.merkle``). For a hybrid the same read
also gives the v1 SHA-1 piece hashes, over the files laid end to end with a
BEP 47 padding file (``.pad/N``, attr ``p``) after each file that does not end on
a piece boundary, the last one included in a multi-file torrent (as libtorrent
does, so the same files and piece size give the very torrent libtorrent 2.0 makes,
info-hashes included): the stream ``metainfo_v2`` expects, so the v1 and v2 views
agree. No piece is ever read twice.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

from torrentfs.core import merkle

__all__ = ["V2Hashes", "hash_files", "file_tree", "hybrid_files"]

#: (path components as UTF-8, path on disk, its stat), in torrent order.
File = tuple[tuple[bytes, ...], Path, os.stat_result]


class V2Hashes:
    """What hashing the files gives: a root per file (None if empty), the piece
    layers by root, and the v1 piece hashes of the padded stream (hybrid only)."""

    def __init__(self) -> None:
        self.roots: list[bytes | None] = []
        self.layers: dict[bytes, bytes] = {}
        self.v1_pieces: list[bytes] = []


def hash_files(files: list[File], piece_length: int, total: int, hybrid: bool,
               progress: Callable[[int, int], None] | None, error,
               multi: bool = True) -> V2Hashes:
    """Hash every file; ``error(message)`` builds the exception to raise. For a
    hybrid, ``multi`` says whether the v1 stream pads the last file too."""
    out = V2Hashes()
    buf = memoryview(bytearray(min(piece_length, max(total, 1))))
    done = 0
    for _, path, st in files:
        leaves: list[bytes] = []
        layer: list[bytes] = []
        remaining = st.st_size
        try:
            with open(path, "rb", buffering=0) as f:
                while remaining:
                    want = min(piece_length, remaining)
                    got = 0
                    while got < want:
                        n = f.readinto(buf[got:want])
                        if not n:
                            raise error(f"file shrank while hashing: {str(path)!r}")
                        got += n
                    remaining -= want
                    done += want
                    piece = buf[:want]
                    blocks = merkle.leaf_hashes(piece)
                    leaves.extend(blocks)
                    if st.st_size > piece_length:
                        layer.append(merkle.merkle_root(blocks,
                                                        merkle.blocks_per_piece(piece_length)))
                    if hybrid:
                        h = hashlib.sha1(piece)
                        if want < piece_length and multi:  # a padding file follows
                            h.update(bytes(piece_length - want))  # the padding file
                        out.v1_pieces.append(h.digest())
                    if progress is not None:
                        progress(done, total)
                if f.read(1):
                    raise error(f"file grew while hashing: {str(path)!r}")
        except OSError as e:
            raise error(f"cannot read {str(path)!r}: {e.strerror or e}") from e
        if not leaves:
            out.roots.append(None)
            continue
        if layer:
            root = merkle.root_from_piece_layer(layer, piece_length)
            out.layers[root] = b"".join(layer)
        else:
            root = merkle.merkle_root(leaves)
        out.roots.append(root)
    buf.release()
    return out


def _entry(st: os.stat_result, root: bytes | None) -> dict:
    entry: dict[bytes, object] = {b"length": st.st_size}
    if root is not None:
        entry[b"pieces root"] = root
    if st.st_mode & stat.S_IXUSR:
        entry[b"attr"] = b"x"
    return {b"": entry}


def file_tree(files: list[File], roots: list[bytes | None], multi: bool) -> dict:
    """The ``file tree`` dictionary (for a single file: one entry, its name)."""
    tree: dict = {}
    for (components, _, st), root in zip(files, roots):
        node = tree
        for part in components[:-1] if multi else ():
            node = node.setdefault(part, {})
        node[components[-1]] = _entry(st, root)
    return tree


def hybrid_files(files: list[File], piece_length: int) -> list[dict]:
    """The v1 ``files`` list of a multi-file hybrid: the files with padding between."""
    entries: list[dict] = []
    for components, _, st in files:
        entry: dict[bytes, object] = {b"length": st.st_size, b"path": list(components)}
        if st.st_mode & stat.S_IXUSR:
            entry[b"attr"] = b"x"
        entries.append(entry)
        gap = -st.st_size % piece_length
        if gap:
            entries.append({b"attr": b"p", b"length": gap,
                            b"path": [b".pad", str(gap).encode()]})
    return entries
