"""Room for a peer that dials us when every slot is taken: ``Replacer``.
Pure: no I/O, no clock (``now`` is passed in).

A torrent keeps at most ``max_peers`` connections. In a swarm larger than that
(a 64-node cluster at the default 50) the nodes that start first fill their slots
with each other, and a node that joins a few seconds later finds every peer full:
each refuses it, and it reads from the few other late nodes only (measured: 13 of
64 nodes finished at 1.7x the others' time, none of them having got a byte from the
origin). So a full torrent makes room for a peer that dials it by closing one of
its sessions, the one it would miss least, as libtorrent's peer turnover does in
its own time:

* never one younger than ``protect`` seconds (a newcomer is not replaced by the
  next newcomer before it could get anything), nor one that sent us a block in the
  last ``protect`` seconds (a peer serving us is kept), nor the origin's (the pieces
  nobody else has yet come from there);
* of the others, first a peer we choke (we upload nothing to it), then the one that
  sent us a block least recently (a peer that never sent one counts from when it
  connected), then the oldest connection;
* at most one every ``every`` seconds, so that a swarm of full nodes does not chase
  its tail: the peer replaced has a free slot and dials someone, who may be full too.

The peer replaced is not lost: it has room for a new peer now, and dials one (a late
joiner, whose slots are free, as likely as not).

Contract: ``victim(slots, now)`` names the slot to close (its ``key``) or None (refuse
the newcomer); ``replaced(now)`` once it was closed; ``possible(slots, now)`` says
whether ``victim`` would name one, without committing (asked before the encrypted
handshake, which costs a Diffie-Hellman, is run for a peer that would be refused).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Iterable

PROTECT = 15.0        # a session this young, or that sent a block this recently, is kept
REPLACE_EVERY = 2.0   # at most one replacement per this many seconds, per torrent


@dataclass(frozen=True)
class Slot:
    """What the choice needs of one open session."""
    key: Hashable
    connected_at: float
    last_block: float     # when it last sent us a block (when it connected if never)
    unchoked: bool        # we upload to it
    origin: bool = False  # the swarm's origin: never replaced


class Replacer:
    """Which session makes room for a newcomer (see the module docstring)."""

    def __init__(self, *, protect: float = PROTECT, every: float = REPLACE_EVERY) -> None:
        self.protect = protect
        self.every = every
        self._last: float | None = None
        self.count = 0   # replacements made (for the log and the status)

    def _candidates(self, slots: Iterable[Slot], now: float) -> list[Slot]:
        if self._last is not None and now - self._last < self.every:
            return []
        # last_block is never before connected_at: one test covers both ages
        return [s for s in slots if not s.origin and now - max(s.connected_at, s.last_block)
                >= self.protect]

    def possible(self, slots: Iterable[Slot], now: float) -> bool:
        """Whether ``victim`` would name a slot now."""
        return bool(self._candidates(slots, now))

    def victim(self, slots: Iterable[Slot], now: float) -> Hashable | None:
        """The key of the slot to close for a newcomer, or None (refuse it)."""
        found = self._candidates(slots, now)
        if not found:
            return None
        return min(found, key=lambda s: (s.unchoked, s.last_block, s.connected_at)).key

    def replaced(self, now: float) -> None:
        """The victim named was closed at ``now``."""
        self._last = now
        self.count += 1
