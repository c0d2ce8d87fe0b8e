"""A torrent's data on disk: sparse files in the torrent's own layout, plus a resume file.

Synchronous and obvious, on purpose: every method here blocks, and the trio shell
calls them in worker threads (``trio.to_thread.run_sync``). Keeping storage plain
makes it easy to reason about what is on disk after a crash.

Layout under the torrent's folder (``<cache>/<info-hash hex>/``)::

    data/<name>            the file, for a single-file torrent
    data/<name>/<path...>  the files, for a multi-file torrent
    resume                 the verified-pieces bitfield (written atomically)
    torrentfs.log          the daemon's log (written by the CLI)

The torrent's own names live under ``data/`` only, so no torrent can collide with
our bookkeeping files. A fully fetched torrent in ``data/`` is an ordinary download.

Only verified pieces are ever written: a piece is hashed from memory first, then
written, so whatever the data files hold at any moment is verified data or holes.
Padding files (BEP 47) are never written; their bytes read as zeros. Paths come from
``metainfo``, which has already refused anything that could leave the folder; this
module checks again that every path resolves inside it.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import threading
from pathlib import Path

from torrentfs.core.bitfield import Bitfield
from torrentfs.core.geometry import Geometry
from torrentfs.disk.private import open_private, private_dir, write_private

RESUME_NAME = "resume"
DATA_DIR = "data"
RESUME_MAGIC = b"TFSR1"


class StorageError(OSError):
    """The cache folder cannot hold or give back the torrent's data."""


FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE = 1, 2
_libc = ctypes.CDLL(None, use_errno=True)
_fallocate = getattr(_libc, "fallocate", None)
if _fallocate is not None:
    _fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    _fallocate.restype = ctypes.c_int


def punch_hole(fd: int, offset: int, length: int) -> None:
    """Give ``[offset, offset+length)`` of a file back to the filesystem: it reads as
    zeros and uses no disk (partial blocks at the edges are zeroed in place)."""
    if _fallocate is None:
        raise OSError(errno.EOPNOTSUPP, "fallocate is not available")
    if length and _fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                             offset, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


