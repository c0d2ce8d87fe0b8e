"""Tests for torrentfs.storage: sparse data files, verified writes, the resume file.

Real files under tmp_path, no network."""

from __future__ import annotations

import hashlib
import os
import stat
from types import SimpleNamespace

import bencodepy
import pytest

from tests.harness.payload import data_of
from torrentfs.core.bitfield import Bitfield
from torrentfs.core.geometry import Geometry
from torrentfs.core.metainfo import FileEntry, parse
from torrentfs.disk.create import create_torrent
from torrentfs.disk.storage import RESUME_MAGIC, RESUME_NAME, Storage, StorageError

PL = 16384




def build(name: str, files, piece_length: int = PL):
    """A parsed torrent and its stream. ``files``: list of (path tuple, length, padding)
    for a multi-file torrent, or an int length for a single-file one."""
    if isinstance(files, int):
        stream = data_of(files, 1)
        info = {b"name": name.encode(), b"piece length": piece_length, b"length": files}
    else:
        parts, entries = [], []
        for k, (path, length, padding) in enumerate(files):
            parts.append(bytes(length) if padding else data_of(length, 100 + k))
            e = {b"path": [c.encode() for c in path], b"length": length}
            if padding:
                e[b"attr"] = b"p"
            entries.append(e)
        stream = b"".join(parts)
        info = {b"name": name.encode(), b"piece length": piece_length, b"files": entries}
    info[b"pieces"] = b"".join(hashlib.sha1(stream[i:i + piece_length]).digest()
                               for i in range(0, len(stream), piece_length))
    meta = parse(bencodepy.encode({b"info": info}))
    return meta, stream


def storage_for(folder, meta) -> Storage:
    g = Geometry(meta.piece_length, tuple(f.length for f in meta.files))
    return Storage(folder, meta, g)


def piece(stream: bytes, g: Geometry, i: int) -> bytes:
    off = g.piece_offset(i)
    return stream[off:off + g.piece_size(i)]


# files straddle piece boundaries, a padding file, zero-length files, a short last piece
MULTI_FILES = [
    (("a.bin",), 10000, False),
    (("empty0",), 0, False),
    (("sub", "b.bin"), 30000, False),
    ((".pad", "1000"), 1000, True),
    (("sub", "deeper", "c.bin"), 16384, False),
    (("tiny",), 3, False),
    (("z-empty",), 0, False),
]


@pytest.fixture
def multi(tmp_path):
    meta, stream = build("top", MULTI_FILES)
    s = storage_for(tmp_path / "cache" / meta.info_hash_hex, meta)
    s.open()
    yield s, stream
    s.close()


@pytest.fixture
def single(tmp_path):
    meta, stream = build("movie.mkv", 5 * PL + 123)
    s = storage_for(tmp_path / meta.info_hash_hex, meta)
    s.open()
    yield s, stream
    s.close()


# -- open --------------------------------------------------------------------------


def test_open_creates_sparse_files_of_full_length(multi):
    s, _ = multi
    top = s.data_dir / "top"
    for path, length, padding in MULTI_FILES:
        p = top.joinpath(*path)
        if padding:
            continue
        st = os.stat(p)
        assert st.st_size == length
        assert st.st_blocks == 0  # sparse: nothing allocated
        assert stat.S_IMODE(st.st_mode) == 0o600


def test_open_modes(multi):
    s, _ = multi
    assert stat.S_IMODE(os.stat(s.folder).st_mode) == 0o700


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277], ids=["000", "022", "277"])
def test_every_folder_0700_and_file_0600_whatever_the_umask(tmp_path, umask):
    meta, stream = build("top", MULTI_FILES + [(("x", "y", "z", "f"), 5, False)])
    s = storage_for(tmp_path / "cache" / meta.info_hash_hex, meta)
    old = os.umask(umask)
    try:
        s.open()
        s.save_resume(Bitfield(s.geometry.num_pieces))
    finally:
        os.umask(old)
        s.close()
    for dirpath, dirnames, filenames in os.walk(s.folder):
        assert stat.S_IMODE(os.stat(dirpath).st_mode) == 0o700, dirpath
        for f in filenames:
            assert stat.S_IMODE(os.stat(os.path.join(dirpath, f)).st_mode) == 0o600, f
    assert (s.data_dir / "top" / "x" / "y" / "z" / "f").exists()


