"""The read path's memory for uploads: ``memory.UploadChunks`` keeps chunks of pieces
read from disk, bounded, least recently used out first, and forgets an evicted
piece."""

from __future__ import annotations

from torrentfs.engine import memory
from torrentfs.engine.memory import UPLOAD_CHUNK, UploadChunks


def test_a_block_comes_from_its_chunk():
    c = UploadChunks(limit=4 * UPLOAD_CHUNK)
    data = bytes(range(256)) * (UPLOAD_CHUNK // 256)
    assert c.get(3, 0, 16384) is None
    c.put(3, UPLOAD_CHUNK, data)
    assert c.get(3, 0, 16384) is None  # another chunk of the piece
    got = c.get(3, UPLOAD_CHUNK + 512, 100)
    assert bytes(got) == data[512:612]
    assert c.get(3, 2 * UPLOAD_CHUNK - 50, 100) is None  # runs past the chunk's end


def test_a_short_last_chunk_and_a_straddling_block():
    assert UploadChunks().span(UPLOAD_CHUNK + 1000, UPLOAD_CHUNK, 1000) == (UPLOAD_CHUNK, 1000)
    assert UploadChunks().span(4 * UPLOAD_CHUNK, 16384, 16384) == (0, UPLOAD_CHUNK)
    assert UploadChunks().span(4 * UPLOAD_CHUNK, UPLOAD_CHUNK - 10, 100) is None


def test_bounded_least_recently_used_out_first():
    c = UploadChunks(limit=2 * UPLOAD_CHUNK)
    chunk = bytes(UPLOAD_CHUNK)
    c.put(1, 0, chunk)
    c.put(2, 0, chunk)
    assert c.get(1, 0, 10) is not None  # 1 used again: 2 is the oldest
    c.put(3, 0, chunk)
    assert c.bytes <= c.limit
    assert c.get(2, 0, 10) is None and c.get(1, 0, 10) is not None
    c.put(1, 0, chunk)  # the same chunk again is counted once
    assert c.bytes == 2 * UPLOAD_CHUNK


def test_forget_drops_every_chunk_of_a_piece():
    c = UploadChunks(limit=8 * UPLOAD_CHUNK)
    for start in (0, UPLOAD_CHUNK):
        c.put(5, start, bytes(UPLOAD_CHUNK))
    c.put(6, 0, bytes(UPLOAD_CHUNK))
    c.forget(5)
    assert c.get(5, 0, 1) is None and c.get(5, UPLOAD_CHUNK, 1) is None
    assert c.bytes == UPLOAD_CHUNK


def test_default_bound():
    assert UploadChunks().limit == memory.UPLOAD_CACHE_BYTES
