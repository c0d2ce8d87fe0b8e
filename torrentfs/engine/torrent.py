"""One torrent, live: its swarm of peers, its picker, its storage, and reads.

``Torrent.run`` opens storage, starts the listener, the tracker announcer, the peer
connector and a once-a-second ticker, signals readiness, and serves until cancelled;
on the way out it tells trackers ``stopped`` and saves the resume file.

``Torrent.read(file_index, offset, size)`` is the read path: it maps the range to
pieces, raises the missing ones to NOW in the picker, wakes every unchoked peer to
request blocks, waits for the pieces to be verified, then reads the bytes from disk.
Only verified pieces are ever read or uploaded: a piece's blocks are gathered in
memory, hashed in a worker thread, and written only if the hash matches.

Web seeds (``httpseed.py``) are picker keys like sessions: ``schedule`` lets them
pick, their blocks come in through ``got_block`` as a peer's do, and ``ban`` drops
one that sent bad data.

Invariants (the picker holds the block-level ones):
* ``have`` is exactly the set of pieces verified and on disk.
* a piece being hashed is in ``_verifying`` and is not downloaded again meanwhile.
* every open session is in ``sessions`` and in the picker; a closed one is in neither.
* a piece being read or uploaded is pinned in the disk cache (``diskcache``): it
  stays in ``have`` and on disk until the bytes are out.
* no session gets past its handshake with a banned address or peer id (``ban``: bad
  data, attributed by ``blame.Blame``).
"""

from __future__ import annotations

import logging
import math
import os
import secrets
from collections import OrderedDict
from dataclasses import dataclass

import trio

from torrentfs import __version__
from torrentfs.core import wire
from torrentfs.core.bitfield import Bitfield
from torrentfs.core.blame import Blame
from torrentfs.core.choker import Choker, PeerView
from torrentfs.core.geometry import Geometry
from torrentfs.core.picker import NOW, READAHEAD, Picker
from torrentfs.core.ratelimit import TokenBucket
from torrentfs.core.readahead import Readahead
from torrentfs.disk.cache import DiskCache
from torrentfs.disk.storage import Storage, StorageError
from torrentfs.engine.peerext import PeerExtensions
from torrentfs.engine.upload import Uploader
from torrentfs.net.lsd import LsdService
from torrentfs.net.peer import PeerSession, connect, tune
from torrentfs.net.tracker import Announcer
from torrentfs.net.webseed import WebSeed, WebSeeds

log = logging.getLogger("torrentfs.torrent")

PIPELINE_MIN, PIPELINE_MAX = 16, 256  # block requests outstanding per peer ...
PIPELINE_SECONDS = 1.0      # ... sized to about this long at the peer's rate
NOW_SLACK = 0.05            # deadline of a piece a read waits on: now + this
READAHEAD_MIN = 2 << 20     # readahead window after a seek, bytes
READAHEAD_MAX = 32 << 20    # the window doubles on each contiguous read up to this
READAHEAD_DEADLINE = 0.5    # deadline of the first readahead piece: now + this ...
READAHEAD_STEP = 0.05       # ... and this much later for each piece after it
RECENT_BYTES = 40 << 20     # verified pieces kept in memory until first read
SNUB_AFTER = 20.0           # an unchoked peer that sends no block for this long is snubbed
LEECHER_JITTER = 10.0       # among leechers, readahead order is shuffled over this many s
SPREAD_MAX = 4              # a NOW piece's blocks are split over up to this many peers
USELESS_AFTER = 60.0        # neither side interested this long: drop it when slots are full


class ReadTimeout(Exception):
    """A read made no progress for ``read_timeout`` seconds."""


def make_peer_id() -> bytes:
    """An Azureus-style peer id: ``-TF0100-`` and 12 random bytes."""
    major, minor, *_ = (__version__.split(".") + ["0", "0"])
    return f"-TF{int(major):02d}{int(minor):02d}-".encode() + secrets.token_bytes(12)


@dataclass
class _Candidate:
    next_try: float = 0.0
    failures: int = 0
    banned: bool = False


