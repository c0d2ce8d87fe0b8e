"""An iterative DHT lookup (BEP 5, Kademlia): which node to ask next, and when to stop.

Pure: no sockets, no clock; the shell sends the queries this decides on, feeds back
what comes in, and passes ``now``.

Contract
--------
* A lookup for ``target`` starts from seed nodes (from the routing table, or
  bootstrap addresses whose ids are not known yet: those are asked first).
* ``next_queries(now)`` first gives up on queries older than ``timeout`` (they count
  as failed), then returns the closest not-yet-asked candidates to query, keeping at
  most ``alpha`` in flight. Only candidates among the ``k`` closest still in the
  running are asked (plus seeds of unknown id).
* ``responded(addr, id, nodes, values, token)`` records an answer: its nodes become
  candidates (our own id, duplicates and nodes at an address already known left out;
  at most ``max_candidates`` kept, the farthest not-asked ones dropped), its values
  are peers, its token is kept for ``announce_peer``. ``failed(addr)`` records an
  error or a timeout. Answers from addresses not asked are ignored.
* ``done`` once the ``k`` closest candidates that did not fail have all answered
  (or no candidate is left to ask and none is in flight).
* ``announce_targets()`` gives the ``k`` closest nodes that answered with a token.
"""

from __future__ import annotations

from dataclasses import dataclass

from torrentfs.core.address import Addr
from torrentfs.core.dht.krpc import NodeInfo

ALPHA = 3
K = 8
QUERY_TIMEOUT = 4.0
MAX_CANDIDATES = 128

NEW, ASKED, ANSWERED, FAILED = "new", "asked", "answered", "failed"


@dataclass
class Candidate:
    addr: Addr
    id: bytes | None
    state: str = NEW
    sent_at: float = 0.0
    token: bytes | None = None


class Lookup:
    def __init__(self, target: bytes, seeds: list[NodeInfo] | list[tuple[bytes | None, Addr]],
                 *, own_id: bytes | None = None, k: int = K, alpha: int = ALPHA,
                 timeout: float = QUERY_TIMEOUT, max_candidates: int = MAX_CANDIDATES) -> None:
        self.target = target
        self._t = int.from_bytes(target, "big")
        self.own_id = own_id
        self.k, self.alpha, self.timeout = k, alpha, timeout
        self.max_candidates = max_candidates
        self.candidates: dict[Addr, Candidate] = {}
        self.peers: list[Addr] = []
        self._peer_set: set[Addr] = set()
        self.queries_sent = 0
        for seed in seeds:
            node_id, addr = (seed.id, seed.addr) if isinstance(seed, NodeInfo) else seed
            self._add(node_id, addr)

    def _distance(self, c: Candidate) -> int:
        return -1 if c.id is None else int.from_bytes(c.id, "big") ^ self._t

    def _add(self, node_id: bytes | None, addr: Addr) -> None:
        if addr in self.candidates or (node_id is not None and node_id == self.own_id):
            return
        self.candidates[addr] = Candidate(addr, node_id)
        if len(self.candidates) > self.max_candidates:
            new = [c for c in self.candidates.values() if c.state == NEW]
            if new:
                del self.candidates[max(new, key=self._distance).addr]

    def _ranked(self) -> list[Candidate]:
        """Candidates still in the running (not failed), nearest first."""
        live = [c for c in self.candidates.values() if c.state != FAILED]
        live.sort(key=self._distance)
        return live

    def in_flight(self) -> int:
        return sum(1 for c in self.candidates.values() if c.state == ASKED)

    def next_queries(self, now: float) -> list[Candidate]:
        """Time out old queries, then the candidates to ask now (marked asked)."""
        for c in self.candidates.values():
            if c.state == ASKED and now - c.sent_at >= self.timeout:
                c.state = FAILED
        slots = self.alpha - self.in_flight()
        out = []
        if slots <= 0:
            return out
        ranked = self._ranked()
        nearest = [c for c in ranked if c.id is not None][:self.k]
        for c in ranked:
            if len(out) >= slots:
                break
            if c.state == NEW and (c.id is None or c in nearest):
                c.state, c.sent_at = ASKED, now
                out.append(c)
        self.queries_sent += len(out)
        return out

    def next_timeout(self) -> float | None:
        """When the oldest query in flight times out (None if none is in flight)."""
        times = [c.sent_at + self.timeout for c in self.candidates.values()
                 if c.state == ASKED]
        return min(times) if times else None

    def responded(self, addr: Addr, node_id: bytes, nodes: tuple[NodeInfo, ...] = (),
                  values: tuple[Addr, ...] = (), token: bytes | None = None) -> list[Addr]:
        """An answer from ``addr``; returns the peers in it not seen before."""
        c = self.candidates.get(addr)
        if c is None or c.state not in (ASKED, FAILED):
            return []
        if node_id == self.own_id:
            c.state = FAILED
            return []
        c.state, c.id, c.token = ANSWERED, node_id, token
        for n in nodes:
            self._add(n.id, n.addr)
        fresh = []
        for v in values:
            if v not in self._peer_set and len(self._peer_set) < 10 * self.max_candidates:
                self._peer_set.add(v)
                self.peers.append(v)
                fresh.append(v)
        return fresh

    def failed(self, addr: Addr) -> None:
        c = self.candidates.get(addr)
        if c is not None and c.state == ASKED:
            c.state = FAILED

    @property
    def done(self) -> bool:
        ranked = self._ranked()
        if not any(c.state in (NEW, ASKED) for c in ranked):
            return True
        if any(c.id is None and c.state != ANSWERED for c in ranked):
            return False
        return all(c.state == ANSWERED for c in ranked[:self.k])

    def announce_targets(self) -> list[Candidate]:
        """The ``k`` closest answered nodes that gave a token."""
        return [c for c in self._ranked() if c.state == ANSWERED and c.token][:self.k]

    def closest_answered(self) -> list[NodeInfo]:
        return [NodeInfo(c.id, c.addr) for c in self._ranked()
                if c.state == ANSWERED and c.id is not None][:self.k]
