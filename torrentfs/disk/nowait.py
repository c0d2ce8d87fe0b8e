"""Reads that never wait for the disk: bytes already in the page cache, read in the
calling (trio) thread with ``preadv(..., RWF_NOWAIT)``.

Storage work runs in worker threads because a read may wait for the disk. For an
upload the bytes are nearly always in the page cache (just written, hashed or sent),
and a worker thread's round trip then costs more than the read itself. So the
upload path tries ``read_nowait`` first: it reads only from data files the pool
holds open and only what the page cache has; anything short of all of it (a page
not cached, a file not open, a kernel or filesystem without RWF_NOWAIT) is None,
and the caller reads in a worker thread as before. A piece whose write is still
queued (``disk/writeback.py``) is read from memory.

The caller makes sure the range lies in verified pieces, as for ``Storage.read``.
"""

from __future__ import annotations

import errno
import os

from torrentfs.disk.storage import Storage

RWF_NOWAIT = getattr(os, "RWF_NOWAIT", None)


class _State:
    supported = RWF_NOWAIT is not None  # cleared at the first EOPNOTSUPP/EINVAL


def read_nowait(storage: Storage, stream_offset: int, length: int) -> bytearray | None:
    """Bytes ``[stream_offset, stream_offset+length)`` of the torrent's stream if
    every one of them can be read now without waiting for the disk, else None."""
    if not _State.supported or length <= 0:
        return None
    if storage.unwritten:
        return _with_unwritten(storage, stream_offset, length)
    return _read_nowait(storage, stream_offset, length)


def _with_unwritten(storage: Storage, stream_offset: int, length: int) -> bytearray | None:
    """``read_nowait`` while some pieces wait for their write (disk/writeback.py):
    their bytes from memory, the others' from the page cache."""
    out = bytearray()
    for lo, hi, view in storage.unwritten_spans(stream_offset, length):
        if view is None:
            view = _read_nowait(storage, lo, hi - lo)
            if view is None:
                return None
        out += view
    return out


def _read_nowait(storage: Storage, stream_offset: int, length: int) -> bytearray | None:
    buf = bytearray(length)  # padding stays zeros
    view = memoryview(buf)
    pos = 0
    for span in storage.geometry.spans(stream_offset, length):
        if span.file_index not in storage.padding:
            with storage.pool.use_open(span.file_index) as fd:
                if fd is None:
                    return None
                try:
                    n = os.preadv(fd, [view[pos:pos + span.length]], span.file_offset,
                                  RWF_NOWAIT)
                except OSError as e:  # EAGAIN: not cached; a real error shows
                    if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # again in the
                        _State.supported = False                    # worker's read
                    return None
                if n != span.length:
                    return None  # part of it is not cached (or the file is short)
        pos += span.length
    return buf