def test_symlink_planted_after_the_check_is_not_followed(tmp_path):
    meta, _ = build("f", 100)
    folder = tmp_path / "c"
    (folder / "data").mkdir(parents=True)
    target = tmp_path / "victim"
    target.write_bytes(b"precious")
    s = storage_for(folder, meta)  # checks the paths...
    os.symlink(target, folder / "data" / "f")  # ...then someone plants a link
    with pytest.raises(OSError):
        s.open()
    s.close()
    assert target.read_bytes() == b"precious"


def test_open_existing_folder_is_made_private(tmp_path):
    meta, _ = build("f", 100)
    folder = tmp_path / "x"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    s = storage_for(folder, meta)
    s.open()
    try:
        assert stat.S_IMODE(os.stat(folder).st_mode) == 0o700
    finally:
        s.close()


def test_padding_files_not_created(multi):
    s, _ = multi
    assert not (s.data_dir / "top" / ".pad").exists()
    assert set(os.listdir(s.data_dir / "top")) == {"a.bin", "empty0", "sub", "tiny", "z-empty"}


def test_single_file_layout(single):
    s, stream = single
    assert os.listdir(s.data_dir) == ["movie.mkv"]
    assert os.path.getsize(s.data_dir / "movie.mkv") == len(stream)


def test_reopen_keeps_existing_data(tmp_path):
    meta, stream = build("movie", 3 * PL)
    folder = tmp_path / "c"
    s = storage_for(folder, meta)
    s.open()
    assert s.verify_and_write(1, piece(stream, s.geometry, 1))
    s.close()
    s2 = storage_for(folder, meta)
    s2.open()
    try:
        assert s2.has_data(1) and not s2.has_data(0)
        assert s2.read_piece(1) == piece(stream, s2.geometry, 1)
    finally:
        s2.close()


def test_open_fixes_wrong_file_length(tmp_path):
    meta, _ = build("movie", 3 * PL)
    folder = tmp_path / "c"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "movie").write_bytes(b"x" * 10)
    s = storage_for(folder, meta)
    s.open()
    try:
        assert os.path.getsize(folder / "data" / "movie") == 3 * PL
    finally:
        s.close()


# -- unsafe paths ------------------------------------------------------------------


def fake_meta(name, paths, multi_file=True):
    files = tuple(FileEntry(tuple(p), 10, 10 * i) for i, p in enumerate(paths))
    return SimpleNamespace(name=name, files=files, multi_file=multi_file, piece_length=PL,
                           info_hash=b"\x01" * 20)


@pytest.mark.parametrize("name, paths", [
    ("top", [("..", "..", "escape")]),
    ("..", [("x",)]),
    ("top", [("a", "..", "..", "..", "etc")]),
    (".", [(".",)]),
])
def test_unsafe_paths_refused(tmp_path, name, paths):
    meta = fake_meta(name, paths)
    with pytest.raises(StorageError):
        Storage(tmp_path / "c", meta, Geometry(PL, tuple(f.length for f in meta.files)))


def test_symlink_out_of_the_folder_refused(tmp_path):
    folder = tmp_path / "c"
    (folder / "data").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, folder / "data" / "top")
    meta = fake_meta("top", [("f",)])
    with pytest.raises(StorageError):
        Storage(folder, meta, Geometry(PL, (10,)))


# -- verify and write ---------------------------------------------------------------


def test_verify_and_write_rejects_bad_data(multi):
    s, stream = multi
    good = piece(stream, s.geometry, 0)
    bad = bytearray(good)
    bad[5000] ^= 1
    assert s.verify_and_write(0, bytes(bad)) is False
    assert s.verify_and_write(0, good[:-1]) is False
    assert s.verify_and_write(0, b"") is False
    assert not s.has_data(0)
    for path, length, padding in MULTI_FILES:
        if not padding:
            assert os.stat(s.data_dir / "top" / os.path.join(*path)).st_blocks == 0


def test_write_piece_wrong_length_raises(single):
    s, stream = single
    with pytest.raises(ValueError):
        s.write_piece(0, piece(stream, s.geometry, 0)[:-1])
    with pytest.raises(ValueError):
        s.write_piece(0, piece(stream, s.geometry, 0) + b"x")


