"""A head start for the videos of a folder being listed: ``HeadStart``, owned by the
read path (``reads.Reads.head_start``).

A program that probes a video (ffprobe, a thumbnailer, a player opening it) reads
its first piece, and a player that seeks also its last (a container's index sits
there: mkv cues, an mp4 moov). The first read of a cold file waits for a whole
piece from the swarm (a request round trip, then the piece), and whatever the
read path fetches meanwhile (the last piece, the readahead) is received and
hashed beside the program on the same cores. A listing of a folder comes before
any of that (a program starts: 60 ms for ffprobe's own libraries), so when a folder
is listed (``listed``: the FUSE layer's first READDIR of it) the first and then the
last pieces of its video files are raised to READAHEAD, at most ``budget`` bytes
in all per mount (``--head-start``, default ``BUDGET``; 0: none) (a folder of a hundred videos costs no more than a few of them),
each folder once. A read of such a piece later finds it verified (or on its way);
nothing is ever returned that the read path did not verify.

The swarm is used only in a lull: the pieces are raised (``run``) once
``LISTED_LULL`` has passed since the listing and ``LULL`` since the last read of the
torrent began (``read_began``), with no read waiting, so a program that reads
another file right after listing the folder (``dd``, a copy, a sequential reader)
never shares the peers with a head start it did not ask for. The lull after a
listing is the shorter: a program that probes a video may start as the listing
ends (a shell's ``ls`` then ``ffprobe``), and ffprobe opens the file ~60 ms after
it starts; counted from the listing at ``LULL``, the pieces often came after that
open (docs/benchmarks.md, session 10).

A file's first read answered at once from pieces the head start brought quickly
(within ``QUICK`` of being asked: a fast swarm) reads ahead at the reader's pace,
as a first read answered fast does (``reads.PACE_BELOW``; ``quick``): the bytes
say nothing else of the swarm, and a probe that reads a few hundred KiB would
otherwise share the CPU with the full readahead window.
"""

from __future__ import annotations

import math
from typing import Hashable, Iterable, Sized

import trio

from torrentfs.core.picker import READAHEAD

BUDGET = 8 << 20        # bytes asked by head starts, per mount at most
LULL = 0.05             # raised once no read began for this long ...
LISTED_LULL = 0.02      # ... and the listing was this long ago
DEADLINE = 0.5          # the first piece is due now + this ...
STEP = 0.05             # ... each next one this much later (firsts, then lasts)
QUICK = 0.25            # a piece in within this of being asked: a fast swarm


class HeadStart:
    """The head start of one torrent (see the module docstring). ``torrent`` is a
    ``reads.PieceSupply``; ``waiting`` holds the reads waiting (``Reads.waiting``)."""

    def __init__(self, torrent, waiting: Sized = (), budget: int = BUDGET) -> None:
        self.torrent = torrent
        self.budget = budget                       # bytes per mount at most (0: none)
        self.waiting = waiting
        self.spent = 0                             # bytes asked so far
        self._folders: set[Hashable] = set()       # folders listed already
        self._asked: dict[int, float] = {}         # piece -> when asked, until it is in
        self._quick: set[int] = set()              # pieces in within QUICK of asked
        self._pending: list[int] = []              # chosen, not raised yet (``run``)
        self._wake = trio.Event()                  # set when pieces become pending
        self.quiet_until = -math.inf               # the lull: no read began since

    def listed(self, folder: Hashable, videos: Iterable[int]) -> list[int]:
        """A folder is listed, with these video files (file indexes): their first
        pieces, then their last ones, within the budget, are raised in the next lull
        (``run``). Returns those pieces (none for a folder listed before, or a
        torrent that has them all)."""
        if folder in self._folders:
            return []
        self._folders.add(folder)
        t = self.torrent
        if getattr(t, "seed_only", False) or t.have.complete:
            return []
        g = t.geometry
        firsts: list[int] = []
        lasts: list[int] = []
        for f in videos:
            length = g.file_lengths[f]
            if length:
                firsts += g.file_pieces(f, 0, 1)
                lasts += g.file_pieces(f, length - 1, 1)
        chosen = []
        for i in dict.fromkeys(firsts + lasts):
            if i in t.have or i in self._asked:
                continue
            size = g.piece_size(i)
            if self.spent + size > self.budget:
                break
            self.spent += size
            chosen.append(i)
        if not chosen:
            return []
        now = trio.current_time()
        for i in chosen:
            self._asked[i] = -math.inf  # (never quick if it comes before ``_raise``)
        self._pending += chosen
        self.quiet_until = max(self.quiet_until, now + LISTED_LULL)
        self._wake.set()
        return chosen

    def read_began(self) -> None:
        """A read of the torrent began (``reads.Reads.read``)."""
        self.quiet_until = max(self.quiet_until, trio.current_time() + LULL)

    async def run(self) -> None:
        """Raise the pending pieces in each lull (see the module docstring). Runs
        until cancelled; sleeps while nothing is pending."""
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._pending:
                if trio.current_time() < self.quiet_until:
                    await trio.sleep_until(self.quiet_until)
                elif self.waiting:
                    await trio.sleep(LULL)  # a read waits still: after it
                else:
                    self._raise()

    def _raise(self) -> None:
        t = self.torrent
        now = trio.current_time()
        pending, self._pending = self._pending, []
        pieces = [i for i in pending if i not in t.have]
        for rank, i in enumerate(pieces):
            t.picker.raise_priority(self, (i,), READAHEAD, now + DEADLINE + STEP * rank)
            self._asked[i] = now
        if pieces:
            t.schedule_soon()

    def quick_now(self, index: int) -> bool:
        """Whether a piece that is in now would be quick: a head start asked for it
        within ``QUICK`` (then ``Torrent._verify`` hashes it at once, and the FUSE
        layer hands it to the kernel before its write: fs/pagecache)."""
        return trio.current_time() - self._asked.get(index, -math.inf) < QUICK

    def arrived(self, index: int) -> None:
        """A piece is verified (in memory before its write, or on disk)."""
        if self.quick_now(index):
            self._quick.add(index)
        self._asked.pop(index, None)

    def forget(self, index: int) -> None:
        """A piece left the disk cache."""
        self._quick.discard(index)

    def quick(self, pieces: Iterable[int]) -> bool:
        """Whether every one of ``pieces`` came by a head start within ``QUICK``."""
        pieces = list(pieces)
        return bool(pieces) and all(i in self._quick for i in pieces)