class Storage:
    """``folder`` holds our state; the data lives in ``folder/data`` unless
    ``data_dir`` is given (``torrentfs seed`` serves a download where it lies).
    ``readonly`` storage never creates, extends or writes a data file."""

    def __init__(self, folder: str | os.PathLike, meta, geometry: Geometry, *,
                 data_dir: str | os.PathLike | None = None, readonly: bool = False) -> None:
        self.folder = Path(folder)
        self.data_dir = Path(data_dir) if data_dir is not None else self.folder / DATA_DIR
        self.readonly = readonly
        self.meta = meta
        self.geometry = geometry
        self.padding = {i for i, f in enumerate(meta.files) if f.padding}
        self.paths: list[Path] = []
        root = self.data_dir.resolve()
        for f in meta.files:
            rel = Path(meta.name, *f.path) if meta.multi_file else Path(meta.name)
            path = self.data_dir / rel
            if not path.resolve().is_relative_to(root) or path.resolve() == root:
                raise StorageError(f"unsafe path in torrent: {str(rel)!r}")
            self.paths.append(path)
        self._fds: dict[int, int] = {}
        self._lock = threading.Lock()

    # -- files ------------------------------------------------------------------

    def open(self) -> None:
        """Create the folder (0700) and every data file (0600, sparse, full length).
        Existing files are kept: their verified pieces are the cache. Read-only
        storage opens what exists, as it is; a missing file's pieces are unavailable."""
        if self.readonly:
            private_dir(self.folder, tighten=False)
            for i, path in enumerate(self.paths):
                if i not in self.padding:
                    try:
                        self._fds[i] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                    except FileNotFoundError:
                        pass
            return
        for d in (self.folder, self.data_dir):
            private_dir(d)
        for i, path in enumerate(self.paths):
            if i in self.padding:
                continue
            private_dir(path.parent, tighten=False)
            # A symlink planted where a data file belongs is not followed.
            fd = open_private(path, os.O_RDWR)
            try:
                if os.fstat(fd).st_size != self.geometry.file_lengths[i]:
                    os.ftruncate(fd, self.geometry.file_lengths[i])
            except OSError:
                os.close(fd)
                raise
            self._fds[i] = fd

    def close(self) -> None:
        with self._lock:
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()

    def write_piece(self, index: int, data) -> None:
        """Write a whole (verified) piece to its files."""
        view = memoryview(data).cast("B")
        if view.nbytes != self.geometry.piece_size(index):
            # A short buffer would make the pwrite loop below spin forever on 0 bytes.
            raise ValueError(f"piece {index} is {self.geometry.piece_size(index)} bytes, "
                             f"not {view.nbytes}")
        pos = 0
        for span in self.geometry.piece_spans(index):
            if span.file_index not in self.padding:
                chunk = view[pos:pos + span.length]
                written = 0
                while written < span.length:
                    written += os.pwrite(self._fds[span.file_index], chunk[written:],
                                         span.file_offset + written)
            pos += span.length

    def read(self, stream_offset: int, length: int) -> bytes:
        """Bytes ``[stream_offset, stream_offset+length)`` of the torrent's stream.
        The caller makes sure they lie in verified pieces."""
        parts = []
        for span in self.geometry.spans(stream_offset, length):
            if span.file_index in self.padding:
                parts.append(bytes(span.length))
                continue
            data = os.pread(self._fds[span.file_index], span.length, span.file_offset)
            if len(data) != span.length:
                raise StorageError(f"short read from {self.paths[span.file_index]}")
            parts.append(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def read_piece(self, index: int) -> bytes:
        return self.read(self.geometry.piece_offset(index), self.geometry.piece_size(index))

    def verify(self, index: int, data) -> bool:
        """True when ``data`` hashes to piece ``index``'s SHA-1 (v1), its merkle hash
        (v2), or both (a hybrid)."""
        v2 = self.meta.v2
        if v2 is not None:
            if not v2.verify(index, data):
                return False
            if not v2.hybrid:
                return True
        return hashlib.sha1(data).digest() == self.meta.piece_hash(index)

    def verify_and_write(self, index: int, data) -> bool:
        """Hash a downloaded piece; write it only if it passes. Returns the verdict.
        A write that fails (a full disk) leaves no part of the piece behind."""
        return self.store(index, data)

    def store(self, index: int, data, *, evict=(), verify: bool = True) -> bool:
        """Punch out the pieces in ``evict`` (room for this one), then hash ``data``
        (unless ``verify`` is False: hashed already) and write it if it passes.
        Returns the verdict. A write that fails (a full disk) leaves no part of the
        piece behind. Eviction is best effort: a filesystem that cannot punch holes
        keeps the bytes (the pieces are forgotten all the same)."""
        for victim in evict:
            try:
                self.punch(victim)
            except OSError:
                pass
        if verify and not self.verify(index, data):
            return False
        try:
            self.write_piece(index, data)
        except OSError:
            try:
                self.punch(index)
            except OSError:
                pass
            raise
        return True

    def punch(self, index: int) -> None:
        """Drop a piece's bytes from the disk (evicted from the cache, or a failed or
        bad write): its range becomes a hole again, so ``has_data`` is False."""
        for span in self.geometry.piece_spans(index):
            fd = self._fds.get(span.file_index)
            if fd is not None and span.file_index not in self.padding:
                punch_hole(fd, span.file_offset, span.length)

    def check_piece(self, index: int) -> bytes | None:
        """The piece's bytes read back from disk if they hash right, else None."""
        data = self.read_piece(index)
        return data if self.verify(index, data) else None

    def unrecorded(self, recorded: Bitfield) -> list[int]:
        """Pieces not in ``recorded`` whose bytes are all on disk (no holes): written
        and verified, but not yet in the resume file when the last run ended (a
        crash between the write and the next resume save). Cheap: reads nothing."""
        return [i for i in range(self.geometry.num_pieces)
                if i not in recorded and self._data_files(i) and self.has_data(i)]

    def _data_files(self, index: int) -> bool:
        """True when the piece has bytes in some real (non-padding) file."""
        return any(s.file_index not in self.padding and s.file_index in self._fds
                   for s in self.geometry.piece_spans(index))

    def check(self, progress=None) -> Bitfield:
        """Hash every piece whose files are all there at full length: the pieces
        that verify. ``progress(pieces_done, total)`` is called as it goes."""
        g = self.geometry
        sizes = {}
        for i, fd in self._fds.items():
            sizes[i] = os.fstat(fd).st_size
        good = Bitfield(g.num_pieces)
        for index in range(g.num_pieces):
            spans = [s for s in g.piece_spans(index) if s.file_index not in self.padding]
            if all(sizes.get(s.file_index) == g.file_lengths[s.file_index] for s in spans):
                try:
                    if self.verify(index, self.read_piece(index)):
                        good.add(index)
                except OSError:
                    pass
            if progress is not None:
                progress(index + 1, g.num_pieces)
        return good

    def has_data(self, index: int) -> bool:
        """False when any byte of the piece falls in a hole of a sparse file (so it
        was never written); True otherwise. Cheap: asks the filesystem, reads nothing."""
        for span in self.geometry.piece_spans(index):
            if span.file_index in self.padding:
                continue
            fd = self._fds.get(span.file_index)
            if fd is None:
                return False
            try:
                hole = os.lseek(fd, span.file_offset, os.SEEK_HOLE)
            except OSError:
                return False
            if hole < span.file_offset + span.length:
                return False
        return True

    # -- resume -----------------------------------------------------------------

    @property
    def resume_path(self) -> Path:
        return self.folder / RESUME_NAME

    def save_resume(self, have: Bitfield) -> None:
        """Write the verified-pieces bitfield atomically (temp file, fsync, rename),
        after syncing the data files so the bitfield never claims unwritten data."""
        for fd in list(self._fds.values()):
            os.fsync(fd)
        write_private(self.resume_path,
                      RESUME_MAGIC + self.meta.info_hash + have.to_bytes(), durable=True)

    def load_resume(self) -> Bitfield:
        """The pieces the resume file says are verified and whose bytes are on disk
        (no holes). A missing, foreign or damaged resume file gives an empty set."""
        n = self.geometry.num_pieces
        try:
            payload = self.resume_path.read_bytes()
        except OSError:
            return Bitfield(n)
        head = RESUME_MAGIC + self.meta.info_hash
        if not payload.startswith(head):
            return Bitfield(n)
        try:
            claimed = Bitfield.from_bytes(payload[len(head):], n)
        except ValueError:
            return Bitfield(n)
        have = Bitfield(n)
        for i in claimed:
            if self.has_data(i):
                have.add(i)
        return have
