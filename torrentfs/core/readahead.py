"""The readahead window of one open file. Pure.

Contract: the window starts at ``min_window`` bytes; each read that starts where the
previous one ended doubles it, up to ``max_window``; a read anywhere else (a seek)
shrinks it back to ``min_window``. The window always starts where the last read
ended, and is clipped to the file's end by the caller (``Geometry.file_pieces``).
A file whose first read is not at its start gives no sign of a stream (a random
reader opens, reads and closes): no window until a read continues that one, as the
kernel's own readahead does for a lone random read.

``pace(size)`` restarts the window at twice the last read's size (never larger than
it is): a reader whose first read was answered fast (a fast swarm) is read ahead of
at its own pace, the window doubling with each read that continues, rather than by
``min_window`` at once, which a program that reads a few hundred KiB (a probe, a
seek) would wait beside. ``sequential`` says whether the last read continued one
before it, since the window last restarted.
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
        self._grown = False  # a contiguous read grew the window since it restarted

    def advance(self, offset: int, size: int) -> tuple[int, int]:
        """A read of ``[offset, offset+size)`` happened: returns ``(start, length)`` of
        the byte range to read ahead."""
        if self.next_offset is None:
            if offset:  # a first read in the middle: none until one continues it
                self.window = 0
        elif offset == self.next_offset:
            if self.window:
                self._grown = self.window < self.max_window or self._grown
                self.window = min(self.window * 2, self.max_window)
            else:  # the first read in the middle was a stream's after all
                self.window = self.min_window
        else:
            self.window = self.min_window
            self._grown = False
        self.next_offset = offset + size
        return self.next_offset, self.window

    def pace(self, size: int) -> tuple[int, int]:
        """Restart the window at twice ``size`` (the last read's), or keep it if it is
        smaller: returns ``(start, length)`` as ``advance`` does."""
        if self.next_offset is None:
            raise ValueError("pace() before any read")
        self.window = min(self.window, 2 * size)
        return self.next_offset, self.window

    @property
    def sequential(self) -> bool:
        """True once a contiguous read grew the window since it last restarted."""
        return self._grown
