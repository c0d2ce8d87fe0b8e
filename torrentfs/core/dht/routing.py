"""The DHT routing table (BEP 5): k-buckets over the 160-bit id space.

Pure: no sockets, no clock, no randomness; time comes in as ``now`` (seconds) and
randomness as bytes from the caller.

Contract
--------
* The table starts as one bucket covering ``[0, 2**160)``. A full bucket (``k``
  nodes) that covers our own id is split in two; any other full bucket keeps its
  nodes, and a newcomer goes to that bucket's replacement cache (at most ``k``, the
  most recently seen kept).
* A node is *good* if it answered one of our queries within ``GOOD_FOR`` seconds,
  or answered once ever and queried us within that time; *questionable* when it has
  been quiet longer; *bad* after ``BAD_AFTER`` queries in a row that it left
  unanswered. A bad node is replaced by the freshest node of the replacement cache
  at once; a full bucket with a bad node takes a newcomer in its place.
* Only a node that answered one of our queries enters a bucket (a query's source
  address can be forged). ``heard_from`` returns the nodes to ping: a stranger that
  queried us when its bucket has room, else the questionable nodes of the full
  bucket; a newcomer waits in the cache until one of them fails.
* Nodes are keyed by id and by address: a second id at a known address, or our own
  id, is not taken in. Memory is bounded: at most 160 buckets, each with ``k``
  nodes and ``k`` replacements.
* ``closest(target, n)`` gives the ``n`` nodes nearest the target by XOR distance,
  bad ones left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torrentfs.core.address import Addr
from torrentfs.core.dht.krpc import NodeInfo

ID_BITS = 160
K = 8
GOOD_FOR = 15 * 60.0       # seconds a node stays good after it was last heard from
BAD_AFTER = 2              # unanswered queries in a row that make a node bad
REFRESH_AFTER = 15 * 60.0  # a bucket untouched this long is refreshed

def distance(a: bytes, b: bytes) -> int:
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


@dataclass
class Node:
    id: bytes
    addr: Addr
    last_seen: float = 0.0          # last query or response from it
    last_response: float | None = None  # last answer to one of our queries
    failures: int = 0               # our queries in a row it did not answer

    @property
    def info(self) -> NodeInfo:
        return NodeInfo(self.id, self.addr)

    def good(self, now: float) -> bool:
        return (self.failures == 0 and self.last_response is not None
                and now - self.last_seen < GOOD_FOR)

    @property
    def bad(self) -> bool:
        return self.failures >= BAD_AFTER


@dataclass
class Bucket:
    lo: int                          # ids in [lo, hi)
    hi: int
    nodes: list[Node] = field(default_factory=list)
    replacements: list[Node] = field(default_factory=list)  # oldest first
    last_changed: float = 0.0

    def covers(self, n: int) -> bool:
        return self.lo <= n < self.hi


class RoutingTable:
    def __init__(self, own_id: bytes, k: int = K) -> None:
        if len(own_id) != 20:
            raise ValueError("a node id has 20 bytes")
        self.own_id = own_id
        self.k = k
        self.buckets = [Bucket(0, 1 << ID_BITS)]
        self._by_addr: dict[Addr, bytes] = {}

    def __len__(self) -> int:
        return sum(len(b.nodes) for b in self.buckets)

    def _bucket(self, node_id: bytes) -> Bucket:
        n = int.from_bytes(node_id, "big")
        lo, hi = 0, len(self.buckets)
        while lo < hi:  # buckets are sorted and contiguous
            mid = (lo + hi) // 2
            if self.buckets[mid].hi <= n:
                lo = mid + 1
            else:
                hi = mid
        return self.buckets[lo]

    def get(self, node_id: bytes) -> Node | None:
        for n in self._bucket(node_id).nodes:
            if n.id == node_id:
                return n
        return None

    def heard_from(self, node_id: bytes, addr: Addr, now: float, *,
                   responded: bool) -> list[Node]:
        """A message came from ``node_id`` at ``addr``: an answer to our query
        (``responded``) or a query of its own. Returns nodes to ping (questionable
        members of a full bucket the newcomer waits to join)."""
        if len(node_id) != 20 or node_id == self.own_id:
            return []
        known = self._by_addr.get(addr)
        if known is not None and known != node_id:
            return []  # one id per address: a node does not get two slots
        bucket = self._bucket(node_id)
        for n in bucket.nodes:
            if n.id == node_id:
                if n.addr != addr:
                    return []  # a known id from elsewhere: keep the one we verified
                n.last_seen = now
                if responded:
                    n.last_response = now
                    n.failures = 0
                bucket.last_changed = now
                return []
        if not responded:
            # Only nodes that answered us go in (a query's source could be spoofed):
            # a querying stranger waits in the replacement cache, and is to be pinged
            # if there is room for it, else the bucket's questionable nodes are.
            stranger = Node(node_id, addr, now, None)
            self._add_replacement(bucket, stranger)
            if len(bucket.nodes) < self.k or self._splittable(bucket):
                return [stranger]
            return [n for n in bucket.nodes if not n.good(now)]
        node = Node(node_id, addr, now, now if responded else None)
        while True:
            if len(bucket.nodes) < self.k:
                self._insert(bucket, node, now)
                return []
            bad = next((n for n in bucket.nodes if n.bad), None)
            if bad is not None:
                self._remove(bucket, bad)
                self._insert(bucket, node, now)
                return []
            if self._splittable(bucket):
                self._split(bucket)
                bucket = self._bucket(node_id)
                continue
            self._add_replacement(bucket, node)
            return [n for n in bucket.nodes if not n.good(now)]

    def failed(self, node_id: bytes, now: float) -> None:
        """A query to the node went unanswered. A node that turns bad is replaced by
        the freshest replacement that answered us, if there is one."""
        bucket = self._bucket(node_id)
        node = next((n for n in bucket.nodes if n.id == node_id), None)
        if node is None:
            bucket.replacements = [r for r in bucket.replacements if r.id != node_id]
            return
        node.failures += 1
        if node.bad:
            spare = next((r for r in reversed(bucket.replacements)
                          if r.last_response is not None), None)
            if spare is not None:
                bucket.replacements.remove(spare)
                self._remove(bucket, node)
                self._insert(bucket, spare, now)

    def remove(self, node_id: bytes) -> None:
        bucket = self._bucket(node_id)
        node = next((n for n in bucket.nodes if n.id == node_id), None)
        if node is not None:
            self._remove(bucket, node)

    def closest(self, target: bytes, n: int | None = None) -> list[Node]:
        """The ``n`` (default ``k``) nodes nearest ``target``, bad ones left out."""
        t = int.from_bytes(target, "big")
        nodes = [x for b in self.buckets for x in b.nodes if not x.bad]
        nodes.sort(key=lambda x: int.from_bytes(x.id, "big") ^ t)
        return nodes[:n or self.k]

    def nodes(self) -> list[Node]:
        return [x for b in self.buckets for x in b.nodes]

    def good_nodes(self, now: float) -> list[Node]:
        return [x for x in self.nodes() if x.good(now)]

    def questionable(self, now: float) -> list[Node]:
        """Nodes not heard from for ``GOOD_FOR`` seconds (and not yet bad): ping them."""
        return [x for x in self.nodes() if not x.good(now) and not x.bad]

    def stale_buckets(self, now: float) -> list[tuple[int, int]]:
        """Ranges ``(lo, hi)`` of buckets not changed for ``REFRESH_AFTER`` seconds."""
        return [(b.lo, b.hi) for b in self.buckets if now - b.last_changed >= REFRESH_AFTER]

    def touch(self, target: bytes, now: float) -> None:
        """A lookup of ``target`` ran: its bucket counts as refreshed."""
        self._bucket(target).last_changed = now

    # -- internals ----------------------------------------------------------------------

    def _splittable(self, bucket: Bucket) -> bool:
        return bucket.covers(int.from_bytes(self.own_id, "big")) and bucket.hi - bucket.lo > self.k

    def _insert(self, bucket: Bucket, node: Node, now: float) -> None:
        bucket.nodes.append(node)
        bucket.replacements = [r for r in bucket.replacements if r.id != node.id]
        self._by_addr[node.addr] = node.id
        bucket.last_changed = now

    def _remove(self, bucket: Bucket, node: Node) -> None:
        bucket.nodes.remove(node)
        if self._by_addr.get(node.addr) == node.id:
            del self._by_addr[node.addr]

    def _add_replacement(self, bucket: Bucket, node: Node) -> None:
        bucket.replacements = [r for r in bucket.replacements
                               if r.id != node.id and r.addr != node.addr]
        bucket.replacements.append(node)
        del bucket.replacements[:-self.k]

    def _split(self, bucket: Bucket) -> None:
        mid = (bucket.lo + bucket.hi) // 2
        low, high = Bucket(bucket.lo, mid), Bucket(mid, bucket.hi)
        for half in (low, high):
            half.last_changed = bucket.last_changed
            half.nodes = [n for n in bucket.nodes if half.covers(int.from_bytes(n.id, "big"))]
            half.replacements = [n for n in bucket.replacements
                                 if half.covers(int.from_bytes(n.id, "big"))]
        i = self.buckets.index(bucket)
        self.buckets[i:i + 1] = [low, high]


def random_id_in(lo: int, hi: int, entropy: bytes) -> bytes:
    """An id in ``[lo, hi)`` drawn from the caller's random ``entropy`` (20 bytes)."""
    span = hi - lo
    return (lo + int.from_bytes(entropy, "big") % span).to_bytes(20, "big")
