"""The mainline DHT (BEP 5): the trio shell over ``core.dht``: ``krpc``, ``routing``,
``lookup`` and ``store``.

``DHT.run`` binds one UDP socket (or shares uTP's, ``transport``), answers other nodes' queries (rate limited per IP),
bootstraps (a ``find_node`` lookup of our own id from saved nodes and the bootstrap
addresses), refreshes stale buckets, and saves its id and good nodes on the way out.
It signals readiness once the socket is bound; ``bootstrapped`` is set when the first
bootstrap lookup has ended (found nodes or not).

``async for addr in dht.get_peers(info_hash)`` runs one iterative ``get_peers``
lookup and yields peers as they come (it needs no torrent, so a magnet link can use
it before the metadata is known; it first waits for the bootstrap, bounded); with ``announce_port`` it then sends
``announce_peer`` to the closest nodes that gave a token. Close it early with
``contextlib.aclosing`` if you stop iterating before it ends.

``keep_torrent_found`` is the hook for a ``Torrent``: a lookup soon after start, then
every few minutes (sooner while it has few peers), feeding ``Torrent.add_peer`` and
announcing our listen port.

A node is IPv4 or IPv6 (BEP 32) by its ``host``: an IPv6 one (``host="::"``) talks
to IPv6 nodes only, answers with ``nodes6``, follows ``nodes6`` in lookups and
keeps its own routing table and state file; a ``DhtPair`` is one of each, used as
one by ``keep_torrent_found``. A query's ``want`` (BEP 32: ``n4``, ``n6``) is
answered from the routing table of each family asked for (the pair's other node's
for the other family); the nodes of a pair ask for both, and nodes of the other
family that answers bring are pinged by the other node while its table is small.

Every wait is bounded: a query by ``QUERY_TIMEOUT``, a lookup by ``LOOKUP_LIMIT``,
name resolution of bootstrap hosts by ``RESOLVE_TIMEOUT``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import secrets
import socket
from collections import OrderedDict
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import AsyncIterator, Callable

import trio

from torrentfs.core.address import Addr, is_ipv6
from torrentfs.core.dht import krpc
from torrentfs.core.dht.krpc import NodeInfo
from torrentfs.core.dht.lookup import QUERY_TIMEOUT, Lookup
from torrentfs.core.dht.routing import K, RoutingTable, random_id_in
from torrentfs.core.dht.store import PeerStore, Tokens
from torrentfs.core.ratelimit import TokenBucket
from torrentfs.disk.private import open_private, private_dir

log = logging.getLogger("torrentfs.dht")

DEFAULT_BOOTSTRAP = [("router.bittorrent.com", 6881), ("dht.transmissionbt.com", 6881),
                     ("router.utorrent.com", 6881), ("dht.libtorrent.org", 25401)]
VERSION = b"TF\x01\x00"
LOOKUP_LIMIT = 60.0           # a lookup ends after this long, whatever its state
RESOLVE_TIMEOUT = 10.0
MAX_PENDING = 512             # our queries awaiting an answer
QUERY_RATE, QUERY_BURST = 20.0, 40.0  # queries per second we answer per IP
MAX_RATE_IPS = 4096           # IPs whose rate we track (least recent forgotten)
TICK = 5.0                    # housekeeping period
REFRESH_EVERY = 60.0          # stale buckets and questionable nodes checked this often
PINGS_PER_TICK = 16
SAVE_EVERY = 10 * 60.0
SAVED_NODES = 200
REBOOTSTRAP_MIN, REBOOTSTRAP_MAX = 10.0, 300.0
VALUES_PER_REPLY = 50
FEED_SIBLING_BELOW = 64       # nodes of the other family pinged while its table is smaller
# keep_torrent_found: a lookup this often, sooner while we have few peers or none.
LOOKUP_EVERY, LOOKUP_EVERY_FEW, LOOKUP_EVERY_NONE, FEW_PEERS = 5 * 60.0, 60.0, 15.0, 5


@dataclass
class _Pending:
    addr: Addr
    expect: bytes | None           # the id we asked, if we knew it
    deadline: float
    reply: trio.MemorySendChannel | None


class DHT:
    def __init__(self, *, port: int = 0, host: str = "0.0.0.0",
                 bootstrap: list[Addr] | None = None, state_path: str | os.PathLike | None = None,
                 node_id: bytes | None = None, transport=None) -> None:
        self.host, self.port = host, port
        self.v6 = ":" in host   # an IPv6 node (BEP 32): IPv6 nodes and peers only
        # A running net.utp.UtpSocket whose UDP socket the DHT shares (as libtorrent
        # shares one socket for uTP and the DHT); None: the DHT binds its own.
        self.transport = transport
        self.bootstrap = list(DEFAULT_BOOTSTRAP if bootstrap is None else bootstrap)
        self.state_path = Path(state_path) if state_path else None
        self.node_id = node_id or secrets.token_bytes(20)
        self._saved_nodes: list[NodeInfo] = []
        self._state_fd: int | None = None
        self.table = RoutingTable(self.node_id)
        self.store = PeerStore()
        self.tokens: Tokens | None = None
        self.bootstrapped = trio.Event()
        self._sock: trio.socket.SocketType | None = None
        self._raw: socket.socket | None = None
        self._sendto: Callable[[bytes, Addr], object] | None = None
        self._resolved_bootstrap: list[Addr] = []
        self._pending: dict[bytes, _Pending] = {}
        self._tid = secrets.randbits(16)
        self._limits: OrderedDict[str, TokenBucket] = OrderedDict()
        self._nursery: trio.Nursery | None = None
        self.queries_answered = 0
        self.queries_dropped = 0
        self.sibling: DHT | None = None   # the node of the other family (a DhtPair's)

    # -- life cycle ------------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled. Ready once the UDP socket is bound (``self.port`` is
        then the real port). Raises ``OSError`` if it cannot be bound."""
        self._load_state()
        shared = self.transport
        if shared is not None:   # uTP's socket: it hands us what is not uTP
            if not shared.serves(self.v6):
                self._release_state()
                raise OSError(f"the uTP socket does not speak IPv{6 if self.v6 else 4}")
            raw, self.port = shared.raw, shared.port
            self._sendto = shared.sendto   # (maps IPv4 on a dual-stack socket)
            if self.v6:
                shared.other6 = self._on_datagram
            else:
                shared.other = self._on_datagram
        else:
            # A plain non-blocking socket: sends never wait (a datagram that does not
            # fit the kernel's buffer is dropped, as the network may drop it anyway).
            raw = socket.socket(socket.AF_INET6 if self.v6 else socket.AF_INET,
                                socket.SOCK_DGRAM)
            try:
                raw.setblocking(False)
                if self.v6:
                    raw.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                raw.bind((self.host, self.port))
            except OSError:
                raw.close()
                self._release_state()
                raise
            self._sock = trio.socket.from_stdlib_socket(raw)
            self.port = raw.getsockname()[1]
            self._sendto = raw.sendto
        self._raw = raw
        self.tokens = Tokens(secrets.token_bytes(16), trio.current_time())
        log.info("DHT node %s on UDP port %d%s", self.node_id.hex(), self.port,
                 " (IPv6)" if self.v6 else "")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if shared is None:
                    nursery.start_soon(self._reader)
                nursery.start_soon(self._maintain)
                task_status.started()
        finally:
            if shared is None:
                self._sock.close()
            elif self.v6:
                shared.other6 = None
            else:
                shared.other = None
            self._save_state()
            self._release_state()

    def _load_state(self) -> None:
        """Reuse the id and nodes of the last run. The state file is locked while we
        run: a second torrentfs with the same cache gets a fresh id (two nodes must
        not share one) and saves nothing."""
        if self.state_path is None:
            return
        try:
            private_dir(self.state_path.parent, tighten=False)
            fd = open_private(self.state_path, os.O_RDWR)
        except OSError as e:
            log.warning("DHT state %s: %s", self.state_path, e.strerror)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            log.info("DHT state %s is in use by another torrentfs: a fresh node id",
                     self.state_path)
            return
        self._state_fd = fd
        try:
            data = os.pread(fd, 1 << 16, 0)
            if not data:
                return
            state = krpc.bdecode(data)
            if not isinstance(state, dict):
                raise krpc.KrpcError("not a dictionary")
            node_id, nodes = state.get(b"id"), state.get(b"nodes", b"")
            if isinstance(node_id, bytes) and len(node_id) == 20:
                self.node_id = node_id
                self.table = RoutingTable(node_id)
            if isinstance(nodes, bytes):
                size = 38 if self.v6 else 26
                self._saved_nodes = list(krpc.unpack_nodes(nodes[:size * SAVED_NODES],
                                                           v6=self.v6))
            log.info("DHT state: reusing node id and %d saved nodes", len(self._saved_nodes))
        except (OSError, krpc.KrpcError) as e:
            log.warning("DHT state %s unreadable (%s): starting afresh", self.state_path, e)

    def _save_state(self) -> None:
        if self._state_fd is None:
            return
        now = trio.current_time()
        nodes = [n.info for n in self.table.good_nodes(now) if is_ipv6(n.addr) == self.v6]
        if not nodes:  # nothing better learned: keep what we started from
            nodes = self._saved_nodes
        data = krpc.bencode({b"id": self.node_id,
                             b"nodes": krpc.pack_nodes(nodes[:SAVED_NODES])})
        try:
            os.ftruncate(self._state_fd, 0)
            os.pwrite(self._state_fd, data, 0)
            os.fsync(self._state_fd)
        except OSError as e:
            log.warning("cannot save DHT state %s: %s", self.state_path, e.strerror)

    def _release_state(self) -> None:
        if self._state_fd is not None:
            os.close(self._state_fd)
            self._state_fd = None

    # -- sending and receiving ---------------------------------------------------------

    def _send(self, addr: Addr, data: bytes) -> bool:
        try:
            self._sendto(data, addr)
            return True
        except (BlockingIOError, OSError) as e:
            log.debug("DHT send to %s:%d failed: %s", *addr, e)
            return False

    def _next_tid(self) -> bytes:
        self._tid = (self._tid + 1) & 0xFFFF
        return self._tid.to_bytes(2, "big")

    def _query(self, addr: Addr, make: Callable[[bytes], krpc.Query], expect: bytes | None,
               reply: trio.MemorySendChannel | None) -> bytes | None:
        """Send a query; its answer (a Response or Error) goes to ``reply``. None if
        it could not be sent (too many queries pending, or a send error)."""
        if len(self._pending) >= MAX_PENDING or is_ipv6(addr) != self.v6:
            return None
        tid = self._next_tid()
        while tid in self._pending:
            tid = self._next_tid()
        if not self._send(addr, krpc.encode(make(tid), version=VERSION)):
            return None
        self._pending[tid] = _Pending(addr, expect, trio.current_time() + QUERY_TIMEOUT, reply)
        return tid

    async def _reader(self) -> None:
        while True:
            try:
                data, addr = await self._sock.recvfrom(krpc.MAX_DATAGRAM + 1)
            except OSError as e:  # e.g. ICMP port unreachable reported on the socket
                log.debug("DHT receive: %s", e)
                continue
            self._on_datagram(data, (addr[0], addr[1]))

    def _on_datagram(self, data: bytes, addr: Addr) -> None:
        try:
            msg = krpc.decode(data)
        except krpc.KrpcError as e:
            log.debug("DHT: bad datagram from %s:%d: %s", *addr, e)
            return
        now = trio.current_time()
        if isinstance(msg, krpc.Query):
            self._on_query(msg, addr, now)
            return
        pending = self._pending.get(msg.tid)
        if pending is None or pending.addr != addr:
            return  # not an answer to anything we asked
        del self._pending[msg.tid]
        if isinstance(msg, krpc.Response):
            for n in self.table.heard_from(msg.id, addr, now, responded=True):
                self._ping(n.id, n.addr)
            sibling = self.sibling
            if sibling is not None and sibling._raw is not None \
                    and len(sibling.table) < FEED_SIBLING_BELOW:
                for n in (msg.nodes if self.v6 else msg.nodes6)[:K]:
                    sibling._ping(n.id, n.addr)
        if pending.reply is not None:
            try:
                pending.reply.send_nowait((addr, msg))
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.WouldBlock):
                pass

    def _allowed(self, ip: str, now: float) -> bool:
        bucket = self._limits.pop(ip, None)
        if bucket is None:
            bucket = TokenBucket(QUERY_RATE, QUERY_BURST)
            while len(self._limits) >= MAX_RATE_IPS:
                self._limits.popitem(last=False)
        self._limits[ip] = bucket
        return bucket.available(now) >= 1 and bucket.take(1, now) == 0.0

    def _on_query(self, q: krpc.Query, addr: Addr, now: float) -> None:
        if not self._allowed(addr[0], now):
            self.queries_dropped += 1
            return
        self.queries_answered += 1
        if not q.read_only:
            for n in self.table.heard_from(q.id, addr, now, responded=False):
                self._ping(n.id, n.addr)
        me = self.node_id
        reply: krpc.Message
        if isinstance(q, krpc.Ping):
            reply = krpc.Response(q.tid, me)
        elif isinstance(q, krpc.FindNode):
            reply = krpc.Response(q.tid, me, **self._closest(q.target, q.want))
        elif isinstance(q, krpc.GetPeers):
            values = tuple(self.store.get(q.info_hash, now, VALUES_PER_REPLY))
            reply = krpc.Response(q.tid, me, **self._closest(q.info_hash, q.want),
                                  values=values, token=self.tokens.token_for(addr[0]))
        elif isinstance(q, krpc.AnnouncePeer):
            if self.tokens.valid(q.token, addr[0]):
                port = addr[1] if q.implied_port else q.port
                self.store.announce(q.info_hash, (addr[0], port), now)
                reply = krpc.Response(q.tid, me)
            else:
                reply = krpc.Error(q.tid, krpc.PROTOCOL_ERROR, "bad token")
        else:
            reply = krpc.Error(q.tid, krpc.METHOD_UNKNOWN, "method unknown")
        self._send(addr, krpc.encode(reply, ip=addr, version=VERSION))

    def _closest(self, target: bytes,
                 want: frozenset[str] = frozenset()) -> dict[str, tuple[NodeInfo, ...]]:
        """The closest nodes of each family in ``want`` (BEP 32: ``n4``, ``n6``; none:
        ours), as ``nodes`` and ``nodes6``; the other family's from ``sibling``."""
        out = {}
        for family in want or ("n6" if self.v6 else "n4",):
            v6 = family == "n6"
            node = self if v6 == self.v6 else self.sibling
            if node is not None:
                out["nodes6" if v6 else "nodes"] = tuple(
                    n.info for n in node.table.closest(target, K * 2)
                    if is_ipv6(n.addr) == v6)[:K]
        return out

    @property
    def want(self) -> frozenset[str]:
        """What our find_node and get_peers ask for (BEP 32): both families with a
        sibling, else none said (our own, by default)."""
        return frozenset(krpc.WANTS) if self.sibling is not None else frozenset()

    def _ping(self, node_id: bytes | None, addr: Addr) -> None:
        """Ping a node (its answer goes to the routing table), unless a query to it
        is already pending: a flood of queries from a stranger earns one ping."""
        if any(p.addr == addr for p in self._pending.values()):
            return
        self._query(addr, lambda tid: krpc.Ping(tid, self.node_id), node_id, None)

    # -- lookups -----------------------------------------------------------------------

    def _seeds(self, target: bytes) -> list[tuple[bytes | None, Addr]]:
        seeds: list[tuple[bytes | None, Addr]] = [
            (n.id, n.addr) for n in self.table.closest(target, K * 2)]
        if len(seeds) < K:
            seeds += [(n.id, n.addr) for n in self._saved_nodes]
            seeds += [(None, a) for a in self._resolved_bootstrap]
        return seeds

    async def _lookup(self, target: bytes, make: Callable[[bytes], krpc.Query],
                      announce_port: int | None = None, *,
                      bootstrapping: bool = False) -> AsyncIterator[Addr]:
        if not bootstrapping and not self.bootstrapped.is_set():
            with trio.move_on_after(LOOKUP_LIMIT):  # the table is still filling
                await self.bootstrapped.wait()
        lookup = Lookup(target, self._seeds(target), own_id=self.node_id)
        send, recv = trio.open_memory_channel(math.inf)
        deadline = trio.current_time() + LOOKUP_LIMIT
        try:
            while not lookup.done and trio.current_time() < deadline:
                now = trio.current_time()
                for c in lookup.next_queries(now):
                    if self._query(c.addr, make, c.id, send) is None:
                        lookup.failed(c.addr)
                if lookup.done:
                    break
                wake = min(lookup.next_timeout() or now + QUERY_TIMEOUT, deadline)
                got = []
                with trio.move_on_at(wake):
                    got.append(await recv.receive())
                while True:
                    try:
                        got.append(recv.receive_nowait())
                    except trio.WouldBlock:
                        break
                fresh: list[Addr] = []
                for addr, msg in got:
                    if isinstance(msg, krpc.Response):
                        fresh += lookup.responded(addr, msg.id,
                                                  msg.nodes6 if self.v6 else msg.nodes,
                                                  msg.values, msg.token)
                    else:
                        lookup.failed(addr)
                for peer in fresh:
                    yield peer
        finally:
            send.close()
            recv.close()
        self.table.touch(target, trio.current_time())
        if announce_port:
            for c in lookup.announce_targets():
                self._query(c.addr, lambda tid, tok=c.token: krpc.AnnouncePeer(
                    tid, self.node_id, target, announce_port, tok), c.id, None)
        log.debug("DHT lookup %s: %d queries, %d peers, %d closest answered",
                  target.hex()[:12], lookup.queries_sent, len(lookup.peers),
                  len(lookup.closest_answered()))

    async def get_peers(self, info_hash: bytes, *,
                        announce_port: int | None = None) -> AsyncIterator[Addr]:
        """Peers of ``info_hash`` as one iterative lookup finds them (each once).
        Run to its end with ``announce_port``, it then announces that TCP port to
        the closest nodes."""
        async for peer in self._lookup(
                info_hash, lambda tid: krpc.GetPeers(tid, self.node_id, info_hash,
                                                     want=self.want),
                announce_port):
            yield peer

    async def find_node(self, target: bytes, *, bootstrapping: bool = False) -> None:
        """One iterative ``find_node`` lookup of ``target``: fills the routing table."""
        def make(tid: bytes) -> krpc.Query:
            return krpc.FindNode(tid, self.node_id, target, want=self.want)
        async for _ in self._lookup(target, make, bootstrapping=bootstrapping):
            pass

    # -- maintenance -------------------------------------------------------------------

    async def _resolve_bootstrap(self) -> list[Addr]:
        out: list[Addr] = []
        for host, port in self.bootstrap:
            try:
                with trio.move_on_after(RESOLVE_TIMEOUT):
                    infos = await trio.socket.getaddrinfo(host, port, socket.AF_INET6
                                                          if self.v6 else socket.AF_INET,
                                                          socket.SOCK_DGRAM)
                    out += [(i[4][0], i[4][1]) for i in infos[:2]]
            except OSError as e:  # (an IPv6 node: most routers have no IPv6 address)
                log.log(logging.DEBUG if self.v6 else logging.INFO, "DHT bootstrap %s:%d: %s",
                        host, port, e)
        return list(dict.fromkeys(out))

    async def _bootstrap(self) -> None:
        self._resolved_bootstrap = await self._resolve_bootstrap()
        await self.find_node(self.node_id, bootstrapping=True)
        log.info("DHT bootstrap: %d nodes in the routing table", len(self.table))

    async def _maintain(self) -> None:
        await self._bootstrap()
        self.bootstrapped.set()
        retry = REBOOTSTRAP_MIN
        next_refresh = next_save = trio.current_time()
        next_save += SAVE_EVERY
        while True:
            await trio.sleep(TICK)
            now = trio.current_time()
            self._expire_pending(now)
            if self.tokens.due(now):
                self.tokens.rotate(secrets.token_bytes(16), now)
                self.store.expire(now)
            if not len(self.table):
                await trio.sleep(retry)
                retry = min(retry * 2, REBOOTSTRAP_MAX)
                await self._bootstrap()
                continue
            retry = REBOOTSTRAP_MIN
            if now >= next_refresh:
                next_refresh = now + REFRESH_EVERY
                for node in self.table.questionable(now)[:PINGS_PER_TICK]:
                    self._ping(node.id, node.addr)
                for lo, hi in self.table.stale_buckets(now)[:4]:
                    await self.find_node(random_id_in(lo, hi, secrets.token_bytes(20)))
            if now >= next_save:
                next_save = now + SAVE_EVERY
                self._save_state()

    def _expire_pending(self, now: float) -> None:
        """Queries unanswered past their deadline count against their node."""
        for tid, p in list(self._pending.items()):
            if now >= p.deadline:
                del self._pending[tid]
                if p.expect is not None:
                    self.table.failed(p.expect, now)


