"""Reads that never wait for the disk (``disk.nowait``): the bytes of the page cache,
from files the pool holds open, in the calling thread; anything short of all of
them is None (the caller then reads in a worker thread)."""

from __future__ import annotations

import errno
import os

import pytest

from tests.disk.test_storage import MULTI_FILES, build, piece, storage_for
from torrentfs.disk import nowait
from torrentfs.disk.nowait import read_nowait

pytestmark = pytest.mark.skipif(nowait.RWF_NOWAIT is None, reason="no RWF_NOWAIT here")


@pytest.fixture
def multi(tmp_path, monkeypatch):
    monkeypatch.setattr(nowait._State, "supported", True)
    meta, stream = build("top", MULTI_FILES)
    s = storage_for(tmp_path / "cache" / meta.info_hash_hex, meta)
    s.open()
    for i in range(s.geometry.num_pieces):  # through the page cache: held there
        assert s.store(i, piece(stream, s.geometry, i), direct=False)
    yield s, stream
    s.close()


def test_reads_what_the_page_cache_holds_across_files_and_padding(multi):
    s, stream = multi
    # just written: cached. 39999.. spans b.bin, the padding file and c.bin.
    for start, size in ((0, len(stream)), (39999, 1002), (40000, 1000), (5, 9000)):
        assert read_nowait(s, start, size) == stream[start:start + size]


def test_none_when_a_file_is_not_open(multi):
    s, stream = multi
    s.pool.close()  # nothing open: it opens nothing (opening may wait for a disk)
    assert read_nowait(s, 0, 100) is None
    assert len(s.pool) == 0
    assert s.read(0, 100) == stream[:100]  # the worker's way opens it
    assert read_nowait(s, 0, 100) == stream[:100]


def test_none_when_not_cached(multi, monkeypatch):
    s, _ = multi
    real = os.preadv

    def uncached(fd, buffers, offset, flags=0):
        assert flags == nowait.RWF_NOWAIT
        raise BlockingIOError(errno.EAGAIN, "not cached")
    monkeypatch.setattr(nowait.os, "preadv", uncached)
    assert read_nowait(s, 0, 100) is None
    assert nowait._State.supported  # only not now

    def short(fd, buffers, offset, flags=0):  # part of it cached
        return max(0, real(fd, buffers, offset, flags) - 1)
    monkeypatch.setattr(nowait.os, "preadv", short)
    assert read_nowait(s, 0, 100) is None


def test_given_up_where_the_kernel_cannot(multi, monkeypatch):
    s, _ = multi
    calls = []

    def unsupported(fd, buffers, offset, flags=0):
        calls.append(offset)
        raise OSError(errno.EOPNOTSUPP, "no RWF_NOWAIT")
    monkeypatch.setattr(nowait.os, "preadv", unsupported)
    assert read_nowait(s, 0, 100) is None
    assert read_nowait(s, 0, 100) is None
    assert len(calls) == 1  # not tried again


def test_really_uncached_pages_are_not_waited_for(tmp_path, monkeypatch):
    """With the file's pages dropped from the page cache (when the kernel lets us:
    fsync, then POSIX_FADV_DONTNEED), nothing is read."""
    monkeypatch.setattr(nowait._State, "supported", True)
    meta, stream = build("big.bin", 64 * 16384)
    s = storage_for(tmp_path / meta.info_hash_hex, meta)
    s.open()
    try:
        for i in range(s.geometry.num_pieces):
            assert s.verify_and_write(i, piece(stream, s.geometry, i))
        with s.pool.use(0) as fd:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            try:
                os.preadv(fd, [bytearray(1)], 500000, nowait.RWF_NOWAIT)
                pytest.skip("the pages stayed cached")
            except BlockingIOError:
                pass
        assert read_nowait(s, 0, len(stream)) is None
        assert s.read(0, len(stream)) == stream
        assert read_nowait(s, 0, len(stream)) == stream  # cached by that read
    finally:
        s.close()