def test_write_then_read_across_file_boundaries(multi):
    s, stream = multi
    g = s.geometry
    assert g.num_pieces == 4  # 57387 bytes
    for i in range(g.num_pieces):
        assert s.verify_and_write(i, piece(stream, g, i)) is True
    for i in range(g.num_pieces):
        assert s.read_piece(i) == piece(stream, g, i)
        assert s.has_data(i)
    total = g.total_length
    for start, length in [(0, total), (9990, 20), (10000, 1), (39999, 2), (40000, 1000),
                          (39990, 1100), (total - 3, 3), (total - 1, 1), (5, 0), (total, 0)]:
        assert s.read(start, length) == stream[start:start + length], (start, length)
    # the files hold exactly their own bytes
    assert (s.data_dir / "top" / "a.bin").read_bytes() == stream[:10000]
    assert (s.data_dir / "top" / "sub" / "b.bin").read_bytes() == stream[10000:40000]
    assert (s.data_dir / "top" / "sub" / "deeper" / "c.bin").read_bytes() == stream[41000:57384]
    assert (s.data_dir / "top" / "tiny").read_bytes() == stream[57384:]
    assert (s.data_dir / "top" / "empty0").read_bytes() == b""


def test_read_outside_the_stream(multi):
    s, _ = multi
    with pytest.raises(ValueError):
        s.read(s.geometry.total_length - 1, 2)


def test_padding_reads_as_zeros(multi):
    s, stream = multi
    g = s.geometry
    # piece 2 covers 32768..49151: end of b.bin, all of the padding, start of c.bin
    assert s.verify_and_write(2, piece(stream, g, 2))
    assert s.read(40000, 1000) == bytes(1000)
    assert s.read(39999, 1002) == stream[39999:41001]
    assert stream[40000:41000] == bytes(1000)


def test_piece_of_only_padding(tmp_path):
    meta, stream = build("t", [(("a",), PL, False), ((".pad", "x"), PL, True), (("b",), 5, False)])
    s = storage_for(tmp_path / "c", meta)
    s.open()
    try:
        assert s.has_data(1)  # nothing to write: its bytes are zeros by definition
        assert s.read_piece(1) == bytes(PL)
        assert s.verify_and_write(1, bytes(PL))
    finally:
        s.close()


def test_verify(single):
    s, stream = single
    assert s.verify(0, piece(stream, s.geometry, 0))
    assert not s.verify(1, piece(stream, s.geometry, 0))
    with pytest.raises(IndexError):
        s.verify(99, b"")


# -- has_data ----------------------------------------------------------------------


def test_has_data_false_for_holes_true_after_write(single):
    s, stream = single
    g = s.geometry
    assert [s.has_data(i) for i in range(g.num_pieces)] == [False] * 6
    assert s.verify_and_write(2, piece(stream, g, 2))
    assert [s.has_data(i) for i in range(g.num_pieces)] == [False, False, True, False, False, False]
    assert s.verify_and_write(5, piece(stream, g, 5))  # the short last piece
    assert s.has_data(5) and not s.has_data(4)


def test_has_data_with_unaligned_files(multi):
    s, stream = multi
    g = s.geometry
    assert s.verify_and_write(1, piece(stream, g, 1))  # 16384..32767, inside b.bin
    assert [s.has_data(i) for i in range(4)] == [False, True, False, False]
    assert s.verify_and_write(3, piece(stream, g, 3))  # the short last piece, two files
    assert [s.has_data(i) for i in range(4)] == [False, True, False, True]


def test_zero_bytes_written_still_count_as_data(tmp_path):
    # a piece whose data really is zeros, in a non-padding file
    info = {b"name": b"z", b"piece length": PL, b"length": 2 * PL,
            b"pieces": hashlib.sha1(bytes(PL)).digest() * 2}
    meta = parse(bencodepy.encode({b"info": info}))
    s = storage_for(tmp_path / "c", meta)
    s.open()
    try:
        assert not s.has_data(0)
        assert s.verify_and_write(0, bytes(PL))
        assert s.has_data(0) and not s.has_data(1)
    finally:
        s.close()


# -- resume ------------------------------------------------------------------------


