"""The readahead window of one open file. Pure.

Contract: the window starts at ``min_window`` bytes; each read that starts where the
previous one ended doubles it, up to ``max_window``; a read anywhere else (a seek)
shrinks it back to ``min_window``. The window always starts where the last read
ended, and is clipped to the file's end by the caller (``Geometry.file_pieces``).
"""

from __future__ import annotations


class Readahead:
    def __init__(self, min_window: int, max_window: int) -> None:
        if not 0 < min_window <= max_window:
            raise ValueError("need 0 < min_window <= max_window")
        self.min_window = min_window
        self.max_window = max_window
        self.window = min_window
        self.next_offset: int | None = None  # where a contiguous read would start

    def advance(self, offset: int, size: int) -> tuple[int, int]:
        """A read of ``[offset, offset+size)`` happened: returns ``(start, length)`` of
        the byte range to read ahead."""
        if self.next_offset is not None:
            if offset == self.next_offset:
                self.window = min(self.window * 2, self.max_window)
            else:
                self.window = self.min_window
        self.next_offset = offset + size
        return self.next_offset, self.window

    @property
    def sequential(self) -> bool:
        """True once reads have been contiguous long enough to grow the window."""
        return self.window > self.min_window
