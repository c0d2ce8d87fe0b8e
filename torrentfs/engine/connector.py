"""Who one torrent talks to: ``Connector``, owned by a ``Torrent`` (``torrent.connector``).

It keeps the peer addresses the torrent knows (``candidates``: from trackers, the
DHT, LSD, PEX and the user), dials them while there is ``room`` (under
``max_peers`` and, in a multi-torrent mount, under the cap its torrents share,
``multi.Shared``; the last tenth of ``max_peers`` is left to peers that dial us:
``dial_room``), and runs a session over each stream, dialed (``attach``) or
accepted (``accept``). ``run`` dials whenever an address is added or a session
ends, and at least once a second. An address whose dial failed is tried again
after 30 s doubling to 10 min; one whose session ended after 15 s doubling to
8 min (from 15 s again once a session lasted over a minute). Banned addresses
(``torrent.banned_ips``) and our own (a candidate marked ``banned``) are never
dialed; a peer that dials us while banned is closed at once, and so is one that
finds no room, unless a session can be replaced to make room for it
(``core/admission.py``: in a swarm larger than ``max_peers`` a late joiner would
find every peer full); a refused peer is closed before any handshake is read. An
address has one session at a time: a connection that lands at an address already
in ``sessions``, dialed or accepted, is closed (over uTP, whose one port serves both
ways, a peer that dialed us has the very address we dial it at).

Encryption (MSE/PE, ``net/mse.py``) follows ``torrent.options.encryption``: with
``require`` every connection is encrypted; with ``prefer`` an address is dialed in
plain text first, and at once again encrypted if the peer closed the plain
connection before its handshake (a peer that requires encryption does that); an
address PEX says prefers encryption is dialed encrypted first; an address whose
encrypted dial failed goes back to plain text, and to encryption at the next try if
plain text is refused again. A dial whose shared secret some peers would hash wrong
(net/mse.py) is made again with a new key at once, over the same transport. Incoming
connections may be either (``open_incoming`` tells them apart).

Transports: TCP and uTP (``net.utp``, on the UDP port of the same number, shared
with the DHT), each unless the torrent's options turn it off. ``listen`` binds both
(one port number); a session runs the same over either. A dial tries uTP first for
a peer known to speak it (PEX flag, or a uTP session before) or when TCP is off,
else TCP first (no wait for a peer that speaks TCP only); whichever fails, the other
is tried, and so is uTP when a TCP connection is dropped before the handshake (as
libtorrent with TCP off does). A peer whose uTP connect failed is dialed over TCP
from then on.

What it needs of its torrent is ``Dialer``; the torrent is also every session's
``peer.Swarm``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from typing import Awaitable, Callable, Container, Protocol

import trio

from torrentfs.core import wire
from torrentfs.core.address import unzoned_link_local, zoned
from torrentfs.core.admission import Replacer, Slot
from torrentfs.core.geometry import Geometry
from torrentfs.core.metainfo import Metainfo
from torrentfs.engine.membership import TWIN_REASON
from torrentfs.engine.options import TorrentOptions
from torrentfs.engine.swarms import swarm_hashes
from torrentfs.net.listen import WILDCARDS, open_listeners
from torrentfs.net.mse import MSEError, initiate, open_incoming
from torrentfs.net.peer import PeerSession, Swarm, connect, tune
from torrentfs.net.utp import UtpSocket

log = logging.getLogger("torrentfs.torrent")

WAKE_EVERY = 1.0           # the dialer looks at the candidates at least this often
LONG_SESSION = 60.0        # a session that lasted this long resets its address's back-off


@dataclass
class Candidate:
    """A peer address the torrent knows, and when to dial it next."""
    next_try: float = 0.0
    failures: int = 0
    banned: bool = False    # ourselves: never dialed again
    encrypt: bool | None = None  # dial with MSE (True), in plain (False); None: as the policy
    utp: bool | None = None  # speaks uTP: known (PEX flag, a session), failed, unknown
    swarm: bytes | None = None  # found only in a hybrid's v2 swarm: dialed naming that hash
    twin: bytes | None = None  # the peer id it answered with while we had a session to it


class Dialer(Swarm, Protocol):
    """What the connector needs of its torrent (``torrent.Torrent`` is the one)."""

    meta: Metainfo
    options: TorrentOptions
    geometry: Geometry
    peer_id: bytes
    sessions: dict[tuple[str, int], PeerSession]   # the open sessions, by address
    banned_ips: set[str]
    options: TorrentOptions


class Connector:
    """The torrent's candidates, dialing and sessions (see the module docstring)."""

    def __init__(self, torrent: Dialer, *, max_peers: int, shared=None,
                 utp: UtpSocket | None = None) -> None:
        self.torrent = torrent
        # The uTP socket: given (a running net.utp.UtpSocket, the DHT's or a watch
        # mount's), or ours once bound.
        self.utp = utp
        self._own_utp = False
        self._listeners: list = []
        self.max_peers = max_peers
        self.shared = shared              # multi.Shared, or None
        self.candidates: dict[tuple[str, int], Candidate] = {}
        self.connecting: set[tuple[str, int]] = set()  # addresses being dialed
        # Called with an address no transport could dial (engine/holepunch.py).
        self.on_unreachable: Callable[[tuple[str, int]], None] | None = None
        self.replacer = Replacer()   # who makes room for a peer dialing us when full
        self._wake = trio.Event()

    def add(self, addr: tuple[str, int], *, utp: bool | None = None,
            swarm: bytes | None = None) -> None:
        """Remember a peer address to dial (from a tracker, the user, ...); ``utp``
        True if it is known to speak uTP; ``swarm`` the info-hash it was found under
        when not the torrent's own (a hybrid's v2 one: ``swarms``)."""
        addr = (str(addr[0]), int(addr[1]))
        if unzoned_link_local(addr[0]):
            return  # fe80:: passed on (PEX) names no link of ours: LSD finds it zoned
        cand = self.candidates.get(addr)
        if cand is None:
            self.candidates[addr] = Candidate(utp=utp, swarm=swarm)
            self._wake.set()
        elif swarm is None:
            cand.swarm = None  # in the torrent's own swarm too: named by its own hash

    def wake(self) -> None:
        """A session ended: there may be room to dial another."""
        self._wake.set()

    @property
    def connections(self) -> int:
        """Sessions open and dials under way."""
        return len(self.torrent.sessions) + len(self.connecting)

    def room(self, pending: int = 0) -> bool:
        """Room for one more connection besides ``pending`` ones being made: under
        ``max_peers``, and under the cap shared with the other torrents of a
        multi-torrent mount (``multi.Shared.room``)."""
        if len(self.torrent.sessions) + pending >= self.max_peers:
            return False
        return self.shared is None or self.shared.room()

    def dial_room(self, pending: int = 0) -> bool:
        """Room to dial one more peer besides ``pending`` dials: as ``room``, but the
        last tenth of ``max_peers`` (from 10 up) is left to peers that dial us. A full
        torrent replaces a session for a peer that dials it (``_make_room``); the peer
        replaced, one short of full, would dial at once, find another full peer and
        replace one of its sessions, and so on around a swarm larger than
        ``max_peers`` (measured: 64 nodes, 342 replacements in the minute after all
        had joined). Short by less than a tenth, it waits to be dialed instead."""
        reserve = self.max_peers // 10 if self.max_peers >= 10 else 0
        if len(self.torrent.sessions) + pending >= self.max_peers - reserve:
            return False
        return self.room(pending)

    def _slots(self) -> list[Slot]:
        return [Slot(s, s.connected_at, s.last_block, not s.am_choking,
                     s.source == "origin")
                for s in self.torrent.sessions.values() if not s.closed]

    def admissible(self, addr: tuple[str, int]) -> bool:
        """Whether a peer dialing us from ``addr`` would be taken (``accept``): not
        banned, not connected at that address, and room for it or a session that
        could make room (``core/admission.py``)."""
        t = self.torrent
        if addr in t.sessions or addr[0] in t.banned_ips:
            return False
        return self.room() or self.replacer.possible(self._slots(), trio.current_time())

    def _make_room(self, addr: tuple[str, int]) -> bool:
        """Close the session a newcomer from ``addr`` replaces; False if none may be."""
        now = trio.current_time()
        victim = self.replacer.victim(self._slots(), now)
        if victim is None:
            return False
        self.replacer.replaced(now)
        log.info("%r replaced by %s:%d: %d peers at most", victim, *addr[:2],
                 self.max_peers)
        victim.close(f"replaced by a peer that found no room ({self.max_peers} peers at most)")
        return True

    def starved(self, now: float) -> bool:
        """No room, while some address is due to be dialed."""
        sessions = self.torrent.sessions
        return not self.room() and any(
            c.next_try <= now and not c.banned and a not in sessions
            for a, c in self.candidates.items())

    async def bind(self, port: int, host: str) -> int:
        """Bind TCP and uTP (as the options allow) on ``port`` (0: any free); returns
        the port bound; ``serve`` then accepts. Raises OSError if TCP (or, with TCP
        off, uTP) cannot be bound; uTP's UDP port taken only turns uTP off."""
        options = self.torrent.options
        self._listeners = []
        if options.tcp:  # IPv4 and IPv6 on one port unless a host is named
            self._listeners = await open_listeners(port, host)
            port = self._listeners[0].socket.getsockname()[1]
        accept_utp = self.handle_incoming_utp
        if options.utp and self.utp is not None:
            self.utp.accept = accept_utp
        elif options.utp:  # uTP: IPv4 and IPv6 (one socket) unless a host is named
            sock = UtpSocket(host=None if host in WILDCARDS else host, port=port,
                             accept=accept_utp)
            try:
                sock.bind()
            except OSError as e:
                if not options.tcp:
                    raise
                log.warning("uTP off: cannot bind UDP port %d: %s", port, e.strerror)
            else:
                self.utp, port = sock, sock.port
                self._own_utp = True
        return port

    async def serve(self, nursery: trio.Nursery) -> None:
        """Accept peers on what ``bind`` bound, in ``nursery``."""
        if self._listeners:
            nursery.start_soon(trio.serve_listeners, self.handle_incoming, self._listeners)
        if self._own_utp:
            await nursery.start(self.utp.run)

    # -- dialing ---------------------------------------------------------------------

    async def run(self) -> None:
        """Dial the candidates due while there is room, until cancelled."""
        t = self.torrent
        async with trio.open_nursery() as nursery:
            while True:
                now = trio.current_time()
                nearby = getattr(t, "nearby", None)  # --prefer-subnet: local ones first
                order = nearby.dial_order(list(self.candidates)) if nearby else self.candidates
                reached = live = None
                for addr in order:
                    cand = self.candidates[addr]
                    if not self.dial_room(len(self.connecting)):
                        break
                    if (cand.banned or addr[0] in t.banned_ips or cand.next_try > now
                            or addr in t.sessions
                            or addr in self.connecting):
                        continue
                    if cand.twin is not None:
                        if live is None:
                            live = {s.peer_id for s in t.sessions.values() if not s.closed}
                        if cand.twin in live:
                            continue  # another address of a peer we have a session with
                    if reached is None:
                        reached = self._reached()
                    if addr in reached:
                        continue
                    self.connecting.add(addr)
                    nursery.start_soon(self._dial, addr, cand)
                self._wake = trio.Event()
                with trio.move_on_after(WAKE_EVERY):
                    await self._wake.wait()

    def _reached(self) -> Container[tuple[str, int]]:
        """The listen addresses of the peers connected to us (their extension
        handshakes name their ports): dialing one would only make a twin connection,
        refused after both handshakes ("already connected to this peer"), and again
        at each retry. In a cluster every pair did that, every node dialing the
        ones that had dialed it once PEX named them."""
        ext = getattr(self.torrent, "ext", None)
        return ext.endpoints() if ext is not None else ()

    async def _dial(self, addr: tuple[str, int], cand: Candidate) -> None:
        policy = self.torrent.options.encryption
        encrypt = policy == "require" or (policy == "prefer" and bool(cand.encrypt))
        session = None
        try:
            try:
                stream, transport = await self._open(addr, cand)
            except OSError as e:
                cand.failures += 1
                cand.next_try = trio.current_time() + min(15 * 2 ** cand.failures, 600)
                log.debug("connect %s:%d failed: %s", *addr, e)
                if self.on_unreachable is not None:
                    self.on_unreachable(addr)
                return
            if encrypt:
                # A TCP peer dropping the encrypted handshake may only refuse TCP
                # (libtorrent with TCP off does that): uTP is tried below before
                # the candidate is judged.
                utp_next = transport == "tcp" and self._utp_untried(cand)
                stream = await self._encrypt(stream, addr, cand, settle=not utp_next,
                                             reopen=self._reopener(addr, transport))
                if stream is None and not utp_next:
                    return
        finally:
            self.connecting.discard(addr)
        if stream is not None and addr in self.torrent.sessions:
            # The peer reached us first at this very address (uTP: one port both ways).
            with trio.CancelScope(shield=True):
                await stream.aclose()
            cand.next_try = trio.current_time() + 15 * 2 ** min(cand.failures, 5)
            return
        if stream is not None:
            session = await self.attach(stream, addr, transport=transport)
            if session.peer_id is None and not encrypt and policy == "prefer":
                # Closed before its handshake: it may want encryption. Try that at
                # once (before uTP below: a peer requiring encryption is the commoner
                # case); and next time, after the usual wait, if plain text was
                # dialed because an encrypted dial had failed (a peer refusing
                # plain text must not be left to it for good on one bad handshake).
                first = cand.encrypt is None
                cand.encrypt = True
                if first:
                    cand.next_try = trio.current_time()
                    self._wake.set()
                    return
        if ((session is None or session.peer_id is None and session.transport == "tcp")
                and self._utp_untried(cand)):
            # TCP taken, then dropped before the handshake, encrypted or not as the
            # policy allows: the peer may speak uTP only; try it at once.
            self.connecting.add(addr)
            try:
                stream = await self.utp.connect(addr)
            except OSError:
                cand.utp = False
            else:
                cand.utp = True
            finally:
                self.connecting.discard(addr)
            if cand.utp:
                stream = (await self._encrypt(stream, addr, cand,
                                              reopen=self._reopener(addr, "utp"))
                          if encrypt else stream)
                if stream is None:
                    return
                session = await self.attach(stream, addr, transport="utp")
        if session is None:   # encrypted over TCP failed, and no uTP either
            if policy == "prefer":
                cand.encrypt = False   # plain text from now on
            cand.failures += 1
            cand.next_try = trio.current_time() + min(15 * 2 ** cand.failures, 600)
            return
        # A peer reached at another of its addresses (IPv4 and IPv6, the tracker's
        # and LSD's) answers here too, and is refused as a twin: not dialed here
        # again while that session lasts (each twin costs both ends a handshake).
        cand.twin = (session.peer_id if session.close_reason == TWIN_REASON else None)
        if session.connected_at and trio.current_time() - session.connected_at > LONG_SESSION:
            cand.failures = 0
        cand.next_try = trio.current_time() + 15 * 2 ** min(cand.failures, 5)
        cand.failures += 1

    def _reopener(self, addr: tuple[str, int],
                  transport: str) -> Callable[[], Awaitable[trio.abc.Stream]]:
        """Dials ``addr`` again over ``transport``."""
        if transport == "utp":
            assert self.utp is not None
            return partial(self.utp.connect, addr)
        return partial(connect, addr)

    def _utp_untried(self, cand: Candidate) -> bool:
        """Whether uTP may be tried with a candidate not yet known to speak it."""
        return cand.utp is None and self.torrent.options.utp and self.utp is not None

    async def _encrypt(self, stream: trio.abc.Stream, addr: tuple[str, int],
                       cand: Candidate, *, settle: bool = True,
                       reopen: Callable[[], Awaitable[trio.abc.Stream]] | None = None
                       ) -> trio.abc.Stream | None:
        """``stream`` with the MSE/PE handshake done (net/mse.py; over a new stream
        from ``reopen`` if the first shared secret was one some peers hash wrong),
        or None (closed, and, if ``settle``, the candidate's next try set) if it
        failed."""
        policy = self.torrent.options.encryption
        try:
            stream = await initiate(stream, cand.swarm or self.torrent.meta.info_hash,
                                    require=policy == "require", reopen=reopen)
        except (MSEError, trio.TooSlowError, trio.BrokenResourceError,
                trio.ClosedResourceError, OSError) as e:
            with trio.CancelScope(shield=True):
                await stream.aclose()
            log.debug("encrypted handshake with %s:%d failed: %s", *addr, e)
            if not settle:
                return None
            if policy == "prefer":
                cand.encrypt = False   # plain text from now on
            cand.failures += 1
            cand.next_try = trio.current_time() + min(15 * 2 ** cand.failures, 600)
            return None
        log.info("encrypted connection to %s:%d (%s)", *addr,
                 "RC4" if stream.encrypted else "plaintext selected")
        return stream

    async def _open(self, addr: tuple[str, int],
                    cand: Candidate) -> tuple[trio.abc.Stream, str]:
        """A stream to ``addr`` over TCP or uTP (see the module docstring), and which."""
        options = self.torrent.options
        use_utp = options.utp and self.utp is not None and (
            cand.utp is not False or not options.tcp)
        order = []
        if options.tcp:
            order.append("tcp")
        if use_utp:
            order.insert(0 if cand.utp or not options.tcp else len(order), "utp")
        error: OSError = OSError("no transport to dial with")
        for transport in order:
            try:
                if transport == "tcp":
                    return await connect(addr), transport
                stream = await self.utp.connect(addr)
                cand.utp = True
                return stream, transport
            except OSError as e:
                error = e
                if transport == "utp" and cand.utp is None:
                    cand.utp = False
        raise error

    # -- sessions --------------------------------------------------------------------

    def _new_session(self, stream, addr, *, outgoing: bool, transport: str) -> PeerSession:
        t = self.torrent
        ours, also = t.meta.info_hash, None if t.meta.v2 is None else t.meta.v2.info_hash[:20]
        cand = self.candidates.get(addr) if outgoing else None
        if cand is not None and cand.swarm is not None and cand.swarm == also:
            ours, also = also, ours  # a peer of the v2 swarm only: named by that hash
        conn = wire.PeerConnection(ours, t.peer_id, num_pieces=t.geometry.num_pieces,
                                   v2=t.meta.v2 is not None, also_info_hash=also)
        session = PeerSession(t, stream, addr, conn, outgoing=outgoing)
        session.transport = transport
        if transport == "utp":
            log.info("%r over uTP (%s)", session, "outgoing" if outgoing else "incoming")
        return session

    async def attach(self, stream: trio.abc.Stream, addr: tuple[str, int], *,
                     transport: str = "tcp") -> PeerSession:
        """Run a peer session we started over ``stream`` (any trio stream; over
        ``transport``, "tcp" or "utp") until it ends; returns it, closed."""
        session = self._new_session(stream, addr, outgoing=True, transport=transport)
        if addr in self.torrent.sessions:
            # Never replace a session in ``sessions`` (an incoming one over uTP has
            # this very address): the one replaced would run on unseen, never
            # scheduled, its requests never served.
            session.close("already connected at this address")
        else:
            self.torrent.sessions[addr] = session
        await session.run()
        return session

    async def handle_incoming(self, stream: trio.SocketStream) -> None:
        """A connection to our listener (``trio.serve_listeners``): plain or
        encrypted, as the policy allows."""
        try:
            host, port, *rest = stream.socket.getpeername()
            host = zoned(host, rest[1] if len(rest) > 1 else 0)  # fe80::1%2: as LSD has it
        except OSError:
            await stream.aclose()
            return
        if not self.admissible((host, port)):
            await self._refuse(stream, (host, port))
            return
        try:
            tune(stream)
        except OSError:
            pass
        stream = await self._open_incoming(stream, (host, port))
        if stream is not None:
            await self.accept(stream, (host, port))

    async def handle_incoming_utp(self, stream: trio.abc.Stream, addr: tuple[str, int]) -> None:
        """A uTP connection a peer made to our UDP port: plain or encrypted, as the
        policy allows."""
        if not self.admissible(addr):
            await self._refuse(stream, addr)
            return
        stream = await self._open_incoming(stream, addr)
        if stream is not None:
            await self.accept(stream, addr, transport="utp")

    async def _refuse(self, stream: trio.abc.Stream, addr: tuple[str, int]) -> None:
        """Close a connection ``accept`` would refuse before reading its handshake
        (an encrypted one would cost a Diffie-Hellman for nothing)."""
        log.debug("incoming %s:%d refused: %s", *addr[:2],
                  "no room" if addr[0] not in self.torrent.banned_ips else "banned")
        with trio.CancelScope(shield=True):
            await stream.aclose()

    async def _open_incoming(self, stream: trio.abc.Stream,
                             addr: tuple[str, int]) -> trio.abc.Stream | None:
        """The incoming ``stream``, decrypted if its peer speaks MSE/PE (net/mse.py
        tells the two apart), or None (closed) if the policy refuses it or the
        handshake fails."""
        hashes = list(swarm_hashes(self.torrent.meta))  # a hybrid's v2 swarm too
        try:
            incoming = await open_incoming(stream, hashes, self.torrent.options.encryption)
        except (MSEError, trio.TooSlowError, trio.BrokenResourceError,
                trio.ClosedResourceError, OSError) as e:
            log.debug("incoming %s:%d refused: %s", *addr[:2], e)
            with trio.CancelScope(shield=True):
                await stream.aclose()
            return None
        if incoming.encrypted:
            log.info("encrypted connection from %s:%d (%s)", *addr[:2],
                     "RC4" if incoming.stream.encrypted else "plaintext selected")
        return incoming.stream

    async def accept(self, stream: trio.abc.Stream, addr: tuple[str, int], *,
                     transport: str = "tcp") -> None:
        """Run a session a peer started over ``stream`` (over ``transport``) until it
        ends, unless the peer is banned, connected at this address already, or finds
        no room and no session may be replaced to make it (``_make_room``)."""
        t = self.torrent
        if (addr in t.sessions or addr[0] in t.banned_ips
                or not self.room() and not self._make_room(addr)):
            with trio.CancelScope(shield=True):
                await stream.aclose()
            return
        session = self._new_session(stream, addr, outgoing=False, transport=transport)
        t.sessions[addr] = session
        await session.run(send_handshake=False)