def written(s: Storage, stream: bytes, pieces) -> Bitfield:
    have = Bitfield(s.geometry.num_pieces)
    for i in pieces:
        assert s.verify_and_write(i, piece(stream, s.geometry, i))
        have.add(i)
    return have


def test_resume_round_trip(multi):
    s, stream = multi
    have = written(s, stream, [0, 3])
    s.save_resume(have)
    assert s.resume_path.name == RESUME_NAME
    assert stat.S_IMODE(os.stat(s.resume_path).st_mode) == 0o600
    assert not any(p.endswith(".tmp") for p in os.listdir(s.folder))
    loaded = s.load_resume()
    assert list(loaded) == [0, 3]
    assert loaded.size == s.geometry.num_pieces


def test_resume_survives_reopen(tmp_path):
    meta, stream = build("m", 4 * PL)
    folder = tmp_path / "c"
    s = storage_for(folder, meta)
    s.open()
    s.save_resume(written(s, stream, [1, 2]))
    s.close()
    s2 = storage_for(folder, meta)
    s2.open()
    try:
        assert list(s2.load_resume()) == [1, 2]
    finally:
        s2.close()


def test_resume_missing_gives_empty(multi):
    s, _ = multi
    assert s.load_resume().count == 0


def test_resume_save_overwrites(multi):
    s, stream = multi
    have = written(s, stream, [0, 1])
    s.save_resume(have)
    have.discard(0)
    s.save_resume(have)
    assert list(s.load_resume()) == [1]


def test_resume_foreign_info_hash_gives_empty(tmp_path):
    meta, stream = build("m", 4 * PL)
    other, _ = build("other", 4 * PL)
    assert other.info_hash != meta.info_hash
    folder = tmp_path / "c"
    s = storage_for(folder, meta)
    s.open()
    have = written(s, stream, [0, 1, 2, 3])
    s.save_resume(have)
    s.close()
    # the same folder opened for another torrent with the same layout
    s2 = storage_for(folder, other)
    s2.open()
    try:
        assert s2.load_resume().count == 0
    finally:
        s2.close()


@pytest.mark.parametrize("mangle", [
    lambda p: p[:-1],  # truncated bitfield
    lambda p: p[:10],  # truncated inside the info-hash
    lambda p: b"",  # empty
    lambda p: p + b"\x00",  # too long
    lambda p: b"XXXXX" + p[5:],  # wrong magic
    lambda p: p[:-1] + bytes([p[-1] | 0x01]),  # a spare bit set
])
def test_resume_damaged_gives_empty(multi, mangle):
    s, stream = multi
    have = written(s, stream, [0, 1, 2])
    s.save_resume(have)
    payload = s.resume_path.read_bytes()
    assert payload.startswith(RESUME_MAGIC + s.meta.info_hash)
    s.resume_path.write_bytes(mangle(payload))
    assert s.load_resume().count == 0


def test_resume_claiming_a_hole_is_not_trusted(single):
    s, stream = single
    have = written(s, stream, [0, 4])
    have.add(2)  # claimed, never written
    have.add(5)
    s.save_resume(have)
    assert list(s.load_resume()) == [0, 4]


def test_resume_claim_after_file_truncated(tmp_path):
    meta, stream = build("m", 4 * PL)
    folder = tmp_path / "c"
    s = storage_for(folder, meta)
    s.open()
    s.save_resume(written(s, stream, [0, 1, 2, 3]))
    s.close()
    # someone truncated the data file: open() re-extends it with a hole
    os.truncate(folder / "data" / "m", PL)
    s2 = storage_for(folder, meta)
    s2.open()
    try:
        assert list(s2.load_resume()) == [0]
    finally:
        s2.close()


def test_storage_on_created_torrent(tmp_path):
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "one").write_bytes(data_of(20000, 7))
    (src / "d" / "two").write_bytes(data_of(30000, 8))
    meta = parse(create_torrent(src, piece_length=PL, creation_date=0))
    stream = (src / "d" / "two").read_bytes() + (src / "one").read_bytes()
    s = storage_for(tmp_path / "cache", meta)
    s.open()
    try:
        for i in range(s.geometry.num_pieces):
            assert s.verify_and_write(i, piece(stream, s.geometry, i))
        assert (tmp_path / "cache" / "data" / "src" / "one").read_bytes() == (src / "one").read_bytes()
        assert s.read(0, len(stream)) == stream
    finally:
        s.close()


