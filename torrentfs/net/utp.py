"""uTP (BEP 29) over one UDP socket: the trio shell over ``core.utp``.

``UtpSocket`` binds one UDP socket (the listen port, shared with the DHT as
libtorrent shares it: a datagram that is not uTP, ``core.utp.is_utp``, goes to
``other``, the DHT's handler, and the DHT sends through ``raw``). It routes each
uTP packet to its connection by (address, connection id), answers a SYN by handing a
new ``UtpStream`` to ``accept`` (the same code that takes incoming TCP peers), and
sends a RESET for packets of connections it does not know. ``connect(addr)`` opens
an outgoing connection from the same socket.

With no host (or a wildcard: ``None``, ``""``, ``"*"``, ``"::"``) the socket is
dual-stack, as the TCP listeners are: one IPv6 socket with ``IPV6_V6ONLY`` off, so
IPv4 peers and nodes reach it too (their addresses are shown and handed on as plain
IPv4, ``::ffff:a.b.c.d`` mapped back, and an IPv6 link-local one with its zone,
``fe80::1%2``: ``core.address.zoned``); a host without IPv6 falls back to IPv4 alone,
with one log line. A named host is used alone. The DHT sends through ``sendto``
(which maps an IPv4 address for a dual-stack socket); what is not uTP goes to
``other`` (from IPv4) or ``other6`` (from IPv6), an IPv4 and an IPv6 DHT node.

A ``UtpStream`` is a ``trio.abc.Stream`` (``send_all``, ``receive_some``,
``aclose``), so a ``PeerSession`` (or an encryption layer wrapped around it) runs
over uTP exactly as over TCP. ``aclose`` returns at once: what was written is still
sent, then FIN; the socket keeps the connection until both FINs are acknowledged or
``LINGER`` passes.

Datagrams are read in batches (all that are ready, up to ``BATCH``), and each
connection touched is flushed once per batch: one ACK covers many packets. Retransmit
timers are checked every ``TICK``. Sends never wait: a datagram the kernel cannot take
is dropped, as the network may drop it.
"""

from __future__ import annotations

import errno
import logging
import secrets
import socket
from typing import Awaitable, Callable

import trio

from torrentfs.core import utp
from torrentfs.core.address import Addr, zoned

log = logging.getLogger("torrentfs.utp")

TICK = 0.05               # retransmit timers are checked this often
BATCH = 256               # datagrams read before the connections touched are flushed
CONNECT_TIMEOUT = 4.0     # an outgoing connection not answered by then fails
LINGER = 30.0             # a closed stream's connection is kept this long for its FIN
MAX_CONNECTIONS = 2000    # connections at most (incoming SYNs beyond are ignored)
SOCKET_BUFFER = 4 << 20   # kernel receive/send buffer asked for the UDP socket
MAX_DATAGRAM = 65536
WILDCARDS = (None, "", "*", "::")
_MAPPED = "::ffff:"


def plain_addr(addr) -> Addr:
    """A socket address as ``(host, port)``: an IPv4-mapped IPv6 address
    (``::ffff:1.2.3.4``, what a dual-stack socket reports for IPv4) as plain IPv4; a
    link-local IPv6 one with its zone (``fe80::1%2``) from the scope id."""
    host = addr[0]
    if host.startswith(_MAPPED) and "." in host:
        host = host[len(_MAPPED):]
    return zoned(host, addr[3] if len(addr) > 3 else 0), addr[1]


def socket_addr(addr: Addr) -> tuple:
    """``addr`` as a socket call takes it: a zoned IPv6 host (``fe80::1%2``) as
    ``(host, port, 0, scope id)`` (the socket module ignores a zone in the string)."""
    host, port = addr
    if "%" not in host:
        return addr
    host, zone = host.split("%", 1)
    return host, port, 0, int(zone) if zone.isdigit() else socket.if_nametoindex(zone)