class ReadHandle:
    """An open file. Its reads move a readahead window (``readahead.Readahead``),
    whose pieces it raises to READAHEAD, earlier pieces first; pieces that fall out
    of the window are dropped again, and requests for them cancelled. Its raises
    are its own: ``close`` drops them all."""

    def __init__(self, torrent: "Torrent", file_index: int) -> None:
        self.torrent = torrent
        self.file_index = file_index
        self.readahead = Readahead(READAHEAD_MIN, torrent.readahead_max)
        self._raised: set[int] = set()
        # Container indexes often sit at the end of a video file: fetch the first
        # and last pieces soon after open, at readahead priority.
        g = torrent.geometry
        edge = list(g.file_pieces(file_index, 0, 1))
        length = g.file_lengths[file_index]
        if length:
            edge += g.file_pieces(file_index, length - 1, 1)
        self._raise([i for i in dict.fromkeys(edge) if i not in torrent.have])

    def advance(self, offset: int, size: int) -> None:
        """A read of ``[offset, offset+size)`` happened: move the readahead window."""
        t = self.torrent
        start, length = self.readahead.advance(offset, size)
        window = t.geometry.file_pieces(self.file_index, start, length)
        current = set(window)
        stale = [i for i in self._raised if i not in current]
        if stale:
            self._raised.difference_update(stale)
            t.picker.drop(self, stale)
            t.cancel_unwanted(stale)
        self._raise([i for i in window if i not in self._raised and i not in t.have])

    def _raise(self, pieces: list[int]) -> None:
        if not pieces:
            return
        t = self.torrent
        now = trio.current_time()
        for rank, i in enumerate(pieces):
            t.picker.raise_priority(self, (i,), READAHEAD, now + READAHEAD_DEADLINE
                                    + READAHEAD_STEP * rank)
        self._raised.update(pieces)
        t.schedule()

    def close(self) -> None:
        t = self.torrent
        t.picker.drop(self)
        t.cancel_unwanted(self._raised)
        self._raised.clear()


