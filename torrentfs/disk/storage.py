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
from typing import Iterator

from torrentfs.core.bitfield import Bitfield, and_flags
from torrentfs.core.geometry import Geometry
from torrentfs.disk.direct import ALIGN, NOTHING, DirectWrites
from torrentfs.disk.fdpool import DEFAULT_MAX_OPEN_FILES, FdPool
from torrentfs.disk.private import open_private, private_dir, write_private

RESUME_NAME = "resume"
DATA_DIR = "data"
RESUME_MAGIC = b"TFSR1"
#: Torrents of up to this many files have every data file created at open; larger
#: ones create a file when its first piece is written.
EAGER_FILES = 1000


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


class _Paths:
    """The data file paths, made when asked (a torrent may list 100,000 files)."""

    KEEP = 256  # paths kept once made (a Path costs microseconds, asked per write)

    def __init__(self, storage: "Storage") -> None:
        self._storage = storage
        self._made: dict[int, Path] = {}

    def __len__(self) -> int:
        return len(self._storage.meta.files)

    def __getitem__(self, index: int) -> Path:
        path = self._made.get(index)
        if path is not None:
            return path
        if not 0 <= index < len(self):
            raise IndexError(f"no file {index}")
        if len(self._made) >= self.KEEP:
            self._made.clear()
        path = self._made[index] = self._storage.data_dir / self._storage.relative(index)
        return path

    def __iter__(self):
        return (self[i] for i in range(len(self)))


def data_extents(fd: int, length: int) -> list[tuple[int, int]]:
    """The ``[start, end)`` runs of a file's first ``length`` bytes that hold data
    (not holes), from SEEK_DATA/SEEK_HOLE: one call per run, not per piece."""
    out = []
    pos = 0
    while pos < length:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: only a hole from here on
            break
        if start >= length:
            break
        end = min(os.lseek(fd, start, os.SEEK_HOLE), length)
        out.append((start, end))
        pos = end
    return out


