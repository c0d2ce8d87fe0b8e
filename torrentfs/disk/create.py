"""``torrentfs create``: build a .torrent (v1, BEP 52 v2, or hybrid) from a file or a
directory. The v2 hashing lives in ``create_v2``.

This is shell code (it reads the files to hash them); the torrent itself is
built as a plain dict and encoded with ``bencodepy`` (canonical: sorted keys).

* A regular file gives a single-file torrent named after the file.
* A directory gives a multi-file torrent named after the directory.  Its
  regular files are collected recursively and ordered by their path
  components compared as UTF-8 bytes.  Symlinks (to anything) and special
  files (FIFOs, sockets, devices) are skipped; directories holding no regular
  file simply do not appear.  The path given on the command line is followed
  even if it is itself a symlink.
* Files with the owner-execute bit get BEP 47 ``attr`` = ``x``.
* Hashing streams through one reusable piece-sized buffer.
* The result is checked by :func:`torrentfs.metainfo.parse` before being
  returned, so ``create_torrent`` never emits a torrent we would refuse
  (e.g. a file name containing a backslash raises CreateError).
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import bencodepy

from torrentfs import __version__
from torrentfs.core.metainfo import MAX_PIECE_LENGTH, MetainfoError, parse
from torrentfs.disk import create_v2

__all__ = [
    "CreateError",
    "choose_piece_length",
    "create_torrent",
    "MIN_PIECE_LENGTH",
    "MAX_AUTO_PIECE_LENGTH",
]

MIN_PIECE_LENGTH = 16 * 1024
MAX_AUTO_PIECE_LENGTH = 16 * 1024 * 1024
#: choose_piece_length picks the smallest size giving at most this many pieces.
TARGET_MAX_PIECES = 2000


class CreateError(Exception):
    """Creating a torrent failed; ``str()`` is one human-readable line."""


def choose_piece_length(total: int) -> int:
    """A power of two in 16 KiB..16 MiB giving about 1000-2000 pieces.

    The smallest such size with at most 2000 pieces, so the count lands in
    (1000, 2000] except where the 16 KiB floor or 16 MiB ceiling applies.
    """
    length = MIN_PIECE_LENGTH
    while length < MAX_AUTO_PIECE_LENGTH and -(-total // length) > TARGET_MAX_PIECES:
        length *= 2
    return length


def _check_piece_length(piece_length: int) -> None:
    if (
        not isinstance(piece_length, int)
        or isinstance(piece_length, bool)
        or piece_length < MIN_PIECE_LENGTH
        or piece_length > MAX_PIECE_LENGTH
        or piece_length & (piece_length - 1)
    ):
        raise CreateError(
            f"invalid piece length {piece_length!r}: must be a power of two "
            f"between 16 KiB ({MIN_PIECE_LENGTH}) and {MAX_PIECE_LENGTH >> 20} MiB "
            f"({MAX_PIECE_LENGTH})"
        )


def _utf8(name: str, where: Path) -> bytes:
    try:
        return name.encode("utf-8")
    except UnicodeEncodeError:
        # os.fsdecode smuggles undecodable bytes in as lone surrogates.
        raise CreateError(f"file name is not valid UTF-8: {str(where)!r}") from None


def _walk(root: Path) -> list[tuple[tuple[bytes, ...], Path, os.stat_result]]:
    """Regular files under ``root``: (components as UTF-8, path, stat)."""
    found: list[tuple[tuple[bytes, ...], Path, os.stat_result]] = []
    pending: list[tuple[tuple[bytes, ...], Path]] = [((), root)]
    while pending:
        prefix, directory = pending.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError as e:
            raise CreateError(f"cannot read directory {str(directory)!r}: {e.strerror or e}") from e
        for entry in entries:
            path = Path(entry.path)
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as e:
                raise CreateError(f"cannot stat {str(path)!r}: {e.strerror or e}") from e
            if stat.S_ISDIR(st.st_mode):
                pending.append((prefix + (_utf8(entry.name, path),), path))
            elif stat.S_ISREG(st.st_mode):
                found.append((prefix + (_utf8(entry.name, path),), path, st))
            # symlinks, FIFOs, sockets, devices: skipped
    found.sort(key=lambda item: item[0])
    return found


def create_torrent(
    path: str | os.PathLike[str],
    *,
    trackers: Sequence[str] = (),
    web_seeds: Sequence[str] = (),
    piece_length: int | None = None,
    comment: str | None = None,
    private: bool = False,
    created_by: str | None = f"torrentfs/{__version__}",
    creation_date: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    version: str = "v1",
) -> bytes:
    """Hash ``path`` (a file or a directory) and return the .torrent bytes.

    ``trackers``: each URL is its own tier; the first is also ``announce``
    (``announce-list`` is written when there is more than one).
    ``web_seeds``: BEP 19 ``url-list`` (HTTP servers holding the same files).
    ``creation_date``: seconds since the epoch; default now.
    ``progress(bytes_done, total)`` is called after each piece is hashed.
    ``version``: "v1" (BEP 3), "v2" (BEP 52 only) or "hybrid" (both, files padded
    to piece boundaries).
    """
    if version not in ("v1", "v2", "hybrid"):
        raise CreateError(f"unknown torrent version {version!r} (v1, v2 or hybrid)")
    src = Path(path)
    try:
        top = src.stat()  # follows a symlink given explicitly
    except FileNotFoundError:
        raise CreateError(f"no such file or directory: {str(src)!r}") from None
    except OSError as e:
        raise CreateError(f"cannot stat {str(src)!r}: {e.strerror or e}") from e

    name = os.path.basename(os.path.abspath(src))
    if not name:
        raise CreateError(f"cannot make a torrent of {str(src)!r}: it has no name")
    name_bytes = _utf8(name, src)

    if stat.S_ISREG(top.st_mode):
        multi = False
        files = [((name_bytes,), src, top)]
    elif stat.S_ISDIR(top.st_mode):
        multi = True
        files = _walk(src)
        if not files:
            raise CreateError(f"no files to add: directory {str(src)!r} contains no regular files")
    else:
        raise CreateError(f"not a regular file or directory: {str(src)!r}")

    total = sum(st.st_size for _, _, st in files)
    if total == 0:
        raise CreateError(f"nothing to share: {str(src)!r} contains only empty files")

    if piece_length is None:
        piece_length = choose_piece_length(total)
    _check_piece_length(piece_length)

    info: dict[bytes, object] = {b"name": name_bytes, b"piece length": piece_length}
    layers = None
    if version == "v1":
        info[b"pieces"] = _hash(files, piece_length, total, progress)
    else:
        hashes = create_v2.hash_files(files, piece_length, total, version == "hybrid",
                                      progress, CreateError, multi)
        info[b"meta version"] = 2
        info[b"file tree"] = create_v2.file_tree(files, hashes.roots, multi)
        layers = hashes.layers
        if version == "hybrid":
            info[b"pieces"] = b"".join(hashes.v1_pieces)
    if version == "v2":
        pass  # a v2-only torrent has no v1 file keys
    elif multi and version == "hybrid":
        info[b"files"] = create_v2.hybrid_files(files, piece_length)
    elif multi:
        entries = []
        for components, _, st in files:
            entry: dict[bytes, object] = {b"length": st.st_size, b"path": list(components)}
            if st.st_mode & stat.S_IXUSR:
                entry[b"attr"] = b"x"
            entries.append(entry)
        info[b"files"] = entries
    else:
        info[b"length"] = total
        if top.st_mode & stat.S_IXUSR:
            info[b"attr"] = b"x"
    if private:
        info[b"private"] = 1

    torrent: dict[bytes, object] = {b"info": info}
    if layers is not None:
        torrent[b"piece layers"] = layers
    trackers = list(trackers)
    if trackers:
        torrent[b"announce"] = trackers[0].encode("utf-8")
        if len(trackers) > 1:
            torrent[b"announce-list"] = [[url.encode("utf-8")] for url in trackers]
    if web_seeds:
        torrent[b"url-list"] = [url.encode("utf-8") for url in web_seeds]
    if comment is not None:
        torrent[b"comment"] = comment.encode("utf-8")
    if created_by is not None:
        torrent[b"created by"] = created_by.encode("utf-8")
    torrent[b"creation date"] = int(time.time()) if creation_date is None else int(creation_date)

    data = bencodepy.encode(torrent)
    try:
        meta = parse(data)
    except MetainfoError as e:
        raise CreateError(f"cannot make a valid torrent of {str(src)!r}: {e}") from e
    if meta.repairs:  # a name clients would repair (and show differently): refused
        raise CreateError(f"cannot make a valid torrent of {str(src)!r}: unsafe path: "
                          f"{meta.repairs[0]}")
    return data


def _hash(
    files: list[tuple[tuple[bytes, ...], Path, os.stat_result]],
    piece_length: int,
    total: int,
    progress: Callable[[int, int], None] | None,
) -> bytes:
    """SHA-1 of each piece of the concatenated files, streamed."""
    # One reusable buffer; no bigger than the data, so a tiny file with a
    # huge piece length does not allocate the whole piece.
    view = memoryview(bytearray(min(piece_length, total)))
    fill = 0
    done = 0
    hashes: list[bytes] = []

    for _, path, st in files:
        remaining = st.st_size
        try:
            with open(path, "rb", buffering=0) as f:
                while remaining:
                    want = min(piece_length - fill, remaining)
                    got = f.readinto(view[fill:fill + want])
                    if not got:
                        raise CreateError(f"file shrank while hashing: {str(path)!r}")
                    fill += got
                    remaining -= got
                    done += got
                    if fill == piece_length:
                        hashes.append(hashlib.sha1(view[:fill]).digest())
                        fill = 0
                        if progress is not None:
                            progress(done, total)
                if f.read(1):
                    raise CreateError(f"file grew while hashing: {str(path)!r}")
        except OSError as e:
            raise CreateError(f"cannot read {str(path)!r}: {e.strerror or e}") from e

    if fill:
        hashes.append(hashlib.sha1(view[:fill]).digest())
        if progress is not None:
            progress(done, total)
    view.release()
    return b"".join(hashes)
