"""How urgently each piece is wanted, and the raised pieces in order of urgency.

A mixin of ``core/picker.Picker`` (one object, so the per-block paths read this state
as plain attributes, with no layer in between). Pure: no I/O, no clock.

* A piece is wanted at a priority tier: NOW (a read is waiting), READAHEAD (a read will
  soon wait), NORMAL (``--prefetch``: the whole torrent), NONE (never requested), each
  tier above NONE with a deadline. Owners (a read, a file handle) raise pieces
  (``raise_priority``) and only an owner's ``drop`` undoes its raises; a piece's
  ``priority`` is the most urgent raise on it. ``want_first`` marks blocks of a piece
  that a read needs before the piece's others.
* ``_urgent_order`` is the raised pieces not had yet, most urgent first, kept between
  calls (``pick`` walks it on every call): a raise or drop, or a change of one piece's
  rarity, moves the entries of the pieces it touched alone (``_move_entries``; a
  reader raises the next piece of its read as each comes in, and a trickle
  cluster's node sorted its ~500 raised pieces for each), a verified piece leaves it
  (``_unorder``).

The host (Picker) provides ``have``, ``prefetch``, ``availability``, ``salt``,
``jitter``, ``_peers`` and ``_seeds``, and a ``_generation`` counter that whatever
could free a block bumps (a raise, a drop or a ``want_first`` here). It sets
``_order`` to None when the order must be sorted again (a peer added or removed, a
piece lost) and adds to ``_resort`` a raised piece whose rarity changed.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from itertools import compress
from operator import itemgetter
from typing import Hashable, Iterable

from torrentfs.core.bitfield import Bitfield

NONE, NORMAL, READAHEAD, NOW = 0, 1, 2, 3
RESORT_MAX = 32  # more pieces than this changed since the last sort: sort all again
SPLIT_LEECHERS = 4  # other leechers about from which a read raises only its first piece
                    # to NOW (``raise_read``); with fewer, the real 4-node cluster test
                    # (nodes twice as fast as the origin) sent the origin 1.8-2.0 copies
TIER_NAMES = {NONE: "none", NORMAL: "normal", READAHEAD: "readahead", NOW: "now"}


def _urgency(td: tuple[int, float]) -> tuple[int, float]:
    """Sort key of a (tier, deadline): a higher tier, then an earlier deadline."""
    return td[0], -td[1]


class Priorities:
    """Owners' raises, the blocks reads want first, and the kept urgency order."""

    # Provided by the host (see the module docstring).
    have: Bitfield
    prefetch: bool
    availability: list[int]
    salt: int
    jitter: float
    _peers: dict[Hashable, Bitfield]
    _seeds: int
    _generation: int

    def __init__(self) -> None:
        self._raises: dict[int, dict[Hashable, tuple[int, float]]] = {}
        # Pieces raised by an owner that wants them in reading order among leechers
        # too (a video's window: ``raise_priority(..., ordered=True)``): piece -> owners.
        self._ordered: dict[int, set[Hashable]] = {}
        # Blocks of a piece to hand out before its others (or instead of them, with
        # ``only``): piece -> owner -> (blocks, only).
        self._first: dict[int, dict[Hashable, tuple[range, bool]]] = {}
        # The most urgent raise of each piece asked about since the raises last
        # changed (``priority`` is called per block request: it must be cheap).
        self._top: dict[int, tuple[int, float]] = {}
        self._order: list[tuple[int, int, float]] | None = None  # raised, most urgent first
        self._keys: list[tuple] = []  # the sort key of each entry of _order
        self._key_of: dict[int, tuple] = {}  # piece -> its key there
        self._leech_order = False  # _order sorted with leechers about (rarity counts)
        self._resort: set[int] = set()  # pieces of _order whose rarity changed since
        self._rekey: set[int] = set()  # pieces whose raises changed since
        self._pieces: list[int] = []  # the piece of each entry of _order
        self._indexes: itemgetter | None = None  # of _pieces, made by ``_had_by``

    def raise_priority(self, owner: Hashable, pieces: Iterable[int], tier: int,
                       deadline: float, ordered: bool = False) -> None:
        """Owner ``owner`` wants ``pieces`` at ``tier`` by ``deadline``. A second raise
        by the same owner replaces its first for those pieces. With ``ordered`` (a
        video played at its bitrate), its READAHEAD pieces keep their deadlines'
        order among leechers too: neither rarity nor the per-node jitter moves them
        (``_sort_key``), and they come before the others of their tier."""
        changed = []
        for i in pieces:
            if i in self.have:
                continue
            self._raises.setdefault(i, {})[owner] = (tier, deadline)
            self._mark(i, owner, ordered)
            changed.append(i)
        if changed:
            self._changed_raises(changed)

    def _mark(self, index: int, owner: Hashable, ordered: bool) -> None:
        """Note whether ``owner`` (which raises ``index``) wants it in reading order."""
        marks = self._ordered
        if ordered:
            marks.setdefault(index, set()).add(owner)
        elif index in marks:
            owners = marks[index]
            owners.discard(owner)
            if not owners:
                del marks[index]

    def raise_read(self, owner: Hashable, pieces: Iterable[int], deadline: float,
                   ordered: bool = False) -> None:
        """A read waits on ``pieces`` (in file order). Among seeds alone every
        missing one is raised to NOW, and so with fewer than ``SPLIT_LEECHERS``
        leechers. With more (a cluster reading the same file in step), only the
        first missing one is: the rest go to
        READAHEAD due at the same ``deadline``, where each node takes them rarest
        first, in an order of its own, so that nodes fetch different pieces and
        trade them instead of all asking the few holders of the same ones at once.
        The reader raises again as each piece comes in (the next one to NOW).
        With ``ordered`` (a video's read) those READAHEAD ones keep file order
        (``raise_priority``)."""
        missing = [i for i in pieces if i not in self.have]
        if not missing:
            return
        owned = self._raises
        rest = READAHEAD if self.leechers() >= SPLIT_LEECHERS else NOW
        for n, i in enumerate(missing):
            owned.setdefault(i, {})[owner] = (rest if n else NOW, deadline)
            self._mark(i, owner, ordered)
        self._changed_raises(missing)

    def drop(self, owner: Hashable, pieces: Iterable[int] | None = None) -> None:
        """Undo ``owner``'s raises: on ``pieces``, or on all of them."""
        targets = list(self._raises) if pieces is None else pieces
        changed = []
        for i in targets:
            owners = self._raises.get(i)
            if owners and owners.pop(owner, None) is not None:
                changed.append(i)
                if not owners:
                    del self._raises[i]
                self._mark(i, owner, False)
        first = False
        for i in list(self._first) if pieces is None else pieces:
            owners = self._first.get(i)
            if owners and owners.pop(owner, None) is not None:
                first = True  # blocks held back for a read are free again
                if not owners:
                    del self._first[i]
        if changed:  # a read's owner often raised nothing: keep the order then
            self._changed_raises(changed)
        elif first:
            self._generation += 1

    def _changed_raises(self, pieces: list[int]) -> None:
        """The raises on ``pieces`` changed: their priority is asked again, and their
        entries of the kept order are moved (or added, or taken out) at its next
        use; a change of more than a few sorts it again. Whatever could free a
        block bumps ``_generation``."""
        self._generation += 1
        top = self._top
        for i in pieces:
            top.pop(i, None)
        if self._order is not None:
            self._rekey.update(pieces)
            if len(self._rekey) > RESORT_MAX:
                self._order = None

    def want_first(self, owner: Hashable, index: int, blocks: range,
                   only: bool = False) -> None:
        """Owner ``owner`` (a read) needs these blocks of piece ``index`` (block
        numbers) before its others: they are handed out first (BEP 52 lets a read
        use blocks verified alone); with ``only``, none of the piece's others are
        (while every owner wanting blocks of it says ``only``). Undone by
        ``drop(owner)``; a second call by the same owner replaces the first."""
        if index not in self.have:
            self._first.setdefault(index, {})[owner] = (blocks, only)
            self._generation += 1  # blocks held back or let go: picks may differ

    def priority(self, index: int) -> tuple[int, float]:
        """``(tier, deadline)`` of a piece: the most urgent raise on it."""
        base = (NORMAL if self.prefetch and index not in self.have else NONE, math.inf)
        top = self._top.get(index)
        if top is None:
            owners = self._raises.get(index)
            if not owners:
                return base
            top = self._top[index] = max(owners.values(), key=_urgency)
        # --prefetch holds every piece at NORMAL, so a raise at NONE cannot lower it.
        return top if top[0] >= base[0] else base

    def leechers(self) -> int:
        """How many of the peers lack some piece."""
        return len(self._peers) - self._seeds

    def waiting(self) -> list[tuple[int, int, float]]:
        """``(piece, tier, deadline)`` of every raised piece, most urgent first."""
        return list(self._urgent_order())

    def _sort_key(self, e: tuple[int, int, float]) -> tuple:
        i, tier, deadline = e
        if not self._leech_order:
            return (-tier, deadline, i)
        # Other leechers are about (a cluster reading the same data): READAHEAD goes
        # rarest first, then by a deadline jittered per node, and ties in NOW are
        # broken per node, so nodes fetch different pieces from the seeds and trade
        # them. A video's window (``ordered`` raises) goes first, by its deadlines: a
        # player needs its next pieces in order (shuffled over LEECHER_JITTER's 10 s,
        # a 0.5 MB/s stream of 32 KiB pieces waited 7 s in 8 s of play).
        mix = ((i * 2654435761 + self.salt) % 1000) / 1000
        if tier == READAHEAD:
            if i in self._ordered:  # a video's window: in order, before the rest
                return (-tier, -1, deadline, i)
            return (-tier, self.availability[i], deadline + mix * self.jitter, i)
        # Pieces one read waits on share a deadline: each node takes them in an
        # order of its own, so each fetches different ones first.
        return (-tier, deadline, mix, i)

    def _urgent_order(self) -> list[tuple[int, int, float]]:
        """The raised pieces not had yet, most urgent first (``_sort_key``). Kept
        between calls: a raise or drop of a few pieces, or a change of one piece's
        rarity (a peer's have, the commonest event in a swarm), moves those entries
        alone (``_move_entries``), a verified piece's leaves (keys are unique: they
        end in the index); more changes at once, a peer come or gone, sort it again."""
        if self._order is not None and self._leech_order != (self.leechers() > 0):
            self._order = None  # a peer became a seed: rarity stops counting, or starts
        if self._order is not None and (self._resort or self._rekey):
            if len(self._resort) + len(self._rekey) > RESORT_MAX:  # sort once instead
                self._order = None
            else:
                self._move_entries()
        if self._order is None:
            self._leech_order = self.leechers() > 0
            prio, have = self.priority, self.have
            entries = [(i, *prio(i)) for i in self._raises if i not in have]
            key = self._sort_key
            keyed = sorted([(key(e), e) for e in entries])  # unique keys: never compares e
            self._keys = [k for k, _ in keyed]
            self._order = [e for _, e in keyed]
            self._pieces = [e[0] for e in self._order]
            self._key_of = {e[0]: k for k, e in keyed}
            self._resort.clear()
            self._rekey.clear()
            self._indexes = None
        return self._order

    def _had_by(self, has: bytearray) -> Iterable[tuple[int, int, float]]:
        """The entries of the kept order (``_urgent_order``, up to date) whose pieces
        are flagged in ``has`` (a peer's ``Bitfield.flag_array``), in order: one C
        call takes every flag at once (a pick walks ~500 raised pieces to find the
        few a peer has; this takes a third of the time of a flag looked up per
        entry). The getter is made again after the order changed."""
        order = self._order
        if len(order) < 2:  # (an itemgetter of one index returns no tuple)
            return compress(order, map(has.__getitem__, self._pieces))
        indexes = self._indexes
        if indexes is None:  # (from a list of ints: under a microsecond for 500)
            indexes = self._indexes = itemgetter(*self._pieces)
        return compress(order, indexes(has))

    def _move_entries(self) -> None:
        """Bring the kept order up to date for the few pieces whose rarity
        (``_resort``) or raises (``_rekey``) changed: each entry is taken out and,
        if the piece is still raised and missing, put back where its new key sorts
        (what a fresh sort would give: the keys are unique)."""
        keys, order, key_of, pieces = self._keys, self._order, self._key_of, self._pieces
        raises, have, key = self._raises, self.have, self._sort_key
        for i in self._resort | self._rekey:
            old = key_of.pop(i, None)
            if old is not None:
                pos = bisect_left(keys, old)
                del keys[pos], order[pos], pieces[pos]
            if i in raises and i not in have:
                entry = (i, *self.priority(i))
                new = key(entry)
                pos = bisect_left(keys, new)
                keys.insert(pos, new)
                order.insert(pos, entry)
                pieces.insert(pos, i)
                key_of[i] = new
        self._resort.clear()
        self._rekey.clear()
        self._indexes = None

    def _unorder(self, index: int) -> None:
        """Take a piece out of the kept order (it was verified)."""
        old = self._key_of.pop(index, None)
        if self._order is None or old is None:
            return
        pos = bisect_left(self._keys, old)
        del self._keys[pos], self._order[pos], self._pieces[pos]
        self._resort.discard(index)
        self._indexes = None

    def urgent(self) -> bool:
        """True while some piece is at NOW (a read waits for it)."""
        order = self._urgent_order()
        return bool(order) and order[0][1] == NOW