class UtpStream(trio.abc.Stream):
    """One uTP connection as a trio stream."""

    def __init__(self, owner: "UtpSocket", core: utp.Connection, addr: Addr) -> None:
        self._owner = owner
        self.core = core
        self.addr = addr
        self._changed = trio.Event()
        self._closed = False            # aclose called
        self._linger_until: float | None = None
        self._send_lock = trio.StrictFIFOLock()

    def __repr__(self) -> str:
        return f"<uTP {self.addr[0]}:{self.addr[1]} id {self.core.recv_id}>"

    def _wake(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    def _check(self) -> None:
        if self._closed:
            raise trio.ClosedResourceError("uTP stream closed")
        if self.core.state == utp.CLOSED:
            raise trio.BrokenResourceError(self.core.error or "uTP connection closed")

    async def send_all(self, data) -> None:
        async with self._send_lock:
            view = memoryview(data)
            while True:
                self._check()
                n = self.core.write(view)
                if n:
                    view = view[n:]
                    self._owner._flush(self)
                if not len(view):
                    break
                await self._changed.wait()
        await trio.lowlevel.checkpoint()

    async def wait_send_all_might_not_block(self) -> None:
        while self.core.send_space == 0:
            self._check()
            await self._changed.wait()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is None:
            max_bytes = 1 << 18
        while True:
            if self._closed:
                raise trio.ClosedResourceError("uTP stream closed")
            if self.core.readable:
                data = self.core.read(max_bytes)
                self._owner._flush(self)   # maybe a window update
                await trio.lowlevel.checkpoint()
                return data
            if self.core.eof:
                await trio.lowlevel.checkpoint()
                return b""
            if self.core.state == utp.CLOSED:
                raise trio.BrokenResourceError(self.core.error or "uTP connection closed")
            await self._changed.wait()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self.core.close()
            self.core.stop_reading()
            self._linger_until = trio.current_time() + LINGER
            self._owner._flush(self)
            self._wake()
        await trio.lowlevel.checkpoint()


class UtpSocket:
    """The UDP socket uTP (and the DHT) use; see the module docstring."""

    def __init__(self, *, host: str | None = None, port: int = 0,
                 accept: Callable[[UtpStream, Addr], Awaitable[None]] | None = None) -> None:
        self.host, self.port = host, port
        self.accept = accept
        self.other: Callable[[bytes, Addr], None] | None = None   # the DHT's reader
        self.other6: Callable[[bytes, Addr], None] | None = None  # the IPv6 DHT's reader
        self.dual = False      # one IPv6 socket taking IPv4 too (see the docstring)
        self.family = socket.AF_INET
        self.raw: socket.socket | None = None
        self._conns: dict[tuple[Addr, int], UtpStream] = {}
        self._nursery: trio.Nursery | None = None
        self._touched: dict[int, UtpStream] = {}
        self._first_conn = trio.Event()  # set when a connection comes while there were none
        self.resets_sent = 0
        self.datagrams_in = self.datagrams_out = 0   # uTP's and the DHT's

    def bind(self) -> None:
        """Bind the UDP socket now (``port`` is then the real port); raises OSError.
        ``run`` binds it if this was not called."""
        if self.host in WILDCARDS:
            try:
                self._bind(socket.AF_INET6, "::", dual=True)
                return
            except OSError as e:
                log.info("uTP: no dual-stack UDP socket on port %d (%s): IPv4 only",
                         self.port, e.strerror or e)
            self._bind(socket.AF_INET, "0.0.0.0")
        else:
            self._bind(socket.AF_INET6 if ":" in self.host else socket.AF_INET, self.host)

    def _bind(self, family: int, host: str, dual: bool = False) -> None:
        raw = socket.socket(family, socket.SOCK_DGRAM)
        try:
            raw.setblocking(False)
            if family == socket.AF_INET6:
                raw.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual else 1)
            for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                try:
                    raw.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
                except OSError:
                    pass
            raw.bind((host, self.port))
        except OSError:
            raw.close()
            raise
        self.raw, self.family, self.dual = raw, family, dual
        self.port = raw.getsockname()[1]

    def serves(self, v6: bool) -> bool:
        """Whether this socket reaches IPv6 (``v6``) or IPv4 addresses."""
        return self.dual or (self.family == socket.AF_INET6) == v6

    def sendto(self, data: bytes, addr: Addr) -> None:
        """Send one datagram to ``addr`` (IPv4 or IPv6; an IPv4 one mapped on a
        dual-stack socket). Raises OSError as ``socket.sendto`` does."""
        if self.dual and ":" not in addr[0]:
            addr = (_MAPPED + addr[0], addr[1])
        self.raw.sendto(data, socket_addr(addr))

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ready once bound (``port`` is then the real port).
        Raises OSError if the port cannot be bound."""
        if self.raw is None:
            self.bind()
        raw = self.raw
        log.info("uTP on UDP port %d%s", self.port, " (IPv4 and IPv6)" if self.dual else "")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._reader)
                nursery.start_soon(self._timers)
                task_status.started()
        finally:
            log.info("uTP socket closed: %d datagrams in, %d out (uTP only), %d resets sent",
                     self.datagrams_in, self.datagrams_out, self.resets_sent)
            for s in list(self._conns.values()):
                if s.core.state != utp.CLOSED:
                    self._send(s.core.reset(), s.addr)
                s._wake()
            self._conns.clear()
            raw.close()

    # -- outgoing connections ------------------------------------------------------------

    async def connect(self, addr: Addr, timeout: float = CONNECT_TIMEOUT) -> UtpStream:
        """A connection to ``addr``; raises OSError if it is refused or not answered
        within ``timeout``."""
        if self.raw is None:
            raise OSError("uTP socket not running")
        addr = plain_addr((addr[0], int(addr[1])))
        host, _, zone = addr[0].partition("%")
        if zone and not zone.isdigit():  # fe80::1%eth0: keyed as replies come, %<index>
            addr = (f"{host}%{socket.if_nametoindex(zone)}", addr[1])
        if not self.serves(":" in addr[0]):
            raise OSError(f"uTP socket cannot reach {addr[0]} (address family)")
        if len(self._conns) >= MAX_CONNECTIONS:
            raise OSError("too many uTP connections")
        while True:
            cid = secrets.randbits(16)
            if (addr, cid) not in self._conns and (addr, (cid + 1) & 0xFFFF) not in self._conns:
                break
        stream = UtpStream(self, utp.Connection.connect(cid, trio.current_time()), addr)
        self._conns[(addr, cid)] = stream
        self._first_conn.set()
        self._flush(stream)
        with trio.move_on_after(timeout):
            while stream.core.state == utp.SYN_SENT:
                await stream._changed.wait()
            if stream.core.state == utp.CONNECTED:
                return stream
            raise OSError(f"uTP connect to {addr[0]}:{addr[1]}: {stream.core.error}")
        self._drop(stream)
        raise OSError(f"uTP connect to {addr[0]}:{addr[1]} timed out")

    # -- datagrams in ----------------------------------------------------------------

    async def _reader(self) -> None:
        raw = self.raw
        while True:
            await trio.lowlevel.wait_readable(raw)
            now = trio.current_time()
            for _ in range(BATCH):
                try:
                    data, addr = raw.recvfrom(MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as e:  # e.g. ICMP port unreachable reported here
                    if e.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH):
                        continue
                    log.debug("uTP receive: %s", e)
                    break
                self._on_datagram(data, plain_addr(addr), now)
                self.datagrams_in += 1
            touched, self._touched = self._touched, {}
            for stream in touched.values():
                self._flush(stream)
            await trio.lowlevel.checkpoint()

    def _on_datagram(self, data: bytes, addr: Addr, now: float) -> None:
        if not utp.is_utp(data):
            other = self.other6 if ":" in addr[0] else self.other
            if other is not None:
                other(data, addr)
            return
        try:
            p = utp.decode(data)
        except utp.UtpError:
            return
        stream = self._conns.get((addr, p.conn_id))
        if stream is None and p.type == utp.ST_SYN:
            stream = self._conns.get((addr, (p.conn_id + 1) & 0xFFFF))
            if stream is None:
                self._accept(p, addr, now)
                return
        if stream is None and p.type == utp.ST_RESET:
            # A RESET may carry either id of the pair.
            stream = (self._conns.get((addr, (p.conn_id + 1) & 0xFFFF))
                      or self._conns.get((addr, (p.conn_id - 1) & 0xFFFF)))
        if stream is None:
            if p.type != utp.ST_RESET:
                self.resets_sent += 1
                self._send(utp.encode(utp.Packet(utp.ST_RESET, p.conn_id,
                                                 secrets.randbits(16), p.seq)), addr)
            return
        stream.core.receive(p, now)
        self._touched[id(stream)] = stream

    def _accept(self, syn: utp.Packet, addr: Addr, now: float) -> None:
        if self.accept is None or self._nursery is None or len(self._conns) >= MAX_CONNECTIONS:
            return
        core = utp.Connection.accept(syn, now, secrets.randbits(16))
        stream = UtpStream(self, core, addr)
        self._conns[(addr, core.recv_id)] = stream
        self._first_conn.set()
        self._flush(stream)
        self._nursery.start_soon(self._serve, stream)

    async def _serve(self, stream: UtpStream) -> None:
        try:
            await self.accept(stream, stream.addr)
        finally:
            await stream.aclose()

    # -- datagrams out ---------------------------------------------------------------

    def _send(self, data: bytes, addr: Addr) -> None:
        self.datagrams_out += 1
        try:
            self.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            pass   # the kernel's buffer is full: as if the network dropped it
        except OSError as e:
            log.debug("uTP send to %s:%d: %s", addr[0], addr[1], e)

    def _flush(self, stream: UtpStream) -> None:
        """Send what the connection has to send; wake its stream's waiters; forget a
        connection that is over."""
        core = stream.core
        if self.raw is not None:
            for d in core.outgoing(trio.current_time()):
                self._send(d, stream.addr)
        if core.events():
            pass   # the stream reads the state itself
        stream._wake()
        if core.state == utp.CLOSED or (stream._closed and core.finished):
            self._drop(stream)

    def _drop(self, stream: UtpStream) -> None:
        key = (stream.addr, stream.core.recv_id)
        if self._conns.get(key) is stream:
            del self._conns[key]
        stream._wake()

    async def _timers(self) -> None:
        while True:
            if not self._conns:  # nothing to time: sleep until a connection comes
                self._first_conn = trio.Event()
                await self._first_conn.wait()
            await trio.sleep(TICK)
            now = trio.current_time()
            for stream in list(self._conns.values()):
                core = stream.core
                if stream._linger_until is not None and now > stream._linger_until:
                    if core.state != utp.CLOSED:
                        self._send(core.reset(), stream.addr)
                    self._drop(stream)
                    continue
                t = core.next_timeout
                if t is not None and now >= t:
                    core.tick(now)
                    self._flush(stream)

    @property
    def connections(self) -> int:
        return len(self._conns)
