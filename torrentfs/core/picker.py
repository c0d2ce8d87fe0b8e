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
  request, so a block gains at most one more holder per ``duplicate_after``.
* With ``ahead``, ``pick`` hands out blocks below NOW only while the peer holds
  fewer than ``ahead`` of them (readahead, prefetch); NOW blocks only count against
  ``limit``. Each peer's requests are kept in the order asked: ``backlog(peer)``
  lists those below NOW asked before its latest NOW request (what a read's blocks
  queue behind there), so that the shell can cancel them and ask again after.
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

Peers are any hashable keys. Method names say what the picker hears.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Container, Hashable, Iterable

from torrentfs.core.bitfield import Bitfield
from torrentfs.core.geometry import Geometry

NONE, NORMAL, READAHEAD, NOW = 0, 1, 2, 3
TIER_NAMES = {NONE: "none", NORMAL: "normal", READAHEAD: "readahead", NOW: "now"}

Peer = Hashable
Block = tuple[int, int, int]  # (piece index, begin, length)


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


class Picker:
    def __init__(self, geometry: Geometry, have: Bitfield, *, prefetch: bool = False,
                 duplicate_after: float = 1.0, salt: int = 0, jitter: float = 1.0) -> None:
        self.geometry = geometry
        self.have = have
        self.prefetch = prefetch
        self.duplicate_after = duplicate_after
        self._raises: dict[int, dict[Hashable, tuple[int, float]]] = {}
        self._order: list[tuple[int, int, float]] | None = None  # raised, most urgent first
        self._prio: dict[int, tuple[int, float]] = {}  # priority() of raised pieces, kept
        self._partials: dict[int, _Partial] = {}
        self._parole: set[int] = set()  # failed their hash, not verified since
        self._peers: dict[Peer, Bitfield] = {}
        # Each peer's requests (index, begin), in the order asked.
        self._outstanding: dict[Peer, dict[tuple[int, int], None]] = {}
        self.availability = [0] * geometry.num_pieces
        self._seeds = 0  # peers that have every piece
        # Per-node jitter of readahead deadlines among leechers (see _urgent_order).
        self.salt = salt
        self.jitter = jitter

    # -- priorities ----------------------------------------------------------------

    def raise_priority(self, owner: Hashable, pieces: Iterable[int], tier: int,
                       deadline: float) -> None:
        """Owner ``owner`` wants ``pieces`` at ``tier`` by ``deadline``. A second raise
        by the same owner replaces its first for those pieces."""
        for i in pieces:
            if i in self.have:
                continue
            self._raises.setdefault(i, {})[owner] = (tier, deadline)
            self._prio.pop(i, None)
        self._order = None

    def drop(self, owner: Hashable, pieces: Iterable[int] | None = None) -> None:
        """Undo ``owner``'s raises: on ``pieces``, or on all of them."""
        targets = list(self._raises) if pieces is None else pieces
        for i in targets:
            self._prio.pop(i, None)
            owners = self._raises.get(i)
            if owners and owners.pop(owner, None) is not None and not owners:
                del self._raises[i]
        self._order = None

    def priority(self, index: int) -> tuple[int, float]:
        """``(tier, deadline)`` of a piece: the most urgent raise on it."""
        base = (NORMAL if self.prefetch and index not in self.have else NONE, math.inf)
        owners = self._raises.get(index)
        if not owners:
            return base
        # --prefetch holds every piece at NORMAL, so a raise at NONE cannot lower it.
        return max(base, *owners.values(), key=lambda td: (td[0], -td[1]))

    def waiting(self) -> list[tuple[int, int, float]]:
        """``(piece, tier, deadline)`` of every raised piece, most urgent first."""
        return list(self._urgent_order())

    def _urgent_order(self) -> list[tuple[int, int, float]]:
        if self._order is None:
            # priority() of each raised piece, kept until a raise, drop or change of
            # have touches it: rarity changes re-sort this often (each have).
            prio, have = self._prio, self.have
            order = []
            for i in self._raises:
                if i in have:
                    continue
                p = prio.get(i)
                if p is None:
                    p = prio[i] = self.priority(i)
                order.append((i, p[0], p[1]))
            if len(self._peers) > self._seeds:
                # Other leechers are about (a cluster reading the same data): READAHEAD
                # goes rarest first, then by a deadline jittered per node, and ties in
                # NOW are broken per node, so nodes fetch different pieces from the
                # seeds and trade them.
                avail, salt = self.availability, self.salt

                def key(e: tuple[int, int, float]) -> tuple:
                    i, tier, deadline = e
                    mix = ((i * 2654435761 + salt) % 1000) / 1000
                    if tier == READAHEAD:
                        return (-tier, avail[i], deadline + mix * self.jitter, i)
                    # Pieces one read waits on share a deadline: each node takes them
                    # in an order of its own, so each fetches different ones first.
                    return (-tier, deadline, mix, i)
                order.sort(key=key)
            else:
                order.sort(key=lambda e: (-e[1], e[2], e[0]))
            self._order = order
        return self._order

    # -- peers ----------------------------------------------------------------------

    def add_peer(self, peer: Peer) -> None:
        self._peers[peer] = Bitfield(self.geometry.num_pieces)
        self._outstanding[peer] = {}
        self._order = None
        if not self.geometry.num_pieces:
            self._seeds += 1

    def remove_peer(self, peer: Peer) -> None:
        """Forget a peer: its requests are freed for others."""
        self.peer_choked(peer)
        for partial in self._partials.values():
            if partial.only == peer:
                partial.only = None
        bits = self._peers.pop(peer, None)
        self._outstanding.pop(peer, None)
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
            if bits.complete:
                self._seeds += 1
            if index in self._raises and self._seeds < len(self._peers):
                self._order = None  # rarity changed and it matters

    def is_seed(self, peer: Peer) -> bool:
        """True when the peer has every piece."""
        bits = self._peers.get(peer)
        return bits is not None and bits.complete

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
        bits = self._peers.get(peer)
        if bits is None or not bits.count:
            return False
        if bits.complete:
            return not self.have.complete
        return any(i not in self.have for i in bits)

    def outstanding(self, peer: Peer) -> int:
        """How many blocks the peer has been asked for and not yet delivered."""
        return len(self._outstanding.get(peer, ()))

    def urgent(self) -> bool:
        """True while some piece is at NOW (a read waits for it)."""
        order = self._urgent_order()
        return bool(order) and order[0][1] == NOW

    def backlog(self, peer: Peer) -> list[Block]:
        """The peer's requests for pieces below NOW (readahead, prefetch, or no
        longer wanted) that it was asked for before its latest request for a NOW
        piece, in the order asked: those a read's blocks queue behind there."""
        ahead: list[Block] = []
        out: list[Block] = []
        tiers: dict[int, int] = {}
        for index, begin in self._outstanding.get(peer, ()):
            tier = tiers.get(index)
            if tier is None:
                tier = tiers[index] = self.priority(index)[0]
            if tier == NOW:
                out += ahead
                ahead = []
            else:
                ahead.append((index, begin, self.geometry.block_length(index, begin)))
        return out

    def _backlog_size(self, peer: Peer) -> int:
        out = self._outstanding.get(peer)
        if not out:
            return 0
        raises = self._raises
        return sum(1 for index, _ in out
                   if index not in raises or self.priority(index)[0] != NOW)

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
        partial = self._partials.get(index)
        if partial is not None:
            b = begin // self.geometry.block_size
            holders = partial.requests[b]
            if holders.pop(peer, None) is not None and not holders and not partial.received[b]:
                partial.freed(b)
            if partial.only == peer:
                partial.only = None  # someone else may finish it

    def withdraw(self, index: int) -> list[tuple[Peer, int, int]] | None:
        """Give up a piece in progress that is no longer wanted (its tier fell to
        NONE) and is not complete: its open requests are taken back and its received
        blocks forgotten, so abandoned pieces hold no memory. Returns ``(peer, begin,
        length)`` of each request to cancel, or None if nothing was given up."""
        partial = self._partials.get(index)
        if partial is None or partial.complete or self.priority(index)[0] != NONE:
            return None
        cancels = []
        for b, holders in enumerate(partial.requests):
            begin, length = partial.blocks[b]
            cancels.extend((peer, begin, length) for peer in holders)
        self._forget_partial(index)
        return cancels

    def spare_seeds(self, index: int) -> list[tuple[Peer, int, int]]:
        """A peer without the whole torrent now has piece ``index``: take back the
        requests for its blocks that seeds have not answered yet, so the blocks are
        asked of that peer instead. Returns ``(seed, begin, length)`` to cancel."""
        partial = self._partials.get(index)
        if partial is None or not self._seeds:
            return []
        cancels = []
        for b, holders in enumerate(partial.requests):
            begin, length = partial.blocks[b]
            for peer in [p for p in holders if self._peers[p].complete]:
                cancels.append((peer, begin, length))
                self.request_dropped(peer, index, begin)
        return cancels

    # -- picking ----------------------------------------------------------------------

    def pick(self, peer: Peer, now: float, limit: int, spread: int = 1,
             ahead: int | None = None, avoid: Container[int] | None = None,
             avoid_grace: float = 0.0) -> list[Block]:
        """Up to ``limit`` new block requests for ``peer``, most urgent first. With
        ``spread`` > 1 (the number of peers that could share the work), one pick
        takes at most its share of a NOW piece's blocks, so that the blocks of a
        piece a read waits on come from several peers at once; so too of a
        READAHEAD piece while every peer is a seed. With ``ahead``, the peer's
        requests below NOW grow to ``ahead`` blocks at most. Pieces in ``avoid`` are
        not asked of this peer (a remote one: ``core/topology``) unless a read waits
        on them ``avoid_grace`` seconds past their deadline."""
        if limit <= 0 or peer not in self._peers:
            return []
        room = math.inf if ahead is None else ahead - self._backlog_size(peer)
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
        for index, tier, deadline in self._urgent_order():
            if tier == NONE or index not in bits:  # raised at NONE: never requested
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
                    break
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
        # Blocks nobody holds, from the cursor on.
        b = partial.cursor
        n = len(blocks)
        while partial.num_free and b < n and len(picked) < limit:
            if not received[b] and not requests[b]:
                requests[b][peer] = now
                partial.num_free -= 1
                begin, length = blocks[b]
                out[(index, begin)] = None
                picked.append((index, begin, length))
            b += 1
        partial.cursor = b  # every block before b is now received or requested
        if not duplicate:
            return
        # A late NOW piece: blocks others have held for duplicate_after are asked of
        # this peer too (at most one extra holder per duplicate_after).
        for b in range(n):
            if len(picked) >= limit:
                return
            holders = requests[b]
            if (received[b] or not holders or peer in holders
                    or max(holders.values()) > now - self.duplicate_after):
                continue
            holders[peer] = now
            begin, length = blocks[b]
            out[(index, begin)] = None
            picked.append((index, begin, length))

    # -- receiving --------------------------------------------------------------------

    def block_received(self, peer: Peer, index: int, begin: int, length: int) -> Received:
        """A block arrived from ``peer``. Unrequested, duplicate, or misshapen blocks
        come back with ``new=False`` and change nothing."""
        if not self.geometry.is_valid_block(index, begin, length):
            # Misshapen: our request for (index, begin), if any, is still open.
            return Received(False)
        out = self._outstanding.get(peer)
        if out is not None:
            out.pop((index, begin), None)
        partial = self._partials.get(index)
        if partial is None or index in self.have:
            return Received(False)
        b = begin // self.geometry.block_size
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

    def contributors(self, index: int) -> set[Peer]:
        """The peers that sent blocks of a piece in progress."""
        return set(self.suppliers(index).values())

    def suppliers(self, index: int) -> dict[int, Peer]:
        """``begin -> peer`` of each received block of a piece in progress."""
        partial = self._partials.get(index)
        return dict(partial.suppliers) if partial else {}

    def piece_verified(self, index: int) -> None:
        """The piece passed its hash: it is ours; nobody is asked for it again."""
        self.have.add(index)
        self._prio.pop(index, None)
        self._parole.discard(index)
        self._forget_partial(index)
        if index in self._raises:
            del self._raises[index]
            self._order = None

    def piece_lost(self, index: int) -> None:
        """A piece we had is gone (evicted from the disk cache, or found damaged on
        disk): it is wanted again like any missing piece."""
        self.have.discard(index)
        self._prio.pop(index, None)
        self._order = None

    def piece_failed(self, index: int) -> None:
        """The piece failed its hash: all its blocks are missing again, and it goes on
        parole (one peer at a time) until verified."""
        self._forget_partial(index)
        self._parole.add(index)

    def _forget_partial(self, index: int) -> None:
        partial = self._partials.pop(index, None)
        if partial is None:
            return
        for b, holders in enumerate(partial.requests):
            for peer in holders:
                self._outstanding.get(peer, {}).pop((index, partial.blocks[b][0]), None)