class Storage:
    """``folder`` holds our state; the data lives in ``folder/data`` unless
    ``data_dir`` is given (``torrentfs seed`` serves a download where it lies).
    ``readonly`` storage never creates, extends or writes a data file.

    Files are opened through a bounded pool (``fdpool.FdPool``, ``max_open_files``
    at a time), never one descriptor per torrent file."""

    def __init__(self, folder: str | os.PathLike, meta, geometry: Geometry, *,
                 data_dir: str | os.PathLike | None = None, readonly: bool = False,
                 max_open_files: int = DEFAULT_MAX_OPEN_FILES) -> None:
        self.folder = Path(folder)
        self.data_dir = Path(data_dir) if data_dir is not None else self.folder / DATA_DIR
        self.readonly = readonly
        self.meta = meta
        self.geometry = geometry
        # Files that hold no data of their own: padding (reads as zeros) and symlinks.
        self.padding = {i for i, f in enumerate(meta.files)
                        if f.padding or getattr(f, "symlink", None) is not None}
        self.paths = _Paths(self)
        self._check_paths()
        self.pool = FdPool(self._open_file, max_open_files)
        self._dirty: set[int] = set()  # written since the last fsync
        self.direct = DirectWrites(not readonly)  # verified pieces past the page cache
        self._scanned: tuple[bytearray, bytearray] | None = None  # load_resume's scan
        # Verified pieces whose write has not returned (disk/writeback.py): reads
        # take their bytes from here.
        self.unwritten: dict[int, object] = {}
        self._lock = threading.Lock()
        # Some file with data starts off a page of the stream: piece buffers are
        # placed to match (``buffer_phase``).
        self._phased = any(geometry.file_offset(i) % ALIGN
                           for i in range(len(meta.files))
                           if i not in self.padding and geometry.file_lengths[i])

    def relative(self, index: int) -> Path:
        """File ``index``'s path below the data folder."""
        meta = self.meta
        return Path(meta.name, *meta.files[index].path) if meta.multi_file else Path(meta.name)

    def _check_paths(self) -> None:
        """Every path must stay inside the data folder: its components are plain names
        (metainfo made them so; checked again here), and each folder they pass
        through resolves inside (a symlink planted in the cache is not followed out)."""
        root = self.data_dir.resolve()
        meta = self.meta
        names = {meta.name}
        parents: set[tuple[str, ...]] = set()
        if meta.multi_file:
            for f in meta.files:
                names.update(f.path)
                parents.add(f.path[:-1])
        for p in names:
            if p in ("", ".", "..") or "/" in p or "\0" in p:
                raise StorageError(f"unsafe path in torrent: {p!r}")
        folders = {(meta.name, *parent[:depth]) for parent in parents
                   for depth in range(len(parent) + 1)}
        for parts in folders:
            d = self.data_dir.joinpath(*parts).resolve()
            if not d.is_relative_to(root) or d == root:
                raise StorageError(f"unsafe path in torrent: {'/'.join(parts)!r}")
        if not meta.multi_file and (self.data_dir / meta.name).resolve().parent != root:
            raise StorageError(f"unsafe path in torrent: {meta.name!r}")

    # -- files ------------------------------------------------------------------

    def _open_file(self, index: int, create: bool) -> int | None:
        """The pool's opener: a new descriptor of data file ``index``; None when it is
        not there and ``create`` is False (or the storage is read-only). A writable
        file is set to its full length (sparse) when opened."""
        path = self.paths[index]
        if self.readonly:
            try:
                return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                return None
        try:
            # A symlink planted where a data file belongs is not followed.
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            if not create:
                return None
            private_dir(path.parent, tighten=False)
            fd = open_private(path, os.O_RDWR)
        try:
            if os.fstat(fd).st_size != self.geometry.file_lengths[index]:
                os.ftruncate(fd, self.geometry.file_lengths[index])
        except OSError:
            os.close(fd)
            raise
        return fd

    def open(self) -> None:
        """Create the folder (0700) and every data file (0600, sparse, full length),
        or, for a torrent of more than ``EAGER_FILES`` files, only the empty ones:
        the others are created as their first piece is written (mounting a torrent
        of 100,000 files must not create 100,000 files first). Existing files are
        kept: their verified pieces are the cache. Read-only storage creates
        nothing; a missing file's pieces are unavailable."""
        if self.readonly:
            private_dir(self.folder, tighten=False)
            return
        for d in (self.folder, self.data_dir):
            private_dir(d)
        eager = len(self.meta.files) <= EAGER_FILES
        for i, length in enumerate(self.geometry.file_lengths):
            if (eager or length == 0) and i not in self.padding:
                with self.pool.use(i, create=True):
                    pass

    def close(self) -> None:
        with self._lock:
            self.pool.close()

    def buffer_phase(self, index: int) -> int:
        """Where in a page piece ``index``'s download buffer should start
        (``aligned_buffer``'s ``phase``) so that the file pages of its longest span
        lie on memory pages: ``write_piece`` sends them to the device with no copy.
        0 when every file starts on a page (one file, or padded as BEP 47 has it)."""
        if not self._phased:
            return 0
        best, phase, pos = 0, 0, 0
        for span in self.geometry.piece_spans(index):
            if span.length > best and span.file_index not in self.padding:
                best, phase = span.length, (span.file_offset - pos) % ALIGN
            pos += span.length
        return phase

    def write_piece(self, index: int, data, direct: bool = True) -> None:
        """Write a whole (verified) piece to its files (through the page cache
        throughout unless ``direct``: a buffered write returns sooner)."""
        view = memoryview(data).cast("B")
        if view.nbytes != self.geometry.piece_size(index):
            # A short buffer would make the pwrite loop below spin forever on 0 bytes.
            raise ValueError(f"piece {index} is {self.geometry.piece_size(index)} bytes, "
                             f"not {view.nbytes}")
        pos = 0
        for span in self.geometry.piece_spans(index):
            if span.file_index not in self.padding:
                chunk = view[pos:pos + span.length]
                with self.pool.use(span.file_index, create=True) as fd:
                    self._dirty.add(span.file_index)
                    # Its whole file pages past the page cache (disk/direct.py), the
                    # rest (the edges, or all of it) through it.
                    went = (self.direct.write(self.paths[span.file_index], span.file_offset,
                                              chunk) if direct else NOTHING)
                    for written, end in ((0, went.start), (went.stop, span.length)):
                        while written < end:
                            written += os.pwrite(fd, chunk[written:end],
                                                 span.file_offset + written)
            pos += span.length

    def read(self, stream_offset: int, length: int) -> bytes:
        """Bytes ``[stream_offset, stream_offset+length)`` of the torrent's stream.
        The caller makes sure they lie in verified pieces."""
        if self.unwritten:
            return self._read_unwritten(stream_offset, length)
        return self._read_disk(stream_offset, length)

    def _read_disk(self, stream_offset: int, length: int) -> bytes:
        parts = []
        for span in self.geometry.spans(stream_offset, length):
            if span.file_index in self.padding:
                parts.append(bytes(span.length))
                continue
            with self.pool.use(span.file_index) as fd:
                if fd is None:
                    raise StorageError(f"missing data file {self.paths[span.file_index]}")
                data = os.pread(fd, span.length, span.file_offset)
            if len(data) != span.length:
                raise StorageError(f"short read from {self.paths[span.file_index]}")
            parts.append(data)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _read_unwritten(self, stream_offset: int, length: int) -> bytes:
        """``read`` while some pieces wait for their write: those from memory (a
        piece leaves ``unwritten`` only once its write has returned)."""
        parts = [bytes(view) if view is not None else self._read_disk(lo, hi - lo)
                 for lo, hi, view in self.unwritten_spans(stream_offset, length)]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def unwritten_spans(self, stream_offset: int,
                        length: int) -> Iterator[tuple[int, int, memoryview | None]]:
        """The range cut at piece edges, ``(lo, hi, view)`` for each piece it covers:
        ``view`` the bytes ``[lo, hi)`` from memory if the piece's write has not
        returned yet (``unwritten``), else None (they are on disk)."""
        g = self.geometry
        end = stream_offset + length
        for i in g.pieces_in_range(stream_offset, length):
            base = g.piece_offset(i)
            lo, hi = max(stream_offset, base), min(end, base + g.piece_size(i))
            data = self.unwritten.get(i)
            yield lo, hi, None if data is None else memoryview(data)[lo - base:hi - base]

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

    def store(self, index: int, data, *, evict=(), verify: bool = True,
              direct: bool = True) -> bool:
        """Punch out the pieces in ``evict`` (room for this one), then hash ``data``
        (unless ``verify`` is False: hashed already) and write it if it passes
        (``direct``: past the page cache where it can, ``write_piece``).
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
            self.write_piece(index, data, direct)
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
            if span.file_index in self.padding:
                continue
            with self.pool.use(span.file_index) as fd:
                if fd is not None:
                    punch_hole(fd, span.file_offset, span.length)

    def check_piece(self, index: int) -> bytes | None:
        """The piece's bytes read back from disk if they hash right, else None."""
        data = self.read_piece(index)
        return data if self.verify(index, data) else None

    def unrecorded(self, recorded: Bitfield) -> list[int]:
        """Pieces not in ``recorded`` whose bytes are all on disk (no holes): written
        and verified, but not yet in the resume file when the last run ended (a
        crash between the write and the next resume save). Cheap: reads nothing."""
        on_disk, own_data = self._scanned or self._on_disk()
        self._scanned = None
        return list(Bitfield.from_flags(and_flags(on_disk, own_data),
                                        self.geometry.num_pieces).without(recorded))

    def _existing(self) -> list[int]:
        """The indexes of the data files that exist (walks the data folder, so a
        fresh cache costs nothing whatever the number of files)."""
        if not self.data_dir.is_dir():
            return []
        found: set[str] = set()
        for dirpath, _dirs, names in os.walk(self.data_dir):
            for name in names:
                found.add(os.path.join(dirpath, name))
        if not found:
            return []
        base = str(self.data_dir)
        return [i for i in range(len(self.meta.files))
                if i not in self.padding and self.geometry.file_lengths[i]
                and os.path.join(base, self.relative(i)) in found]

    def _on_disk(self) -> tuple[bytearray, bytearray]:
        """Two flags per piece (0 or 1): all its bytes are on disk (holes are not;
        padding is), and it has bytes in some data file that exists. Found from the
        files' data extents (SEEK_DATA/SEEK_HOLE), never piece by piece."""
        g = self.geometry
        n, pl = g.num_pieces, g.piece_length
        intervals: list[tuple[int, int]] = []
        padding: list[tuple[int, int]] = []
        for i in self.padding:
            if g.file_lengths[i]:
                padding.append((g.file_offsets[i], g.file_offsets[i] + g.file_lengths[i]))
        own = bytearray(n)
        for i in self._existing():
            start, length = g.file_offsets[i], g.file_lengths[i]
            first, last = start // pl, (start + length - 1) // pl
            own[first:last + 1] = b"\1" * (last - first + 1)
            with self.pool.use(i) as fd:
                if fd is not None:
                    intervals.extend((start + a, start + b) for a, b in data_extents(fd, length))
        covered = bytearray(n)
        merged: list[list[int]] = []
        for a, b in sorted(intervals + padding):
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        total = g.total_length
        for a, b in merged:
            first = -(-a // pl)
            last = (total - 1) // pl if b >= total else b // pl - 1  # last whole piece
            if last >= first:
                covered[first:last + 1] = b"\1" * (last - first + 1)
        return covered, own

    def check(self, progress=None) -> Bitfield:
        """Hash every piece whose files are all there at full length: the pieces
        that verify. ``progress(pieces_done, total)`` is called as it goes."""
        g = self.geometry
        sizes = {}
        for i in range(len(self.meta.files)):
            if i not in self.padding:
                try:
                    sizes[i] = os.stat(self.paths[i]).st_size
                except OSError:
                    pass
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
            with self.pool.use(span.file_index) as fd:
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
        for i in sorted(self._dirty):
            self._dirty.discard(i)  # first: a write from now on marks it again
            try:
                with self.pool.use(i) as fd:
                    if fd is not None:
                        os.fsync(fd)  # flushes the file, whichever descriptor wrote it
            except OSError:
                self._dirty.add(i)  # the next save tries again
                raise
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
        self._scanned = self._on_disk()  # unrecorded() comes next at a start
        on_disk, _ = self._scanned
        return Bitfield.from_flags(and_flags(claimed.flags(), on_disk), n)
