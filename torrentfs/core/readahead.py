"""The readahead window of one open file. Pure.

Contract: the window starts at ``min_window`` bytes; each read that starts where the
previous one ended doubles it, up to ``max_window``; a read anywhere else (a seek)
shrinks it back to ``min_window``. The window always starts where the last read
ended, and is clipped to the file's end by the caller (``Geometry.file_pieces``).
A file whose first read is not at its start gives no sign of a stream (a random
reader opens, reads and closes): no window until a read continues that one, as the
kernel's own readahead does for a lone random read.
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
        if self.next_offset is None:
            if offset:  # a first read in the middle: none until one continues it
                self.window = 0
        elif offset == self.next_offset:
            self.window = min(max(self.window * 2, self.min_window), self.max_window)
        else:
            self.window = self.min_window
        self.next_offset = offset + size
        return self.next_offset, self.window

    @property
    def sequential(self) -> bool:
        """True once reads have been contiguous long enough to grow the window."""
        return self.window > self.min_window
