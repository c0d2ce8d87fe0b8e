"""Which blocks to ask which peer for. Pure: no I/O, no clock (``now`` is passed in).

Contract
--------
* Pieces are wanted at a priority tier: NOW (a read is waiting), READAHEAD (a read
  will soon wait), NORMAL (``--prefetch``: the whole torrent, rarest first). A piece at
  NONE is never requested. Each tier above NONE carries a deadline; within a tier,
  earlier deadlines go first.
* A priority is raised by an *owner* (a read, a file handle) and only that owner's
  ``drop`` undoes it; a piece's priority is the highest any owner holds.
* ``pick(peer, now, limit)`` hands out up to ``limit`` blocks that the peer has and
  that nobody is fetching, most urgent first. A block of a NOW piece that is late
  against its deadline and that another peer has held for ``duplicate_after``
  seconds is handed out again (the faster answer wins; the shell cancels the other
  requests). The clock restarts with each extra
  request, so a block gains at most one more holder per ``duplicate_after``, and
  with each block a holder delivers (``block_received(..., now=)``): a holder that
  keeps delivering is working through what was asked before (a full pipeline on a
  slow or shared link), not stalled, and a duplicate would only queue on the same
  link. Only a holder silent for ``duplicate_after`` since it was asked is doubled.
* With ``ahead``, ``pick`` hands out blocks below NOW only while the peer holds
  fewer than ``ahead`` of them (readahead, prefetch); NOW blocks only count against
  ``limit``. Each peer's requests are kept in the order asked: ``backlog(peer)``
  lists those below NOW asked before its latest NOW request (what a read's blocks
  queue behind there), so that the shell can cancel them and ask again after.
* A pick that finds no free block the peer could take (every block of every wanted
  piece it has is received or requested, none of them late) is remembered: the
  peer's next ``pick`` returns [] at once until something changes that could free
  a block for it (a raise or drop, a request dropped, a piece failed, lost or
  withdrawn, a peer added or removed, a peer becoming a seed). A HAVE of a wanted
  piece frees blocks for its sender alone, and only of that piece: the sender's
  next picks look at the pieces it announced since, not at every wanted one. A
  sequential read ahead of its reader asks after every block and finds nothing
  most times.
* A block is in one of three states: missing, requested (by one or more peers, each
  with the time of its request), received. ``block_received`` reports whether the block
  was new and whether its piece is now complete; a complete piece is neither picked
  nor received again until ``piece_failed`` resets it, or ``piece_verified`` retires it.
* Every block request given out is eventually matched by ``block_received``,
  ``request_dropped`` or ``remove_peer``; otherwise the block stays requested and is
  duplicated only for NOW pieces.
* A piece that failed its hash is on parole until verified: its blocks go to one peer
  only (the first to pick it, until that peer drops a request of it), so the next
  failure has a single supplier to blame, and a pass proves whose old blocks were bad.

Peers are any hashable keys. Method names say what the picker hears. The priorities
(raises, drops, blocks wanted first) and the kept order of urgency are
``core/priorities.Priorities``, a mixin of Picker.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from itertools import compress
from operator import itemgetter
from typing import Container, Hashable, Iterable

from torrentfs.core.bitfield import Bitfield
from torrentfs.core.geometry import Geometry
from torrentfs.core.priorities import NONE, NORMAL, NOW, READAHEAD, TIER_NAMES, Priorities
from torrentfs.core.stealing import STEAL_AFTER, steal
from torrentfs.core.takeback import TakeBack

__all__ = ["NONE", "NORMAL", "NOW", "READAHEAD", "TIER_NAMES", "Block", "Peer", "Picker",
           "Received"]

Peer = Hashable
Block = tuple[int, int, int]  # (piece index, begin, length)
_index = itemgetter(0)  # of an urgent-order entry (index, tier, deadline)


class _Partial:
    """A piece some of whose blocks are requested or received.

    ``num_free`` counts the blocks that are neither received nor requested from
    anybody, so a fully requested piece is skipped without a scan; ``cursor`` is at
    or before the first such block."""

    __slots__ = ("blocks", "requests", "received", "num_received", "suppliers",
                 "num_free", "cursor", "parole", "only")

    def __init__(self, blocks: list[tuple[int, int]], parole: bool = False) -> None:
        self.blocks = blocks
        self.requests: list[dict[Peer, float]] = [{} for _ in blocks]
        self.received = bytearray(len(blocks))
        self.num_received = 0
        self.suppliers: dict[int, Peer] = {}  # begin -> the peer that sent that block
        self.num_free = len(blocks)
        self.cursor = 0
        self.parole = parole  # failed before: one peer at a time fetches it
        self.only: Peer | None = None

    @property
    def complete(self) -> bool:
        return self.num_received == len(self.blocks)

    def freed(self, b: int) -> None:
        """Block ``b`` lost its last holder without arriving."""
        self.num_free += 1
        if b < self.cursor:
            self.cursor = b


@dataclass
class Received:
    """What ``block_received`` found: ``new`` (not a duplicate or unrequested block),
    ``piece_complete`` (all blocks of its piece are in) and ``cancel``: the other peers
    that were also asked for this block and should be sent a cancel."""

    new: bool
    piece_complete: bool = False
    cancel: list[Peer] = field(default_factory=list)


class Picker(Priorities, TakeBack):
    def __init__(self, geometry: Geometry, have: Bitfield, *, prefetch: bool = False,
                 duplicate_after: float = 1.0, salt: int = 0, jitter: float = 1.0,
                 steal_after: float = STEAL_AFTER) -> None:
        super().__init__()  # raises, blocks wanted first, the kept order: core/priorities
        self.geometry = geometry
        self.have = have
        self.prefetch = prefetch
        self.duplicate_after = duplicate_after
        self.steal_after = steal_after  # core/stealing (0: never)
        # Bumped by whatever could free a block for some peer; a peer whose last pick
        # found nothing free at generation g picks nothing while it is still g.
        self._generation = 0
        self._dry: dict[Peer, int] = {}
        # Pieces a dry peer announced (HAVE) since: all its next pick need look at.
        self._fresh: dict[Peer, set[int]] = {}
        self._heard: dict[Peer, float] = {}  # when each peer last delivered a block
        self._partials: dict[int, _Partial] = {}
        self._parole: set[int] = set()  # failed their hash, not verified since
        self._peers: dict[Peer, Bitfield] = {}
        self._lacking: dict[Peer, int] = {}  # pieces each peer has that we lack
        # Each peer's requests (index, begin), in the order asked.
        self._outstanding: dict[Peer, dict[tuple[int, int], None]] = {}
        self.availability = [0] * geometry.num_pieces
        self._seeds = 0  # peers that have every piece
        # Per-node jitter of readahead deadlines among leechers (see Priorities._sort_key).
        self.salt = salt
        self.jitter = jitter

    # -- peers ----------------------------------------------------------------------

    def add_peer(self, peer: Peer) -> None:
        self._peers[peer] = Bitfield(self.geometry.num_pieces)
        self._lacking[peer] = 0
        self._outstanding[peer] = {}
        self._order = None
        self._generation += 1
        if not self.geometry.num_pieces:
            self._seeds += 1

    def remove_peer(self, peer: Peer) -> None:
        """Forget a peer: its requests are freed for others."""
        self.peer_choked(peer)
        for partial in self._partials.values():
            if partial.only == peer:
                partial.only = None
        bits = self._peers.pop(peer, None)
        self._lacking.pop(peer, None)
        self._outstanding.pop(peer, None)
        self._dry.pop(peer, None)
        self._fresh.pop(peer, None)
        self._heard.pop(peer, None)
        self._generation += 1
        if bits is not None:
            if bits.complete:
                self._seeds -= 1
            for i in bits:
                self.availability[i] -= 1
        self._order = None

    def got_have(self, peer: Peer, index: int) -> None:
        bits = self._peers[peer]
        if bits.add(index):
            self.availability[index] += 1
            if index not in self.have:
                self._lacking[peer] += 1
            if bits.complete:
                self._seeds += 1
                self._generation += 1  # seeds spare it no longer: they may pick more
            elif (index not in self.have and self.priority(index)[0] != NONE
                    and self._dry.get(peer) == self._generation):
                # Only this peer can take blocks it could not before, and only of a
                # wanted piece: its next pick walks that piece alone (a HAVE a second
                # from each of a cluster's peers must not send every peer, nor its
                # sender, through the whole readahead).
                self._fresh.setdefault(peer, set()).add(index)
            if index in self._raises and self._seeds < len(self._peers):
                # Rarity changed and it matters: move that piece alone if the order
                # was sorted by rarity already, else sort again.
                if self._order is not None and self._leech_order:
                    self._resort.add(index)
                else:
                    self._order = None

    def is_seed(self, peer: Peer) -> bool:
        """True when the peer has every piece."""
        bits = self._peers.get(peer)
        return bits is not None and bits.complete

    def pieces_of(self, peer: Peer) -> int:
        """How many pieces the peer has (0 for one not registered)."""
        bits = self._peers.get(peer)
        return 0 if bits is None else bits.count

    def got_bitfield(self, peer: Peer, bits: Bitfield) -> None:
        for i in bits:
            self.got_have(peer, i)

    def got_have_all(self, peer: Peer) -> None:
        for i in range(self.geometry.num_pieces):
            self.got_have(peer, i)

    def peer_has(self, peer: Peer, index: int) -> bool:
        return index in self._peers[peer]

    def is_interesting(self, peer: Peer) -> bool:
        """True when the peer has a piece we lack."""
        return self._lacking.get(peer, 0) > 0

    def dry(self, peer: Peer) -> bool:
        """True while the peer's last pick found no free block and nothing changed
        since: its next ``pick`` would return []."""
        return self._dry.get(peer) == self._generation and not self._fresh.get(peer)

    def outstanding(self, peer: Peer) -> int:
        """How many blocks the peer has been asked for and not yet delivered."""
        return len(self._outstanding.get(peer, ()))

    def backlog(self, peer: Peer) -> list[Block]:
        """The peer's requests for pieces below NOW (readahead, prefetch, or no
        longer wanted) that it was asked for before its latest request for a NOW
        piece, in the order asked: those a read's blocks queue behind there. Not
        those due no later than the NOW piece after them (a read's other pieces,
        raised at its deadline: the read waits for them all the same, so moving
        them behind its NOW piece would gain it nothing)."""
        ahead: list[tuple[tuple[int, int], float]] = []
        out: list[tuple[int, int]] = []
        tops: dict[int, tuple[int, float]] = {}
        for key in self._outstanding.get(peer, ()):
            index = key[0]
            top = tops.get(index)
            if top is None:
                top = tops[index] = self.priority(index)
            if top[0] == NOW:
                due = top[1]
                out += [k for k, deadline in ahead if deadline > due]
                ahead = []
            else:
                ahead.append((key, top[1]))
        length = self.geometry.block_length  # of those returned only (most are not)
        return [(index, begin, length(index, begin)) for index, begin in out]

    def below_now(self, peer: Peer) -> int:
        """How many of the peer's requests are for pieces below NOW."""
        return self._backlog_size(peer)

    def _backlog_size(self, peer: Peer) -> int:
        """How many of the peer's requests are for pieces below NOW."""
        out = self._outstanding.get(peer)
        if not out:
            return 0
        if not self.urgent():  # no read waits (the common case): all of them
            return len(out)
        # Counted per piece (a peer's requests span a few pieces): one priority
        # look-up per piece, not per request.
        raises = self._raises
        per_piece = Counter(map(itemgetter(0), out))
        return len(out) - sum(n for index, n in per_piece.items()
                              if index in raises and self.priority(index)[0] == NOW)

    def peer_choked(self, peer: Peer) -> None:
        """The peer dropped all our requests (a choke without the fast extension)."""
        for index, begin in list(self._outstanding.get(peer, ())):
            self.request_dropped(peer, index, begin)

    def request_dropped(self, peer: Peer, index: int, begin: int) -> None:
        """A request will not be answered (rejected, cancelled, timed out)."""
        out = self._outstanding.get(peer)
        # Only a request we made is dropped: a peer's reject may name any block.
        if out is None or (index, begin) not in out:
            return
        del out[(index, begin)]
        self._generation += 1
        partial = self._partials.get(index)
        if partial is not None:
            b = begin // self.geometry.block_size
            holders = partial.requests[b]
            if holders.pop(peer, None) is not None and not holders and not partial.received[b]:
                partial.freed(b)
            if partial.only == peer:
                partial.only = None  # someone else may finish it

    # -- picking ----------------------------------------------------------------------

    def pick(self, peer: Peer, now: float, limit: int, spread: int = 1,
             ahead: int | None = None, avoid: Container[int] | None = None,
             avoid_grace: float = 0.0, below: int | None = None) -> list[Block]:
        """Up to ``limit`` new block requests for ``peer``, most urgent first. With
        ``spread`` > 1 (the number of peers that could share the work), one pick
        takes at most its share of a NOW piece's blocks, so that the blocks of a
        piece a read waits on come from several peers at once; so too of a
        READAHEAD piece while every peer is a seed. With ``ahead``, the peer's
        requests below NOW grow to ``ahead`` blocks at most. Pieces in ``avoid`` are
        not asked of this peer (a remote one: ``core/topology``) unless a read waits
        on them ``avoid_grace`` seconds past their deadline. ``below`` is the
        peer's ``below_now`` if the caller has just counted it."""
        if limit <= 0 or peer not in self._peers:
            return []
        # A dry peer walks only the pieces it announced since (``_fresh``).
        fresh = self._fresh.pop(peer, None)
        if not avoid and self._dry.get(peer) == self._generation:
            if not fresh:
                return []
            if self.prefetch:  # NORMAL candidates are not kept in order: walk all
                del self._dry[peer]
                fresh = None
            else:
                self._fresh[peer] = fresh  # until a walk of them finds nothing
        else:
            if fresh:  # announced while dry, walked in full now (``avoid``): the
                self._dry.pop(peer, None)  # dry mark no longer says where to look
            fresh = None
        room = (math.inf if ahead is None
                else ahead - (self._backlog_size(peer) if below is None else below))
        bits = self._peers[peer]
        picked: list[Block] = []
        # Spare the seeds: a piece that is not urgent and that a peer without the
        # whole torrent also has is left to that peer.
        spare = bits.complete and self._seeds < len(self._peers)
        # Among seeds only, readahead is split like NOW (pieces then complete one
        # after another, each from every peer: what a reader takes next comes
        # first); with leechers about, whole pieces are traded sooner.
        only_seeds = self._seeds == len(self._peers)
        avail, seeds = self.availability, self._seeds
        below = None  # len(picked) when the first piece below NOW came up
        dry = True  # no block free for this peer so far (see the contract)
        has, partials = bits.flag_array(), self._partials
        order = self._urgent_order()
        if fresh is not None:
            keys, key_of = self._keys, self._key_of
            order = [order[bisect_left(keys, key_of[i])]
                     for i in sorted((i for i in fresh if i in key_of), key=key_of.__getitem__)]
            had = compress(order, map(has.__getitem__, map(_index, order)))
        else:
            had = self._had_by(has)
        # Only the pieces the peer has: the others are passed over in C, not one by
        # one here (a trickle cluster's node walked some 500 raised pieces per pick,
        # of which the peer had 3 to 23, to pick less than one block on average).
        for index, tier, deadline in had:
            if tier == NONE:  # raised at NONE: never requested
                continue
            # Most raised pieces are being fetched already, every block asked:
            # nothing to pick there unless late (skipped here, not in _pick_from:
            # this loop runs over every raised piece at each pick).
            partial = partials.get(index)
            if (partial is not None and not partial.num_free and not partial.parole
                    and (tier != NOW or now < deadline)):
                dry = dry and tier != NOW  # once late, a NOW piece's blocks are asked again
                continue
            if spare and tier != NOW and avail[index] > seeds:
                continue
            if (avoid is not None and index in avoid
                    and not (tier == NOW and now >= deadline + avoid_grace)):
                continue
            if tier != NOW and below is None:  # NOW comes first: the rest is backlog
                below = len(picked)
                limit = min(limit, below + max(0, room))
                if len(picked) >= limit:
                    return picked
            late = tier == NOW and now >= deadline
            cap = limit
            if (spread > 1 and index not in self._parole
                    and (tier == NOW or (tier == READAHEAD and only_seeds))):
                sharers = max(1, min(spread, self.availability[index]))
                cap = min(limit, len(picked) - (-self.geometry.num_blocks(index) // sharers))
            self._pick_from(peer, index, now, cap, picked, duplicate=late)
            if len(picked) >= limit:
                return picked
            # A NOW piece's blocks may be asked again once late: never dry.
            dry = dry and tier != NOW and not partials[index].num_free
        if self.steal_after and len(picked) < limit and not bits.complete and avoid is None:
            dry = not steal(self, peer, order, has, now, limit, picked,
                            self.steal_after, avoid) and dry
            if len(picked) >= limit:
                return picked
        if self.prefetch:
            if below is None:
                limit = min(limit, len(picked) + max(0, room))
                if len(picked) >= limit:
                    return picked
            for index in self._normal_candidates(bits):
                if avoid is not None and index in avoid:
                    continue
                self._pick_from(peer, index, now, limit, picked, duplicate=False)
                if len(picked) >= limit:
                    return picked
                dry = dry and not partials[index].num_free
        if dry and not avoid:  # what ``avoid`` holds back changes with time and peers
            self._dry[peer] = self._generation
            self._fresh.pop(peer, None)
        return picked

    def _normal_candidates(self, bits: Bitfield) -> Iterable[int]:
        # Partial pieces first (finish what is started), then rarest first.
        partial = [i for i in self._partials if i in bits and i not in self._raises]
        yield from sorted(partial)
        rest = [i for i in range(self.geometry.num_pieces)
                if i in bits and i not in self.have and i not in self._partials
                and i not in self._raises]
        rest.sort(key=lambda i: (self.availability[i], i))
        yield from rest

    def _pick_from(self, peer: Peer, index: int, now: float, limit: int,
                   picked: list[Block], duplicate: bool) -> None:
        partial = self._partials.get(index)
        if partial is None:
            partial = self._partials[index] = _Partial(self.geometry.blocks(index),
                                                       index in self._parole)
        if partial.parole:
            if partial.only is None:
                partial.only = peer
            elif partial.only != peer:
                return
        out = self._outstanding[peer]
        requests, received, blocks = partial.requests, partial.received, partial.blocks
        n = len(blocks)
        first = self._first.get(index)
        if first:  # blocks a read needs, before the rest
            for wanted, _ in first.values():
                for b in wanted if partial.num_free else ():
                    if len(picked) >= limit:
                        break
                    if b < n and not received[b] and not requests[b]:
                        requests[b][peer] = now
                        partial.num_free -= 1
                        begin, length = blocks[b]
                        out[(index, begin)] = None
                        picked.append((index, begin, length))
            if all(only for _, only in first.values()):
                if duplicate:
                    wanted = sorted({b for w, _ in first.values() for b in w})
                    self._duplicate(peer, index, now, limit, picked, wanted)
                return
        # Blocks nobody holds, from the cursor on.
        b = partial.cursor
        while partial.num_free and b < n and len(picked) < limit:
            if not received[b] and not requests[b]:
                requests[b][peer] = now
                partial.num_free -= 1
                begin, length = blocks[b]
                out[(index, begin)] = None
                picked.append((index, begin, length))
            b += 1
        partial.cursor = b  # every block before b is now received or requested
        if duplicate:
            self._duplicate(peer, index, now, limit, picked, range(n))

    def _duplicate(self, peer: Peer, index: int, now: float, limit: int,
                   picked: list[Block], among) -> None:
        """A late NOW piece: blocks (``among``) others have held for duplicate_after
        are asked of this peer too (at most one extra holder per duplicate_after)."""
        partial = self._partials[index]
        out = self._outstanding[peer]
        requests, received, blocks = partial.requests, partial.received, partial.blocks
        heard, since = self._heard, now - self.duplicate_after
        for b in among:
            if b >= len(blocks):
                continue
            if len(picked) >= limit:
                return
            holders = requests[b]
            if (received[b] or not holders or peer in holders
                    or any(max(t, heard.get(h, t)) > since for h, t in holders.items())):
                continue
            holders[peer] = now
            begin, length = blocks[b]
            out[(index, begin)] = None
            picked.append((index, begin, length))

    # -- receiving --------------------------------------------------------------------

    def block_received(self, peer: Peer, index: int, begin: int, length: int,
                       now: float | None = None) -> Received:
        """A block arrived from ``peer`` (at ``now``: the peer is not stalled, see
        ``duplicate_after``). Unrequested, duplicate, or misshapen blocks come back
        with ``new=False`` and change nothing else."""
        partial = self._partials.get(index)
        b = begin // self.geometry.block_size
        # A piece in progress lists its blocks: (begin, length) must be one of them
        # (what is_valid_block checks, without its arithmetic; once a block).
        blocks = partial.blocks if partial is not None else ()
        if (not (0 <= b < len(blocks) and blocks[b] == (begin, length))
                and not self.geometry.is_valid_block(index, begin, length)):
            # Misshapen: our request for (index, begin), if any, is still open.
            return Received(False)
        if now is not None and peer in self._peers:
            self._heard[peer] = now
        out = self._outstanding.get(peer)
        if out is not None:
            out.pop((index, begin), None)
        if partial is None or index in self.have:
            return Received(False)
        holders = partial.requests[b]
        was_requested = holders.pop(peer, None) is not None
        if partial.received[b] or not was_requested:
            return Received(False)
        partial.received[b] = 1
        partial.num_received += 1
        partial.suppliers[begin] = peer
        others = list(holders)
        for other in others:
            self._outstanding.get(other, {}).pop((index, begin), None)
        holders.clear()
        return Received(True, partial.complete, others)

    def block_failed(self, index: int, begin: int) -> Peer | None:
        """A received block of a piece in progress proved bad on its own (BEP 52):
        it is missing again. Returns the peer that sent it."""
        partial = self._partials.get(index)
        if partial is None:
            return None
        b = begin // self.geometry.block_size
        if not 0 <= b < len(partial.blocks) or not partial.received[b]:
            return None
        partial.received[b] = 0
        partial.num_received -= 1
        partial.freed(b)
        self._generation += 1  # a block free again
        return partial.suppliers.pop(begin, None)

    def contributors(self, index: int) -> set[Peer]:
        """The peers that sent blocks of a piece in progress."""
        return set(self.suppliers(index).values())

    def suppliers(self, index: int) -> dict[int, Peer]:
        """``begin -> peer`` of each received block of a piece in progress."""
        partial = self._partials.get(index)
        return dict(partial.suppliers) if partial else {}

    def piece_verified(self, index: int) -> list[Peer]:
        """The piece passed its hash: it is ours; nobody is asked for it again.
        Returns the peers that had it and now have no piece we lack (the shell
        tells them it is not interested if that lasts: their uploads go to those who
        need them)."""
        dull = []
        if self.have.add(index):
            lacking = self._lacking
            for peer, bits in self._peers.items():
                if index in bits:
                    lacking[peer] -= 1
                    if not lacking[peer]:
                        dull.append(peer)
        self._parole.discard(index)
        self._first.pop(index, None)
        self._forget_partial(index, freed=False)
        if index in self._raises:
            del self._raises[index]
            self._ordered.pop(index, None)
            self._unorder(index)
            self._top.pop(index, None)
        return dull

    def piece_lost(self, index: int) -> None:
        """A piece we had is gone (evicted from the disk cache, or found damaged on
        disk): it is wanted again like any missing piece."""
        if self.have.discard(index):
            for peer, bits in self._peers.items():
                if index in bits:
                    self._lacking[peer] += 1
        self._order = None
        self._generation += 1

    def piece_failed(self, index: int) -> None:
        """The piece failed its hash: all its blocks are missing again, and it goes on
        parole (one peer at a time) until verified."""
        self._forget_partial(index)
        self._parole.add(index)

    def _forget_partial(self, index: int, freed: bool = True) -> None:
        """Drop a piece in progress; ``freed`` unless it is complete and verified
        (then no block of it comes free for anybody: nobody's empty pick changes)."""
        partial = self._partials.pop(index, None)
        if partial is None:
            return
        if freed:
            self._generation += 1
        for b, holders in enumerate(partial.requests):
            for peer in holders:
                self._outstanding.get(peer, {}).pop((index, partial.blocks[b][0]), None)