# -- cache eviction, failed writes, recovery -----------------------------------------


def blocks_of(s: Storage) -> int:
    return sum(os.stat(p).st_blocks for i, p in enumerate(s.paths) if i not in s.padding)


def test_punch_gives_the_space_back(tmp_path):
    meta, stream = build("big.bin", 64 * PL)
    s = storage_for(tmp_path / "c", meta)
    s.open()
    try:
        written(s, stream, range(64))
        full = blocks_of(s)
        assert full * 512 >= 64 * PL
        for i in range(0, 64, 2):
            s.punch(i)
        assert blocks_of(s) * 512 <= 32 * PL + 8192
        assert not s.has_data(0) and s.has_data(1)
        assert s.check_piece(1) == piece(stream, s.geometry, 1)
        assert s.read_piece(0) == bytes(PL)
    finally:
        s.close()


def test_punch_across_file_boundaries_keeps_the_neighbours(multi):
    s, stream = multi
    g = s.geometry
    written(s, stream, range(g.num_pieces))
    s.punch(1)
    assert not s.has_data(1)
    for i in (0, 2, 3):
        assert s.check_piece(i) == piece(stream, g, i), i
    assert s.check_piece(1) is None


def test_failed_write_leaves_nothing(single, monkeypatch):
    """A write that fails half-way (disk full) leaves a hole, not half a piece."""
    s, stream = single
    g = s.geometry
    real = os.pwrite
    calls = []

    def pwrite(fd, data, offset):
        calls.append(offset)
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        return real(fd, data[:4096], offset)  # a short first write, then ENOSPC

    monkeypatch.setattr(os, "pwrite", pwrite)
    with pytest.raises(OSError) as e:
        s.verify_and_write(2, piece(stream, g, 2))
    assert e.value.errno == 28
    monkeypatch.setattr(os, "pwrite", real)
    assert not s.has_data(2)
    assert s.read_piece(2) == bytes(g.piece_size(2))


def test_unrecorded_finds_written_pieces_missing_from_resume(multi):
    """A crash between a piece's write and the next resume save: the piece is on
    disk but not recorded. ``unrecorded`` names it (and only such pieces)."""
    s, stream = multi
    recorded = written(s, stream, [0])
    s.save_resume(recorded)
    written(s, stream, [2, 3])
    assert s.unrecorded(s.load_resume()) == [2, 3]
    s.punch(2)
    assert s.unrecorded(s.load_resume()) == [3]


def test_check_piece_finds_a_damaged_piece(single):
    s, stream = single
    g = s.geometry
    written(s, stream, [1])
    with open(s.paths[0], "r+b") as f:
        f.seek(g.piece_offset(1) + 100)
        f.write(b"\x00\x01")
    assert s.check_piece(1) is None
    assert s.has_data(1)  # nothing but a hash can tell


# -- open files ----------------------------------------------------------------------


def test_many_files_never_hold_more_descriptors_than_the_pool(tmp_path, monkeypatch):
    import torrentfs.disk.storage as storage_module
    monkeypatch.setattr(storage_module, "EAGER_FILES", 50)  # lazy creation past this
    files = [((f"d{i // 100}", f"f{i}"), 700 + i % 5, False) for i in range(300)]
    meta, stream = build("many", files)
    before = len(os.listdir("/proc/self/fd"))
    s = Storage(tmp_path / "c", meta, Geometry(PL, tuple(f.length for f in meta.files)),
                max_open_files=16)
    s.open()
    try:
        assert not (s.data_dir / "many").exists()  # over EAGER_FILES: nothing made yet
        have = written(s, stream, range(s.geometry.num_pieces))
        assert len(s.pool) <= 16
        assert len(os.listdir("/proc/self/fd")) <= before + 16
        s.save_resume(have)  # fsyncs every written file, reopening the closed ones
        for i in range(s.geometry.num_pieces):
            assert s.read_piece(i) == piece(stream, s.geometry, i)
        assert len(s.pool) <= 16
        assert list(s.load_resume()) == list(range(s.geometry.num_pieces))
        assert all(os.path.getsize(s.paths[i]) == f.length for i, f in enumerate(meta.files))
    finally:
        s.close()
    assert len(os.listdir("/proc/self/fd")) <= before
