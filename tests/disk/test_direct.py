"""Tests for torrentfs.disk.direct (verified pieces written past the page cache) and
its use by ``Storage.write_piece``: aligned spans go direct and read back right,
the rest goes through the page cache, a filesystem without O_DIRECT turns it off,
and a failed direct write fails the write as a buffered one would."""

from __future__ import annotations

import errno
import os

import pytest

from tests.disk.test_storage import PL, build, piece, storage_for
from torrentfs.core.geometry import Geometry
from torrentfs.disk import direct
from torrentfs.disk.direct import ALIGN, DirectWrites, aligned, aligned_buffer
from torrentfs.disk.storage import Storage

pytestmark = pytest.mark.skipif(not direct.O_DIRECT, reason="no O_DIRECT here")


def _file(tmp_path, size: int = 4 * ALIGN):
    path = tmp_path / "f.bin"
    path.write_bytes(bytes(size))
    return path


def _direct_ok(tmp_path) -> bool:
    """Whether this test's filesystem takes O_DIRECT at all (tmpfs before 6.6 does not)."""
    w = DirectWrites()
    w.write(_file(tmp_path), 0, b"x" * ALIGN)
    return w.enabled


def test_an_aligned_write_lands(tmp_path):
    if not _direct_ok(tmp_path):
        pytest.skip("this filesystem refuses O_DIRECT")
    path = _file(tmp_path)
    w = DirectWrites()
    data = bytearray(os.urandom(2 * ALIGN))  # a bytearray: not page-aligned itself
    assert w.write(path, ALIGN, data)
    assert path.read_bytes() == bytes(ALIGN) + data + bytes(ALIGN)


@pytest.mark.parametrize("size", [1, ALIGN, 3 * ALIGN + 5, 1 << 20])
def test_an_aligned_buffer_is_aligned_zeroed_and_writable(size):
    buf = aligned_buffer(size)
    assert len(buf) == size and aligned(buf) and not buf.readonly
    assert bytes(buf) == bytes(size)
    buf[size - 1:] = b"x"
    assert not aligned(buf[1:])
    assert aligned(buf[ALIGN:]) == (size > ALIGN)
    assert not aligned(memoryview(bytes(ALIGN)))  # read-only: its address is not had


def test_an_aligned_buffer_is_written_as_it_is(tmp_path, monkeypatch):
    if not _direct_ok(tmp_path):
        pytest.skip("this filesystem refuses O_DIRECT")
    path = _file(tmp_path)
    w = DirectWrites()
    monkeypatch.setattr(DirectWrites, "_scratch", lambda self, n: pytest.fail("copied"))
    buf = aligned_buffer(2 * ALIGN)
    buf[:] = os.urandom(2 * ALIGN)
    assert w.write(path, 2 * ALIGN, buf)
    assert path.read_bytes() == bytes(2 * ALIGN) + bytes(buf)


def test_an_unaligned_view_of_an_aligned_buffer_is_copied_first(tmp_path):
    if not _direct_ok(tmp_path):
        pytest.skip("this filesystem refuses O_DIRECT")
    path = _file(tmp_path)
    w = DirectWrites()
    buf = aligned_buffer(3 * ALIGN)
    buf[:] = os.urandom(3 * ALIGN)
    assert w.write(path, 0, buf[100:100 + 2 * ALIGN])  # through the scratch buffer
    assert path.read_bytes() == bytes(buf[100:100 + 2 * ALIGN]) + bytes(2 * ALIGN)


@pytest.mark.parametrize("offset, size", [(1, ALIGN), (0, ALIGN + 1), (ALIGN, 100), (0, 0)])
def test_an_unaligned_write_is_left_to_the_page_cache(tmp_path, offset, size):
    path = _file(tmp_path)
    w = DirectWrites()
    assert not w.write(path, offset, b"y" * size)
    assert path.read_bytes() == bytes(4 * ALIGN)  # nothing written
    assert w.enabled  # only this write: not a reason to stop


def test_a_filesystem_without_o_direct_turns_it_off(tmp_path, monkeypatch):
    path = _file(tmp_path)
    real = os.open

    def no_direct(p, flags, *args):
        if flags & direct.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(p, flags, *args)

    monkeypatch.setattr(os, "open", no_direct)
    w = DirectWrites()
    assert not w.write(path, 0, b"z" * ALIGN)
    assert not w.enabled


def _failing_pwrite(code: int):
    def pwrite(fd, data, offset):
        raise OSError(code, os.strerror(code))
    return pwrite


def test_a_refused_direct_write_falls_back_and_a_full_disk_fails(tmp_path, monkeypatch):
    path = _file(tmp_path)
    w = DirectWrites()
    monkeypatch.setattr(os, "pwrite", _failing_pwrite(errno.EINVAL))
    assert not w.write(path, 0, b"z" * ALIGN)  # the caller writes it buffered
    assert not w.enabled
    w = DirectWrites()
    monkeypatch.setattr(os, "pwrite", _failing_pwrite(errno.ENOSPC))
    with pytest.raises(OSError) as e:
        w.write(path, 0, b"z" * ALIGN)
    assert e.value.errno == errno.ENOSPC


def test_storage_writes_aligned_pieces_direct_and_reads_them_back(tmp_path, monkeypatch):
    if not _direct_ok(tmp_path):
        pytest.skip("this filesystem refuses O_DIRECT")
    meta, stream = build("movie.mkv", 5 * PL + 123)  # a short last piece
    s = storage_for(tmp_path / "cache", meta)
    s.open()
    g = s.geometry
    went = []
    real = DirectWrites.write

    def spy(self, path, offset, data):
        ok = real(self, path, offset, data)
        went.append((offset, ok))
        return ok

    monkeypatch.setattr(DirectWrites, "write", spy)
    try:
        for i in range(g.num_pieces):
            assert s.verify_and_write(i, piece(stream, g, i))
        assert went == [(g.piece_offset(i), i < g.num_pieces - 1) for i in range(g.num_pieces)]
        for i in range(g.num_pieces):
            assert s.check_piece(i) == piece(stream, g, i)
        assert (s.data_dir / "movie.mkv").read_bytes() == stream
    finally:
        s.close()


def test_readonly_storage_never_writes_direct(tmp_path):
    meta, _ = build("movie.mkv", 2 * PL)
    g = Geometry(meta.piece_length, tuple(f.length for f in meta.files))
    assert not Storage(tmp_path, meta, g, readonly=True).direct.enabled
