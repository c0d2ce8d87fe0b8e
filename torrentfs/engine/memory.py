"""What the read path keeps in memory (engine/reads.py): ``Recent``, the pieces just
verified, until a reader reaches them; ``UploadChunks``, chunks of verified pieces
read from disk for uploads, least recently used out first."""

from __future__ import annotations

from collections import OrderedDict

from torrentfs.core.geometry import Geometry

RECENT_BYTES = 40 << 20     # verified pieces kept in memory until first read
UPLOAD_CHUNK = 1 << 20      # uploads read verified pieces from disk this much at a time ...
UPLOAD_CACHE_BYTES = 32 << 20  # ... and keep this much of what they read


class Recent:
    """Just-verified pieces kept in memory (at most ``RECENT_BYTES``, oldest out
    first): the next reads are likely in them."""

    def __init__(self, limit: int = RECENT_BYTES) -> None:
        self.limit = limit
        self._pieces: OrderedDict[int, bytearray] = OrderedDict()
        self.bytes = 0

    def remember(self, index: int, data: bytearray) -> None:
        self.forget(index)  # (a piece verified in memory is remembered again once written)
        self._pieces[index] = data
        self.bytes += len(data)
        while self.bytes > self.limit and len(self._pieces) > 1:
            _, old = self._pieces.popitem(last=False)
            self.bytes -= len(old)

    def forget(self, index: int) -> None:
        data = self._pieces.pop(index, None)
        if data is not None:
            self.bytes -= len(data)

    def clear(self) -> None:
        self._pieces.clear()
        self.bytes = 0

    def block(self, index: int, begin: int, length: int) -> memoryview | None:
        """A block of a piece in memory (a view: the piece is never written again),
        or None if it is not here."""
        piece = self._pieces.get(index)
        if piece is None:
            return None
        return memoryview(piece)[begin:begin + length]

    def read(self, g: Geometry, start: int, size: int,
             pieces: range) -> bytes | memoryview | None:
        """The bytes from memory if every piece of the range is there, else None.
        A piece read to its end is let go: the kernel's page cache serves it again
        (``keep_cache``), so memory holds what readers have not reached yet."""
        recent = self._pieces
        if not all(i in recent for i in pieces):
            return None
        parts = []
        end = start + size
        for i in pieces:
            base = g.piece_offset(i)
            piece_end = base + g.piece_size(i)
            lo = max(start, base) - base
            hi = min(end, piece_end) - base
            parts.append(memoryview(recent[i])[lo:hi])
        # One piece: a view, no copy (pyfuse3 takes any buffer; the piece's bytearray
        # is never written again, and the view keeps it alive after it is let go).
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        for i in pieces:
            if end >= g.piece_offset(i) + g.piece_size(i):
                self.bytes -= len(recent.pop(i))
        return data


class UploadChunks:
    """Chunks of verified pieces read from disk for uploads (at most ``limit``
    bytes, least recently used out first): a peer asks for a piece block by block,
    so one read of ``UPLOAD_CHUNK`` bytes in a worker thread answers many requests
    instead of one thread round trip per 16 KiB block."""

    def __init__(self, limit: int = UPLOAD_CACHE_BYTES) -> None:
        self.limit = limit
        self._chunks: OrderedDict[tuple[int, int], memoryview] = OrderedDict()  # views
        self.bytes = 0

    def get(self, index: int, begin: int, length: int) -> memoryview | None:
        """The block if its chunk is here (a view of it), else None."""
        n, off = divmod(begin, UPLOAD_CHUNK)
        key = (index, n)
        chunk = self._chunks.get(key)
        if chunk is None or off + length > len(chunk):
            return None
        self._chunks.move_to_end(key)
        return chunk[off:off + length]

    def span(self, piece_size: int, begin: int, length: int) -> tuple[int, int] | None:
        """Where in the piece the chunk holding the block lies (start, size), or None
        if the block straddles two chunks (read it alone)."""
        start = begin - begin % UPLOAD_CHUNK
        size = min(UPLOAD_CHUNK, piece_size - start)
        return (start, size) if begin + length <= start + size else None

    def put(self, index: int, start: int, data: bytes) -> None:
        key = (index, start // UPLOAD_CHUNK)
        old = self._chunks.pop(key, None)
        if old is not None:
            self.bytes -= len(old)
        self._chunks[key] = memoryview(data).cast("B")
        self.bytes += len(data)
        while self.bytes > self.limit and len(self._chunks) > 1:
            _, gone = self._chunks.popitem(last=False)
            self.bytes -= len(gone)

    def forget(self, index: int) -> None:
        for key in [k for k in self._chunks if k[0] == index]:
            self.bytes -= len(self._chunks.pop(key))