class DhtPair:
    """An IPv4 node and an IPv6 node (BEP 32) beside it, on the same port number.
    ``keep_torrent_found`` uses both; any other attribute is the IPv4 node's (its
    ``port``, its socket, ...), so code written for one ``DHT`` keeps working."""

    def __init__(self, v4: DHT, v6: DHT) -> None:
        self.v4, self.v6 = v4, v6
        v4.sibling, v6.sibling = v6, v4

    def __getattr__(self, name: str):
        return getattr(self.v4, name)

    @property
    def nodes(self) -> tuple[DHT, DHT]:
        return self.v4, self.v6

    @property
    def port(self) -> int:
        return self.v4.port


async def keep_torrent_found(dht: DHT | DhtPair, info_hash: bytes, *, port: Callable[[], int],
                             add_peer: Callable[[Addr], None],
                             peer_count: Callable[[], int]) -> None:
    """Look the torrent up on the DHT once bootstrapped, then every ``LOOKUP_EVERY``
    seconds (``LOOKUP_EVERY_FEW`` while fewer than ``FEW_PEERS`` peers are
    connected, ``LOOKUP_EVERY_NONE`` while none is); every peer found goes to
    ``add_peer``, and our TCP ``port()`` is announced to the closest nodes. With a
    ``DhtPair``, on each of its nodes."""
    if isinstance(dht, DhtPair):
        async with trio.open_nursery() as nursery:
            for node in dht.nodes:
                nursery.start_soon(partial(keep_torrent_found, node, info_hash, port=port,
                                           add_peer=add_peer, peer_count=peer_count))
        return
    start = trio.current_time()
    with trio.move_on_after(LOOKUP_LIMIT):
        await dht.bootstrapped.wait()
    first = True
    while True:
        found = 0
        async with contextlib.aclosing(dht.get_peers(info_hash, announce_port=port())) as peers:
            async for addr in peers:
                if first:
                    first = False
                    log.info("DHT: first peer for %s after %.3f s: %s:%d", info_hash.hex(),
                             trio.current_time() - start, *addr)
                found += 1
                add_peer(addr)
        log.log(logging.INFO if found else logging.DEBUG, "DHT lookup for %s: %d peers",
                info_hash.hex(), found)
        n = peer_count()
        await trio.sleep(LOOKUP_EVERY_NONE if n == 0 else
                         LOOKUP_EVERY_FEW if n < FEW_PEERS else LOOKUP_EVERY)
