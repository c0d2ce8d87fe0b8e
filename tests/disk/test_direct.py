"""Tests for torrentfs.disk.direct (verified pieces written past the page cache) and
its use by ``Storage.write_piece``: the whole file pages of a span go direct and
read back right, its edges go through the page cache, a piece buffer placed at its
file's phase is written with no copy, a filesystem without O_DIRECT turns it off,
and a failed direct write fails the write as a buffered one would."""

from __future__ import annotations

import errno
import os

import pytest

from tests.disk.test_storage import PL, build, piece, storage_for
from torrentfs.core.geometry import Geometry
from torrentfs.disk import direct
from torrentfs.disk.direct import ALIGN, NOTHING, DirectWrites, aligned, aligned_buffer
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
    assert w.write(path, ALIGN, data) == range(2 * ALIGN)
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


@pytest.mark.parametrize("phase", [1, 208, ALIGN - 1])
def test_a_buffer_with_a_phase_has_its_pages_that_far_in(phase):
    buf = aligned_buffer(3 * ALIGN, phase)
    assert len(buf) == 3 * ALIGN and bytes(buf) == bytes(3 * ALIGN)
    assert not aligned(buf)
    assert aligned(buf[ALIGN - phase:]) and aligned(buf[2 * ALIGN - phase:])


def test_an_aligned_buffer_is_written_as_it_is(tmp_path, monkeypatch):
    if not _direct_ok(tmp_path):
        pytest.skip("this filesystem refuses O_DIRECT")
    path = _file(tmp_path)
    w = DirectWrites()
    monkeypatch.setattr(DirectWrites, "_scratch", lambda self, n: pytest.fail("copied"))
    buf = aligned_buffer(2 * ALIGN)
    buf[:] = os.urandom(2 * ALIGN)
    assert w.write(path, 2 * ALIGN, buf) == range(2 * ALIGN)
    assert path.read_bytes() == bytes(2 * ALIGN) + bytes(buf)


def test_the_whole_pages_of_a_buffer_placed_at_its_phase_go_as_they_are(tmp_path,
                                                                         monkeypatch):
    if not _direct_ok(tmp_path):
        pytest.skip("this filesystem refuses O_DIRECT")
    path = _file(tmp_path)
    w = DirectWrites()
    monkeypatch.setattr(DirectWrites, "_scratch", lambda self, n: pytest.fail("copied"))
    buf = aligned_buffer(2 * ALIGN + 100, phase=ALIGN - 300)  # bound for offset ALIGN - 300
    buf[:] = os.urandom(len(buf))
    assert w.write(path, ALIGN - 300, buf) == range(300, 300 + ALIGN)
    on_disk = path.read_bytes()
    assert on_disk[ALIGN:2 * ALIGN] == bytes(buf[300:300 + ALIGN])  # the whole page
    assert on_disk[:ALIGN] == bytes(ALIGN) and on_disk[2 * ALIGN:] == bytes(2 * ALIGN)


def test_an_unaligned_view_of_an_aligned_buffer_is_copied_first(tmp_path):
    if not _direct_ok(tmp_path):
        pytest.skip("this filesystem refuses O_DIRECT")
    path = _file(tmp_path)
    w = DirectWrites()
    buf = aligned_buffer(3 * ALIGN)
    buf[:] = os.urandom(3 * ALIGN)
    assert w.write(path, 0, buf[100:100 + 2 * ALIGN]) == range(2 * ALIGN)  # via scratch
    assert path.read_bytes() == bytes(buf[100:100 + 2 * ALIGN]) + bytes(2 * ALIGN)


@pytest.mark.parametrize("offset, size", [(1, ALIGN), (1, 2 * ALIGN - 2), (ALIGN, 100),
                                          (ALIGN - 1, 2), (0, 0)])
def test_a_write_without_a_whole_page_is_left_to_the_page_cache(tmp_path, offset, size):
    path = _file(tmp_path)
    w = DirectWrites()
    assert w.write(path, offset, b"y" * size) == NOTHING
    assert path.read_bytes() == bytes(4 * ALIGN)  # nothing written
    assert w.enabled  # only this write: not a reason to stop


@pytest.mark.parametrize("offset, size, pages", [
    (0, ALIGN + 1, range(0, ALIGN)),                 # a tail left
    (1, 2 * ALIGN - 1, range(ALIGN - 1, 2 * ALIGN - 1)),  # a head left
    (100, 3 * ALIGN, range(ALIGN - 100, 3 * ALIGN - 100)),  # both
])
def test_only_the_whole_pages_of_a_write_go_direct(tmp_path, offset, size, pages):
    if not _direct_ok(tmp_path):
        pytest.skip("this filesystem refuses O_DIRECT")
    path = _file(tmp_path)
    w = DirectWrites()
    data = os.urandom(size)
    assert w.write(path, offset, data) == pages
    want = bytearray(4 * ALIGN)
    want[offset + pages.start:offset + pages.stop] = data[pages.start:pages.stop]
    assert path.read_bytes() == want  # the edges are the caller's to write


