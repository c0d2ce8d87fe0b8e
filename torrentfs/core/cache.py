"""Which verified pieces to keep on disk under a size limit. Pure: no I/O, no clock.

Contract
--------
* ``used`` is the bytes of every piece on disk or being written (``reserve`` counts a
  piece before its write, so the disk never holds more than the limit while a write
  is under way); ``removed`` forgets a piece, whatever its state.
* Pieces are evicted least recently *read* first (``read`` marks a use). A piece
  stored but never read yet (readahead, prefetch, a reader not there yet) ranks
  after every piece already read, oldest stored first: the reader is about to come.
* A pinned piece (being read, being uploaded) is never a victim; pins nest.
* ``victims(extra)`` names the pieces to evict so that ``used + extra <= limit``, and
  takes them out of the books; it names fewer if pins leave too little to evict.
  With no limit it names nothing.
"""

from __future__ import annotations

from collections import OrderedDict


class PieceCache:
    def __init__(self, limit: int | None = None) -> None:
        self.limit = limit
        self.used = 0
        self._unread: OrderedDict[int, int] = OrderedDict()  # piece -> size, stored order
        self._read: OrderedDict[int, int] = OrderedDict()    # piece -> size, read order
        self._pins: dict[int, int] = {}

    def __contains__(self, index: int) -> bool:
        return index in self._unread or index in self._read

    def __len__(self) -> int:
        return len(self._unread) + len(self._read)

    def reserve(self, index: int, size: int) -> None:
        """Piece ``index`` (``size`` bytes) is on disk, or about to be written."""
        self.removed(index)
        self._unread[index] = size
        self.used += size

    def read(self, index: int) -> None:
        """A reader used the piece: it becomes the most recently read."""
        size = self._take(index)
        if size is not None:
            self._read[index] = size

    def removed(self, index: int) -> None:
        """The piece is no longer on disk (evicted, failed its check, never written)."""
        size = self._take(index)
        if size is not None:
            self.used -= size

    def _take(self, index: int) -> int | None:
        """Take the piece out of the books (``used`` unchanged); its size, or None if
        it was not in them."""
        size = self._unread.pop(index, None)
        return self._read.pop(index, None) if size is None else size

    def pin(self, index: int) -> None:
        self._pins[index] = self._pins.get(index, 0) + 1

    def unpin(self, index: int) -> None:
        n = self._pins.get(index, 0) - 1
        if n > 0:
            self._pins[index] = n
        else:
            self._pins.pop(index, None)

    def pinned(self, index: int) -> bool:
        return index in self._pins

    def victims(self, extra: int = 0, limit: int | None = None) -> list[int]:
        """Pieces to evict (and forget) so that ``used + extra`` fits ``limit``
        (default: this cache's limit), least recently read first, never pinned."""
        limit = self.limit if limit is None else limit
        if limit is None:
            return []
        out: list[int] = []
        for books in (self._read, self._unread):
            for index in list(books):
                if self.used + extra <= limit:
                    return out
                if index in self._pins:
                    continue
                self.used -= books.pop(index)
                out.append(index)
        return out