class Torrent:
    def __init__(self, meta, folder: str | os.PathLike, *, peer_id: bytes | None = None,
                 port: int = 0, listen_host: str = "0.0.0.0", peers=(),
                 prefetch: bool = False, max_peers: int = 50,
                 read_timeout: float | None = None, announce: bool = True,
                 listen: bool = True, offload=trio.to_thread.run_sync,
                 data_dir=None, seed_only: bool = False, check_progress=None,
                 upload_rate: float | None = None, download_rate: float | None = None,
                 choker: Choker | None = None, cache_size: int | None = None,
                 lsd: bool = False, pex: bool = True, web_seeds=None,
                 http_transport=None, shared=None) -> None:
        self.meta = meta
        self.geometry = Geometry(meta.piece_length, tuple(f.length for f in meta.files))
        # seed_only: serve the data in data_dir as it is (verified at start), never
        # downloading or writing; otherwise a cache that fills as pieces are read.
        self.seed_only = seed_only
        self.check_progress = check_progress
        self.storage = Storage(folder, meta, self.geometry, data_dir=data_dir,
                               readonly=seed_only)
        self.have = Bitfield(self.geometry.num_pieces)
        self.peer_id = peer_id or make_peer_id()
        self.picker = Picker(self.geometry, self.have, prefetch=prefetch,
                             salt=int.from_bytes(self.peer_id[-4:], "big"),
                             jitter=LEECHER_JITTER)
        self.port = port
        self.listen_host = listen_host
        self.max_peers = max_peers
        self.read_timeout = read_timeout
        self.listen = listen
        # How blocking storage work runs: in a worker thread (tests may run it inline).
        self._offload = offload
        self.sessions: dict[tuple[str, int], PeerSession] = {}
        self._connecting: set[tuple[str, int]] = set()
        self.candidates: dict[tuple[str, int], _Candidate] = {}
        self._buffers: dict[int, bytearray] = {}
        self._recent: OrderedDict[int, bytearray] = OrderedDict()  # verified, in memory
        self._recent_bytes = 0
        self._events: dict[int, trio.Event] = {}
        self._verifying: set[int] = set()
        # Peers that sent bad data are banned for the session, by address and peer id.
        self.blame = Blame(self.geometry)
        self.banned_ips: set[str] = set()
        self._banned_ids: set[bytes] = set()
        self._hash_limiter = trio.CapacityLimiter(max(1, (os.cpu_count() or 2)))
        self.choker = choker or Choker()
        # Issue 7 hook (multi.py): the torrents of a multi-torrent mount share their
        # rate limits and a cap on connections (``multi.Shared``).
        self.shared = shared
        self.uploads = Uploader(self, shared.upload if shared else TokenBucket(upload_rate))
        self.download_limit = (shared.download if shared  # applied by each PeerSession
                               else TokenBucket(download_rate))
        self.cache = DiskCache(self, cache_size)
        # The readahead window must fit the disk cache, or it evicts its own pieces.
        self.readahead_max = READAHEAD_MAX if cache_size is None else max(
            READAHEAD_MIN, min(READAHEAD_MAX, cache_size // 2))
        self._store_errors: dict[int, OSError] = {}  # piece -> why it could not be written
        self._wake_connector = trio.Event()
        self._spread = 1  # peers unchoking us (up to SPREAD_MAX): urgent pieces split this way
        self.downloaded = 0
        self.wasted = 0
        self.announcer = Announcer(
            [list(t) for t in meta.announce_list] if announce else [],
            meta.info_hash, self.peer_id, lambda: self.port,
            self._announce_stats, self._on_tracker_peers)
        # Discovery hook (issue 6): local service discovery, never for private torrents.
        self.lsd = (LsdService(meta.info_hash, lambda: self.port, self.add_peer)
                    if lsd and not meta.private else None)
        # Status hook (issue 7): reads waiting for pieces (for ``status()``), and who
        # hears of a piece arriving or leaving (the FUSE layer's st_blocks).
        self.waiting_reads: dict[object, tuple[float, list[int]]] = {}
        self.piece_listeners: list = []  # callables taking a piece index
        # Web seeds hook (issue 7, BEP 19): the torrent's url-list unless given.
        self.webseeds = WebSeeds(self, meta.url_list if web_seeds is None else web_seeds,
                                 http_transport)
        self._nursery: trio.Nursery | None = None
        # BEP 10 extensions (metadata serving, PEX): hooks in on_handshake,
        # on_peer_closed, _on_Extended and _ticker.
        self.ext = PeerExtensions(self, pex_enabled=pex and not meta.private)
        for addr in peers:
            self.add_peer(addr)

    # -- life cycle -----------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve the torrent until cancelled. Ready (``task_status.started``) once
        storage is open and the listener is bound."""
        await self._offload(self.storage.open)
        if self.seed_only:
            resumed = await self._offload(self.storage.check, self.check_progress)
            log.info("verified %d of %d pieces in %s", resumed.count, self.have.size,
                     self.storage.data_dir)
            self.cache.trust_all(resumed)
        else:
            resumed = await self.cache.load()
            if resumed.count:
                log.info("resumed %d of %d verified pieces", resumed.count, self.have.size)
        for i in resumed:
            self.picker.piece_verified(i)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self.listen:
                    listeners = await trio.open_tcp_listeners(self.port, host=self.listen_host)
                    self.port = listeners[0].socket.getsockname()[1]
                    log.info("listening on port %d", self.port)
                    nursery.start_soon(trio.serve_listeners, self._handle_incoming, listeners)
                nursery.start_soon(self._connector)
                nursery.start_soon(self._ticker)
                nursery.start_soon(self.uploads.run)
                if not self.seed_only:
                    nursery.start_soon(self.cache.run)
                await nursery.start(self.announcer.run)
                if self.lsd is not None:
                    await nursery.start(self.lsd.run)
                await nursery.start(self.webseeds.run)
                task_status.started()
        finally:
            log.info("totals: downloaded %d bytes, uploaded %d, wasted %d; %d of %d "
                     "pieces verified", self.downloaded, self.uploaded, self.wasted,
                     self.have.count, self.have.size)
            with trio.CancelScope(shield=True):
                await self._offload(self._save_resume_and_close)

    def _save_resume_and_close(self) -> None:
        try:
            if not self.seed_only:
                self.storage.save_resume(self.have)
        except OSError as e:
            log.warning("could not save resume state: %s", e)
        self.storage.close()

    # -- peers: discovery and connections ------------------------------------------

    def add_peer(self, addr: tuple[str, int]) -> None:
        """Remember a peer address to connect to (from a tracker or the user)."""
        addr = (str(addr[0]), int(addr[1]))
        if addr not in self.candidates:
            self.candidates[addr] = _Candidate()
            self._wake_connector.set()

    def room_for_peer(self, pending: int = 0) -> bool:
        """Room for one more connection besides ``pending`` ones being made: under
        ``max_peers``, and under the cap shared with the other torrents of a
        multi-torrent mount (issue 7 hook, ``multi.Shared.room``)."""
        if len(self.sessions) + pending >= self.max_peers:
            return False
        return self.shared is None or self.shared.room()

    def _on_tracker_peers(self, peers: list[tuple[str, int]]) -> None:
        for addr in peers:
            self.add_peer(addr)

    def _announce_stats(self) -> tuple[int, int, int]:
        left = self.geometry.total_length - sum(
            self.geometry.piece_size(i) for i in self.have) if not self.have.complete else 0
        return self.uploaded, self.downloaded, left

    async def _connector(self) -> None:
        while True:
            now = trio.current_time()
            for addr, cand in list(self.candidates.items()):
                if not self.room_for_peer(len(self._connecting)):
                    break
                if (cand.banned or addr[0] in self.banned_ips or cand.next_try > now
                        or addr in self.sessions
                        or addr in self._connecting):
                    continue
                self._connecting.add(addr)
                self._nursery.start_soon(self._connect, addr, cand)
            self._wake_connector = trio.Event()
            with trio.move_on_after(1.0):
                await self._wake_connector.wait()

    async def _connect(self, addr: tuple[str, int], cand: _Candidate) -> None:
        try:
            try:
                stream = await connect(addr)
            except OSError as e:
                cand.failures += 1
                cand.next_try = trio.current_time() + min(15 * 2 ** cand.failures, 600)
                log.debug("connect %s:%d failed: %s", *addr, e)
                return
        finally:
            self._connecting.discard(addr)
        session = await self.attach(stream, addr)
        if session.connected_at and trio.current_time() - session.connected_at > 60:
            cand.failures = 0
        cand.next_try = trio.current_time() + 15 * 2 ** min(cand.failures, 5)
        cand.failures += 1

    def _new_session(self, stream, addr, *, outgoing: bool) -> PeerSession:
        conn = wire.PeerConnection(self.meta.info_hash, self.peer_id,
                                   num_pieces=self.geometry.num_pieces)
        return PeerSession(self, stream, addr, conn, outgoing=outgoing)

    async def attach(self, stream: trio.abc.Stream, addr: tuple[str, int]) -> PeerSession:
        """Run a peer session we started over ``stream`` (any trio stream) until it
        ends; returns it, closed."""
        session = self._new_session(stream, addr, outgoing=True)
        self.sessions[addr] = session
        await session.run()
        return session

    async def _handle_incoming(self, stream: trio.SocketStream) -> None:
        try:
            host, port, *_ = stream.socket.getpeername()
        except OSError:
            await stream.aclose()
            return
        try:
            tune(stream)
        except OSError:
            pass
        await self.accept(stream, (host, port))

    async def accept(self, stream: trio.abc.Stream, addr: tuple[str, int]) -> None:
        """Run a session a peer started over ``stream`` until it ends, unless the peer
        is banned or there is no room."""
        if (not self.room_for_peer() or addr in self.sessions
                or addr[0] in self.banned_ips):
            with trio.CancelScope(shield=True):
                await stream.aclose()
            return
        session = self._new_session(stream, addr, outgoing=False)
        self.sessions[addr] = session
        await session.run(send_handshake=False)

    # -- session callbacks (peer.Swarm) ---------------------------------------------

    def on_handshake(self, s: PeerSession) -> bool:
        if s.peer_id == self.peer_id:
            s.close_reason = "connected to ourselves"
            if s.outgoing and s.addr in self.candidates:
                self.candidates[s.addr].banned = True
            return False
        if s.peer_id in self._banned_ids or s.addr[0] in self.banned_ips:
            s.close_reason = "banned peer"
            return False
        if any(o is not s and o.peer_id == s.peer_id and not o.closed
               for o in self.sessions.values()):
            s.close_reason = "already connected to this peer"
            return False
        self.picker.add_peer(s)
        s.registered = True
        if s.fast and self.have.complete:
            s.send(wire.HaveAll())
        elif s.fast and not self.have.count:
            s.send(wire.HaveNone())
        elif self.have.count:
            s.send(wire.Bitfield(self.have.to_bytes()))
        self.ext.greet(s)
        log.info("connected to %r (%s)", s, "out" if s.outgoing else "in")
        return True

    def on_peer_closed(self, s: PeerSession) -> None:
        if self.sessions.get(s.addr) is s:
            del self.sessions[s.addr]
        if s.registered:
            self.picker.remove_peer(s)
            s.registered = False
        s.queued.clear()
        s.upload_fifo.clear()
        self.ext.peer_closed(s)
        self._wake_connector.set()
        self.schedule()

    def on_message(self, s: PeerSession, msg: wire.Message) -> None:
        handler = getattr(self, "_on_" + type(msg).__name__, None)
        if handler is not None:
            handler(s, msg)

    def _on_Bitfield(self, s: PeerSession, msg: wire.Bitfield) -> None:
        self.picker.got_bitfield(s, Bitfield.from_bytes(msg.bits, self.geometry.num_pieces))
        self._update_interest(s)

    def _on_HaveAll(self, s: PeerSession, msg) -> None:
        self.picker.got_have_all(s)
        self._update_interest(s)

    def _on_Have(self, s: PeerSession, msg: wire.Have) -> None:
        self.picker.got_have(s, msg.index)
        if not s.am_interested and msg.index not in self.have and not self.seed_only:
            s.send(wire.Interested())
        if not s.peer_choking:
            if not self.picker.is_seed(s):
                # A fellow leecher has it: spare the seeds (an origin is often the
                # scarce upload), cancelling what they have not sent yet.
                for seed, begin, length in self.picker.spare_seeds(msg.index):
                    seed.send(wire.Cancel(msg.index, begin, length))
            self._fill(s)

    def _on_Unchoke(self, s: PeerSession, msg) -> None:
        self._count_spread()
        self._fill(s)

    def _count_spread(self) -> None:
        n = sum(1 for p in self.sessions.values() if not p.peer_choking and p.registered)
        n += self.webseeds.up_count()
        self._spread = max(1, min(SPREAD_MAX, n))

    def _on_Choke(self, s: PeerSession, msg) -> None:
        self._count_spread()
        if not s.fast:  # with BEP 6 the peer rejects each request explicitly
            self.picker.peer_choked(s)
            self.schedule()

    def _on_Reject(self, s: PeerSession, msg: wire.Reject) -> None:
        self.picker.request_dropped(s, msg.index, msg.begin)
        # Not refilled from this peer now (it would be asked the same again); the
        # ticker refills it, and other peers may take the block at once.
        self.schedule(skip=s)

    def _on_Piece(self, s: PeerSession, msg: wire.Piece) -> None:
        self.got_block(s, msg.index, msg.begin, msg.data)
        self._fill(s, batch=True)

    def got_block(self, s: PeerSession | WebSeed, index: int, begin: int, data) -> None:
        """A block arrived from a peer or a web seed: into its piece's buffer, the
        other holders cancelled; a complete piece goes to be verified."""
        n = len(data)
        got = self.picker.block_received(s, index, begin, n)
        if not got.new:
            self.wasted += n
            return
        buf = self._buffers.get(index)
        if buf is None:
            buf = self._buffers[index] = bytearray(self.geometry.piece_size(index))
        buf[begin:begin + n] = data
        self.downloaded += n
        for other in got.cancel:
            other.send(wire.Cancel(index, begin, n))
        if got.piece_complete:
            self._verifying.add(index)
            self._nursery.start_soon(self._verify, index)

    def _on_Extended(self, s: PeerSession, msg: wire.Extended) -> None:
        self.ext.on_extended(s, msg)

    def _on_Request(self, s: PeerSession, msg: wire.Request) -> None:
        self.uploads.request(s, msg)

    def _on_Cancel(self, s: PeerSession, msg: wire.Cancel) -> None:
        self.uploads.cancel(s, msg)

    def _on_Interested(self, s: PeerSession, msg) -> None:
        if self.have.count:
            self.rechoke()  # a free slot should not wait for the next round

    def _on_NotInterested(self, s: PeerSession, msg) -> None:
        if not s.am_choking:
            self.rechoke()

    # -- choking ----------------------------------------------------------------------

    @property
    def seeding(self) -> bool:
        return self.seed_only or self.have.complete

    def rechoke(self) -> None:
        """Run the choker over the registered peers and send what it decides."""
        now = trio.current_time()
        views = [PeerView(s, s.peer_interested, s.am_choking, s.down.rate(now),
                          s.up.rate(now), s.snubbed, s.connected_at)
                 for s in self.sessions.values() if s.registered and not s.closed]
        decision = self.choker.rechoke(views, now, self.seeding)
        for s in decision.choke:
            s.send(wire.Choke())
        for s in decision.unchoke:
            s.send(wire.Unchoke())

    # -- downloading ----------------------------------------------------------------

    def _update_interest(self, s: PeerSession) -> None:
        interesting = not self.seed_only and self.picker.is_interesting(s)
        if interesting and not s.am_interested:
            s.send(wire.Interested())
        elif not interesting and s.am_interested:
            s.send(wire.NotInterested())

    def _pipeline(self, s: PeerSession, now: float) -> int:
        """How many requests to keep outstanding with a peer: about PIPELINE_SECONDS
        of its measured rate, within bounds."""
        blocks = int(s.down.rate(now) * PIPELINE_SECONDS) // self.geometry.block_size
        return max(PIPELINE_MIN, min(PIPELINE_MAX, blocks))

    def _fill(self, s: PeerSession, batch: bool = False) -> None:
        """Top up the peer's request pipeline with the most urgent blocks it has.
        With ``batch``, only once it has drained to half (fewer, larger picks)."""
        if s.peer_choking or s.closed or not s.registered or self.seed_only:
            return
        now = trio.current_time()
        pipeline = self._pipeline(s, now)
        outstanding = self.picker.outstanding(s)
        if outstanding >= pipeline or (batch and outstanding > pipeline // 2):
            return
        for index, begin, length in self.picker.pick(s, now, pipeline - outstanding,
                                                      self._spread):
            s.send(wire.Request(index, begin, length))

    def cancel_unwanted(self, pieces) -> None:
        """Give up pieces in progress that nobody wants any more (a reader moved on):
        cancel their requests and free their buffers."""
        for index in pieces:
            cancels = self.picker.withdraw(index)
            if cancels is None:
                continue
            self._buffers.pop(index, None)
            for peer, begin, length in cancels:
                peer.send(wire.Cancel(index, begin, length))

    def schedule(self, skip: PeerSession | None = None) -> None:
        """Priorities changed or requests were freed: let every unchoked peer pick,
        fastest first, so urgent blocks go to the best peers."""
        now = trio.current_time()
        peers = sorted([*self.sessions.values(), *self.webseeds.active()],
                       key=lambda p: -p.down.rate(now))
        for s in peers:
            if s is skip:
                continue
            if isinstance(s, WebSeed):
                s.fill(now)
            else:
                self._fill(s)

    async def _verify(self, index: int) -> None:
        buf = self._buffers.pop(index)
        try:
            ok = await self.cache.store(index, buf)
        except OSError as e:
            log.error("cannot write piece %d: %s", index, e)
            ok = None
            # The reads waiting for it fail with this error rather than wait on.
            self._store_errors[index] = e
            event = self._events.pop(index, None)
            if event is not None:
                event.set()
        finally:
            self._verifying.discard(index)
        if ok:
            self._remember(index, buf)
            self.piece_on_disk(index)
        else:
            suppliers = self.picker.suppliers(index)
            self.picker.piece_failed(index)
            if ok is False:
                log.warning("piece %d failed its hash check (from %s)", index,
                            ", ".join(map(repr, set(suppliers.values()))) or "nobody")
                for peer in self.blame.piece_failed(index, buf, suppliers):
                    self.ban(peer, f"sent the only data of {self.blame.strikes[peer]} "
                             "pieces that failed their hash check")
        if ok:
            for peer in self.blame.piece_verified(index, buf):
                self.ban(peer, f"sent bad blocks of piece {index}")
        self.schedule()

    def piece_on_disk(self, index: int) -> None:
        """A verified piece is on disk: it is ours; wake its readers, tell the peers."""
        self.picker.piece_verified(index)
        self._store_errors.pop(index, None)
        event = self._events.pop(index, None)
        if event is not None:
            event.set()
        for listener in self.piece_listeners:
            listener(index)
        for s in list(self.sessions.values()):
            if s.registered:
                s.send(wire.Have(index))
                if self.have.complete and s.am_interested:
                    s.send(wire.NotInterested())
        if self.have.complete:
            log.info("all %d pieces verified", self.have.size)
            self.announcer.completed()

    def piece_gone(self, index: int) -> None:
        """A piece left the disk cache (evicted, or damaged): wanted again if read.
        Peers that have it may be interesting again (we cannot take a HAVE back;
        their requests for it are rejected)."""
        if index not in self.have:
            return
        self.picker.piece_lost(index)
        for listener in self.piece_listeners:
            listener(index)
        data = self._recent.pop(index, None)
        if data is not None:
            self._recent_bytes -= len(data)
        for s in list(self.sessions.values()):
            if s.registered and not s.am_interested:
                self._update_interest(s)

    def _remember(self, index: int, data: bytearray) -> None:
        """Keep a just-verified piece in memory: the next reads are likely in it."""
        self._recent[index] = data
        self._recent_bytes += len(data)
        while self._recent_bytes > RECENT_BYTES and len(self._recent) > 1:
            _, old = self._recent.popitem(last=False)
            self._recent_bytes -= len(old)

    def _read_recent(self, start: int, size: int, pieces: range) -> bytes | memoryview | None:
        """The bytes from memory if every piece of the range is there, else None.
        A piece read to its end is let go: the kernel's page cache serves it again
        (``keep_cache``), so memory holds what readers have not reached yet."""
        recent = self._recent
        if not all(i in recent for i in pieces):
            return None
        g = self.geometry
        parts = []
        end = start + size
        for i in pieces:
            base = g.piece_offset(i)
            piece_end = base + g.piece_size(i)
            lo = max(start, base) - base
            hi = min(end, piece_end) - base
            parts.append(memoryview(recent[i])[lo:hi])
        # One piece: a view, no copy (pyfuse3 takes any buffer; the piece's bytearray
        # is never written again, and the view keeps it alive after it is let go).
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        for i in pieces:
            if end >= g.piece_offset(i) + g.piece_size(i):
                self._recent_bytes -= len(recent.pop(i))
        return data

    def ban(self, s: PeerSession | WebSeed, why: str) -> None:
        """Refuse the peer's address and peer id for the rest of the session, and
        drop every connection that has either. A web seed is given up."""
        if isinstance(s, WebSeed):
            s.drop(why)
            return
        ip = s.addr[0]
        if ip in self.banned_ips and s.peer_id in self._banned_ids:
            return
        log.warning("banned %r (peer id %r): %s", s, s.peer_id, why)
        self.banned_ips.add(ip)
        if s.peer_id:
            self._banned_ids.add(s.peer_id)
        for other in list(self.sessions.values()):
            if other.addr[0] == ip or (s.peer_id and other.peer_id == s.peer_id):
                other.close(f"banned: {why}")

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(1.0)
            now = trio.current_time()
            full = not self.room_for_peer() and any(
                c.next_try <= now and not c.banned and a not in self.sessions
                for a, c in self.candidates.items())
            for s in list(self.sessions.values()):
                s.keep_alive(now)
                if (not s.peer_choking and self.picker.outstanding(s)
                        and now - s.last_block > SNUB_AFTER):
                    if s.snubbed:  # and no block since: it only pretends to serve
                        s.close(f"sent no block for {2 * SNUB_AFTER:.0f} s of requests")
                        continue
                    log.info("%r snubbed us: its requests go to others", s)
                    self.picker.peer_choked(s)
                    s.snubbed = True
                    s.last_block = now
                if s.am_interested or s.peer_interested:
                    s.last_useful = now
                elif full and now - s.last_useful > USELESS_AFTER:
                    s.close("useless: neither side interested")  # room for another
            if self.choker.due(now):
                self.rechoke()
            self.ext.tick(now)
            self._count_spread()
            self.schedule()

    # -- uploading --------------------------------------------------------------------

    def on_drained(self, s: PeerSession) -> None:
        self.uploads.drained(s)

    @property
    def uploaded(self) -> int:
        return self.uploads.uploaded

    async def block(self, index: int, begin: int, length: int) -> bytes:
        """Bytes of a verified piece: from memory if it is still there, else from
        disk in a worker thread. Raises ``StorageError`` if the piece left the disk
        cache meanwhile (or failed its check there)."""
        piece = self._recent.get(index)
        if piece is not None:
            return bytes(memoryview(piece)[begin:begin + length])
        with self.cache.pinned((index,)):
            if index not in self.have or not await self.cache.trust((index,), False):
                raise StorageError(f"piece {index} is no longer in the cache")
            return await self._offload(self.storage.read,
                                       self.geometry.piece_offset(index) + begin, length)

    # -- the read path ----------------------------------------------------------------

    def open_handle(self, file_index: int) -> ReadHandle:
        return ReadHandle(self, file_index)

    async def read(self, file_index: int, offset: int, size: int,
                   handle: ReadHandle | None = None) -> bytes | memoryview:
        """Bytes ``[offset, offset+size)`` of a file (short at its end), once every
        piece they touch is verified. Raises ``ReadTimeout`` if no piece it waits for
        arrives within ``read_timeout`` seconds."""
        length = self.geometry.file_lengths[file_index]
        if size <= 0 or offset >= length:
            return b""
        size = min(size, length - offset)
        start = self.geometry.file_offset(file_index) + offset
        pieces = self.geometry.pieces_in_range(start, size)
        if handle is not None:
            handle.advance(offset, size)
        with self.cache.pinned(pieces):  # not evicted under our feet
            for _ in range(3):  # a piece dropped by its check on disk is fetched again
                missing = self.have.missing(pieces)
                if missing:
                    await self.cache.recover(missing)  # left by a crash: check, not fetch
                    missing = self.have.missing(missing)
                if missing:
                    await self._wait_for(missing)
                if await self.cache.trust(pieces):
                    break
            else:
                raise StorageError(f"pieces {pieces.start}-{pieces.stop - 1} keep failing "
                                   "their hash check on disk")
            self.cache.touched(pieces)
            data = self._read_recent(start, size, pieces)
            if data is not None:
                return data
            return await self._offload(self.storage.read, start, size)

    async def _wait_for(self, pieces: list[int]) -> None:
        owner = object()
        self.picker.raise_priority(owner, pieces, NOW, trio.current_time() + NOW_SLACK)
        self.schedule()
        timeout = math.inf if self.read_timeout is None else self.read_timeout
        self.waiting_reads[owner] = (trio.current_time(), pieces)
        try:
            for i in pieces:
                while i not in self.have:
                    event = self._events.get(i)
                    if event is None:
                        event = self._events[i] = trio.Event()
                        self._store_errors.pop(i, None)  # a new attempt: old news
                    with trio.move_on_after(timeout):
                        await event.wait()
                    if i in self.have:
                        break
                    error = self._store_errors.get(i)
                    if error is not None:  # verified, but it could not be written
                        raise error
                    if not event.is_set():
                        raise ReadTimeout(f"no progress for {timeout:g} s waiting for "
                                          f"piece {i}: {self._who_has(i)}")
        finally:
            self.waiting_reads.pop(owner, None)
            self.picker.drop(owner)

    def status(self) -> dict:
        """A snapshot of this torrent for ``torrentfs status`` and the xattrs: see
        ``status.snapshot`` (its schema is documented there)."""
        from torrentfs.engine.status import snapshot
        return snapshot(self)

    def _who_has(self, index: int) -> str:
        """Why a piece is not coming, for the log: no peers, or peers without it;
        and how the web seeds fare, if any."""
        why = self._peers_having(index)
        seeds = self.webseeds.active()
        if seeds:  # they have every piece
            down = sum(1 for s in seeds if not s.up)
            why += f"; {down} of {len(seeds)} web seeds down" if down else \
                f"; {len(seeds)} web seeds up"
        return why

    def _peers_having(self, index: int) -> str:
        peers = [s for s in self.sessions.values() if s.registered]
        if not peers:
            return "no peers connected"
        having = [s for s in peers if self.picker.peer_has(s, index)]
        if not having:
            return f"none of the {len(peers)} peers connected has it"
        unchoked = sum(1 for s in having if not s.peer_choking)
        return (f"{len(having)} of {len(peers)} peers connected have it, "
                f"{unchoked} of them unchoked us")
