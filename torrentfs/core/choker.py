"""Which peers we upload to: BitTorrent's choking algorithm. Pure: no I/O, no clock
(``now`` is passed in), no randomness of its own (an ``rng`` may be passed in).

Contract
--------
Each round the shell fills in one ``PeerView`` per connected peer and calls
``rechoke(peers, now, seeding)``; it gets back a ``Decision`` and sends the chokes and
unchokes it lists. ``due(now)`` says when the next regular round is owed (every
``rechoke_every`` seconds after the last one); the shell may also rechoke out of turn
(say, when an unchoked peer loses interest, or when a peer becomes interested and
``worth_round(now)`` says so), which restarts that count.

* Only interested peers are unchoked. An unchoked peer that is not interested is
  choked.
* Regular slots: the ``regular_slots`` interested peers with the best rate. The rate is
  ``down_rate`` (what the peer gives us) while we leech and ``up_rate`` (what it takes
  from us) when ``seeding``; a round reads no other rate (not the other one, nor any
  of a peer that is not interested), so a shell may leave those unset. Ties go to the longest connected (smallest
  ``connected_at``), then to the lowest key. While leeching a snubbed peer gets no
  regular slot; a slot nobody qualifies for stays empty.
* One optimistic slot: an interested peer that is not in the regular set. It keeps the
  slot, however slow it is, until ``optimistic_every`` seconds after it was chosen;
  then the slot rotates to another candidate (the same peer again only if it is the
  only candidate). The slot is refilled at once, starting a new period, when its holder
  disconnects (is missing from ``peers``), loses interest, or earns a regular slot.
  Snubbed peers may hold it: it is how they get a chance to recover.
* Choosing the optimistic peer: with an ``rng``, at random, a peer connected within the
  last ``NEW_PEER_AGE`` seconds weighing 3 times as much as an older one (mainline's
  rule: a new peer has nothing to offer yet and needs a first piece). Without an
  ``rng``, deterministically: the candidate with the fewest pieces (``pieces``, as the
  shell last heard: a peer with nothing to give ranks last for every regular slot and
  has only this one; in a large swarm such a peer waited for it behind every other,
  docs/benchmarks.md session 16), then the one that has waited longest choked, then
  the longest connected, then the lowest key; among peers alike this makes the slot
  a round robin.
* The unchoked set after applying a decision is the regular set plus the optimistic
  peer: at most ``regular_slots + 1`` peers, all interested.
* A ``Decision`` lists only changes: ``unchoke`` holds peers choked now that should not
  be, ``choke`` holds peers unchoked now that should not be. Applying a decision and
  rechoking again at the same ``now`` with the same views gives an empty decision.

"Waited longest choked" is measured from what the choker sees: the time it chose to
choke a peer, or, for a peer it first sees already choked, the peer's
``connected_at``. Peer keys are any hashables, unique within one call; keys of one type
are ordered naturally, keys that cannot be compared are ordered by type name and repr.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Protocol

NEW_PEER_AGE = 60.0   # seconds: a peer connected more recently is "new"
NEW_PEER_WEIGHT = 3   # a new peer's chance of the optimistic slot, against 1 for others
INTEREST_ROUND_EVERY = 0.0  # seconds: with every slot taken, a peer's Interested is
                            # worth a round out of turn at most this often (``worth_round``;
                            # 0: every time, as before session 6's guard)


class Rng(Protocol):
    """What the choker needs of a random source; ``random.Random`` has it."""

    def random(self) -> float: ...


@dataclass
class PeerView:
    """What the choker knows of one peer, filled in by the shell each round."""

    key: Hashable
    interested: bool       # the peer is interested in us
    choked: bool           # we are choking it now
    down_rate: float       # bytes/s it sends us
    up_rate: float         # bytes/s we send it
    snubbed: bool = False  # it has sent us nothing for a long time although we asked
    connected_at: float = 0.0
    pieces: int = 0        # how many pieces it has (the optimistic slot: fewest first)


@dataclass(frozen=True)
class Decision:
    """The changes to make: peers to unchoke (choked now) and to choke (unchoked now)."""

    unchoke: frozenset
    choke: frozenset

    def __bool__(self) -> bool:
        return bool(self.unchoke or self.choke)


class _KeyOrder:
    """Sort wrapper: natural order of keys, falling back to (type name, repr)."""

    __slots__ = ("key",)

    def __init__(self, key: Hashable) -> None:
        self.key = key

    def __lt__(self, other: _KeyOrder) -> bool:
        try:
            return bool(self.key < other.key)  # type: ignore[operator]
        except TypeError:
            return ((type(self.key).__name__, repr(self.key))
                    < (type(other.key).__name__, repr(other.key)))


class Choker:
    def __init__(self, regular_slots: int = 4, optimistic_every: float = 30.0,
                 rechoke_every: float = 10.0, rng: Rng | None = None,
                 interest_every: float = INTEREST_ROUND_EVERY) -> None:
        if regular_slots < 0:
            raise ValueError("regular_slots must be >= 0")
        if optimistic_every <= 0 or rechoke_every <= 0:
            raise ValueError("optimistic_every and rechoke_every must be > 0")
        self.regular_slots = regular_slots
        self.optimistic_every = optimistic_every
        self.rechoke_every = rechoke_every
        self.rng = rng
        self.interest_every = interest_every
        self.optimistic: Hashable | None = None   # the current optimistic unchoke
        self.regular: frozenset = frozenset()     # the regular set of the last round
        self._optimistic_since: float | None = None
        self._last_rechoke: float | None = None
        self._choked_since: dict[Hashable, float] = {}

    def due(self, now: float) -> bool:
        """A regular rechoke round is due: none yet, or ``rechoke_every`` seconds have
        passed since the last one."""
        return self._last_rechoke is None or now - self._last_rechoke >= self.rechoke_every

    def has_room(self) -> bool:
        """Whether the last round left a slot empty (fewer unchoked than
        ``regular_slots + 1``); see ``worth_round``."""
        return len(self.regular) + (self.optimistic is not None) <= self.regular_slots

    def worth_round(self, now: float) -> bool:
        """Whether a peer that just became interested is worth a round out of turn:
        always while a slot is empty (``has_room``), else once ``interest_every``
        seconds have passed since the last round. By default (0) every time, so that
        a peer that gives us more than a slot holder does gets its slot at once, not
        at the next regular round. Session 6 rechoked out of turn only with a slot
        empty (``interest_every`` infinite); in the simulator that cost the large
        swarms most: p50 1.54 against 1.43 x ideal at 250 nodes, 1.92 against 1.71
        at 1,000 (--super-seed); at most once a second (1.0) was no better
        (1.64 at 250, 1.94 at 1,000). docs/benchmarks.md, session 7."""
        return self.has_room() or (self._last_rechoke is not None
                                   and now - self._last_rechoke >= self.interest_every)

    def rechoke(self, peers: list[PeerView], now: float, seeding: bool) -> Decision:
        """Run one round over the connected ``peers``; returns the changes to make."""
        self._last_rechoke = now
        self._track_waits(peers)

        regular = self._regular(peers, seeding)
        self._rotate_optimistic(peers, regular, now)

        unchoked = set(regular)
        if self.optimistic is not None:
            unchoked.add(self.optimistic)
        self.regular = frozenset(regular)

        unchoke = frozenset(p.key for p in peers if p.choked and p.key in unchoked)
        choke = frozenset(p.key for p in peers if not p.choked and p.key not in unchoked)
        for key in unchoke:
            self._choked_since.pop(key, None)
        for key in choke:
            self._choked_since[key] = now
        return Decision(unchoke=unchoke, choke=choke)

    # -- the parts of a round -------------------------------------------------------

    def _track_waits(self, peers: list[PeerView]) -> None:
        """Keep ``_choked_since`` in step with the views: forget gone or unchoked peers,
        date a newly seen choked peer from its connection."""
        get = self._choked_since.get
        self._choked_since = {p.key: get(p.key, p.connected_at) for p in peers if p.choked}

    def _regular(self, peers: list[PeerView], seeding: bool) -> list[Hashable]:
        """The keys of the regular set, best first."""
        if seeding:
            ranked = [(-p.up_rate, p.connected_at, p.key, n)
                      for n, p in enumerate(peers) if p.interested]
        else:
            ranked = [(-p.down_rate, p.connected_at, p.key, n)
                      for n, p in enumerate(peers) if p.interested and not p.snubbed]
        try:
            ranked.sort()   # keys are unique: the position n is never compared
        except TypeError:   # keys that cannot be compared: by type name and repr
            ranked.sort(key=lambda r: (r[0], r[1], _KeyOrder(r[2])))
        return [r[2] for r in ranked[:self.regular_slots]]

    def _rotate_optimistic(self, peers: list[PeerView], regular: list[Hashable],
                           now: float) -> None:
        """Keep, refill or rotate the optimistic slot."""
        in_regular = set(regular)
        candidates = [p for p in peers if p.interested and p.key not in in_regular]
        current = self.optimistic
        holds = current is not None and any(p.key == current for p in candidates)
        if holds and now - self._optimistic_since < self.optimistic_every:
            return                                        # keeps it until the rotation
        if holds and len(candidates) > 1:
            candidates = [p for p in candidates if p.key != current]  # rotate away
        if not candidates:
            self.optimistic, self._optimistic_since = None, None
            return
        self.optimistic = self._choose(candidates, now)
        self._optimistic_since = now

    def _choose(self, candidates: list[PeerView], now: float) -> Hashable:
        candidates = sorted(candidates, key=lambda p: (
            p.pieces, self._choked_since.get(p.key, now), p.connected_at, _KeyOrder(p.key)))
        if self.rng is None:
            return candidates[0].key
        weights = [NEW_PEER_WEIGHT if now - p.connected_at < NEW_PEER_AGE else 1
                   for p in candidates]
        x = self.rng.random() * sum(weights)
        for p, w in zip(candidates, weights):
            x -= w
            if x < 0:
                return p.key
        return candidates[-1].key