def test_a_filesystem_without_o_direct_turns_it_off(tmp_path, monkeypatch):
    path = _file(tmp_path)
    real = os.open

    def no_direct(p, flags, *args):
        if flags & direct.O_DIRECT:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real(p, flags, *args)

    monkeypatch.setattr(os, "open", no_direct)
    w = DirectWrites()
    assert w.write(path, 0, b"z" * ALIGN) == NOTHING
    assert not w.enabled


def _failing_pwrite(code: int):
    def pwrite(fd, data, offset):
        raise OSError(code, os.strerror(code))
    return pwrite


def test_a_refused_direct_write_falls_back_and_a_full_disk_fails(tmp_path, monkeypatch):
    path = _file(tmp_path)
    w = DirectWrites()
    monkeypatch.setattr(os, "pwrite", _failing_pwrite(errno.EINVAL))
    assert w.write(path, 0, b"z" * ALIGN) == NOTHING  # the caller writes it buffered
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
        pages = real(self, path, offset, data)
        went.append((offset, pages))
        return pages

    monkeypatch.setattr(DirectWrites, "write", spy)
    try:
        for i in range(g.num_pieces):
            assert s.verify_and_write(i, piece(stream, g, i))
        # every piece's whole pages, the short last one's too (its 123 bytes past
        # them through the page cache)
        assert went == [(g.piece_offset(i), range(g.piece_size(i) // ALIGN * ALIGN))
                        for i in range(g.num_pieces)]
        for i in range(g.num_pieces):
            assert s.check_piece(i) == piece(stream, g, i)
        assert (s.data_dir / "movie.mkv").read_bytes() == stream
    finally:
        s.close()


def test_readonly_storage_never_writes_direct(tmp_path):
    meta, _ = build("movie.mkv", 2 * PL)
    g = Geometry(meta.piece_length, tuple(f.length for f in meta.files))
    assert not Storage(tmp_path, meta, g, readonly=True).direct.enabled


def test_a_file_off_a_page_is_written_direct_from_buffers_at_its_phase(tmp_path,
                                                                       monkeypatch):
    """A torrent whose big file starts 300 bytes in (after a small file, no
    padding): each piece's buffer is placed at the phase ``buffer_phase`` gives,
    so the whole pages of its spans go direct with no copy; the edges and the
    small file through the page cache; every byte reads back."""
    if not _direct_ok(tmp_path):
        pytest.skip("this filesystem refuses O_DIRECT")
    meta, stream = build("t", [(("a.txt",), 300, False), (("big.bin",), 4 * PL + 50, False)])
    s = storage_for(tmp_path / "cache", meta)
    s.open()
    g = s.geometry
    monkeypatch.setattr(DirectWrites, "_scratch", lambda self, n: pytest.fail("copied"))
    went = []
    real = DirectWrites.write

    def spy(self, path, offset, data):
        pages = real(self, path, offset, data)
        went.append((os.path.basename(path), offset, pages))
        return pages

    monkeypatch.setattr(DirectWrites, "write", spy)
    try:
        for i in range(g.num_pieces):
            buf = aligned_buffer(g.piece_size(i), s.buffer_phase(i))
            buf[:] = piece(stream, g, i)
            assert s.verify_and_write(i, buf)
        big = [(off, pages) for name, off, pages in went if name == "big.bin"]
        # piece 0 holds a.txt and the first PL - 300 bytes of big.bin; the others
        # start PL - 300 bytes further into it each
        assert s.buffer_phase(0) == (0 - 300) % ALIGN
        assert big[0] == (0, range((PL - 300) // ALIGN * ALIGN))
        for i, (off, pages) in enumerate(big[1:], 1):
            assert off == i * PL - 300 and s.buffer_phase(i) == off % ALIGN
            assert len(pages) >= PL - 2 * ALIGN if i < g.num_pieces - 1 else len(pages) == 0
        assert (s.data_dir / "t" / "a.txt").read_bytes() == stream[:300]
        assert (s.data_dir / "t" / "big.bin").read_bytes() == stream[300:]
        for i in range(g.num_pieces):
            assert s.check_piece(i) == piece(stream, g, i)
    finally:
        s.close()


def test_pieces_of_files_on_pages_need_no_phase(tmp_path):
    meta, _ = build("movie.mkv", 5 * PL + 123)
    s = storage_for(tmp_path, meta)
    assert [s.buffer_phase(i) for i in range(6)] == [0] * 6
    meta, _ = build("t", [(("a",), ALIGN, False), (("b",), 3 * PL, False)])
    s = storage_for(tmp_path, meta)
    assert [s.buffer_phase(i) for i in range(4)] == [0] * 4
