"""One torrent, live: its swarm of peers, its picker, its storage, and reads.

``Torrent.run`` opens storage, starts the listener, the tracker announcer, the peer
connector (``connector.Connector``: candidates, dialing, sessions) and a
once-a-second ticker, signals readiness, and serves until cancelled; on the way out
it tells trackers ``stopped`` and saves the resume file.

``Torrent(meta, folder, options)`` takes its settings as one frozen
``options.TorrentOptions``; its keyword arguments are what it is handed at run time.

``Torrent.read(file_index, offset, size)`` is the read path, ``reads.Reads``
(``torrent.reads``): it raises the missing pieces to NOW in the picker, lets every
unchoked peer request blocks (``schedule``), waits for the pieces to be verified,
then reads the bytes. Only verified pieces are ever read or uploaded: a piece's
blocks are gathered in memory, hashed in a worker thread, and written only if the
hash matches (``disk.cache.DiskCache.store``).

Web seeds (``net.webseed``) are picker keys like sessions: ``schedule`` lets them
pick, their blocks come in through ``got_block`` as a peer's do, and ``ban`` drops
one that sent bad data.

The satellites see the torrent through narrow interfaces: ``peer.Swarm`` (peer
sessions), ``webseed.Host`` (web seeds), ``cache.CacheOwner`` (the disk cache),
``reads.PieceSupply`` (the read path), ``connector.Dialer`` (the connector); status,
the uploader and the multi-torrent mount use its public attributes and methods.

Invariants (the picker holds the block-level ones):
* ``have`` is exactly the set of pieces verified and on disk.
* a piece being hashed is in ``_verifying`` (``downloading``) and is not downloaded
  again meanwhile.
* every open session is in ``sessions`` and in the picker; a closed one is in neither.
* a piece being read or uploaded is pinned in the disk cache (``cache``): it
  stays in ``have`` and on disk until the bytes are out.
* no session gets past its handshake with a banned address or peer id (``ban``: bad
  data, attributed by ``blame.Blame``; admission and bans: ``membership.Membership``).
"""

from __future__ import annotations

import logging
import os
import secrets

import trio

from torrentfs import __version__
from torrentfs.core import wire
from torrentfs.core.asked import askers, unasked
from torrentfs.core.bitfield import Bitfield
from torrentfs.core.blame import Blame
from torrentfs.core.choker import Choker, PeerView
from torrentfs.core.geometry import Geometry
from torrentfs.core.picker import Picker
from torrentfs.core.ratelimit import TokenBucket
from torrentfs.core.runhash import RunningHash
from torrentfs.disk.cache import DiskCache
from torrentfs.disk.direct import aligned_buffer
from torrentfs.disk.storage import Storage
from torrentfs.engine.connector import Candidate, Connector
from torrentfs.engine.haves import HaveBatcher
from torrentfs.engine.havesin import got_haves, unchoked
from torrentfs.engine.locality import Nearby
from torrentfs.engine.membership import Membership
from torrentfs.engine.metrics import Metrics
from torrentfs.engine.options import TorrentOptions
from torrentfs.engine.peerext import PeerExtensions
from torrentfs.engine.pieces import PieceEvents
from torrentfs.engine.reads import ReadHandle, Reads
from torrentfs.engine.requests import Requests
from torrentfs.engine.swarms import discovery
from torrentfs.engine.upload import Uploader
from torrentfs.net.peer import PeerSession
from torrentfs.net.webseed import WebSeed, WebSeeds

log = logging.getLogger("torrentfs.torrent")

SNUB_AFTER = 20.0           # an unchoked peer that sends no block for this long is snubbed
LEECHER_JITTER = 10.0       # among leechers, readahead order is shuffled over this many s
SPREAD_MAX = 4              # a NOW piece's blocks are split over up to this many peers
USELESS_AFTER = 60.0        # neither side interested this long: drop it when slots are full


def make_peer_id() -> bytes:
    """An Azureus-style peer id: ``-TF0100-`` and 12 random bytes."""
    major, minor, *_ = (__version__.split(".") + ["0", "0"])
    return f"-TF{int(major):02d}{int(minor):02d}-".encode() + secrets.token_bytes(12)


class Torrent(PieceEvents):
    """One torrent, live (see the module docstring). ``options`` are its settings;
    the keyword arguments are handed to it at run time: ``peer_id`` (a fresh one
    unless given), ``shared`` (the rate limits and connection cap of a multi-torrent
    mount, ``multi.Shared``), ``offload`` (how blocking storage work runs: a worker
    thread; tests run it inline), ``choker``, ``http_transport`` (the web seeds'
    HTTP, for tests) and ``check_progress`` (told how the check at start goes)."""

    def __init__(self, meta, folder: str | os.PathLike,
                 options: TorrentOptions = TorrentOptions(), *,
                 peer_id: bytes | None = None, shared=None,
                 offload=trio.to_thread.run_sync, choker: Choker | None = None,
                 http_transport=None, check_progress=None, utp=None) -> None:
        self.meta = meta
        self.options = options
        for note in getattr(meta, "repairs", ())[:20]:  # said once, as libtorrent repairs
            log.warning("%s: repaired: %s", meta.name, note)
        self.geometry = Geometry(meta.piece_length, tuple(f.length for f in meta.files))
        # seed_only: serve the data in data_dir as it is (verified at start), never
        # downloading or writing; otherwise a cache that fills as pieces are read.
        self.seed_only = options.seed_only
        self.check_progress = check_progress
        self.storage = Storage(folder, meta, self.geometry, data_dir=options.data_dir,
                               readonly=options.seed_only,
                               max_open_files=options.max_open_files)
        self.have = Bitfield(self.geometry.num_pieces)
        self.peer_id = peer_id or make_peer_id()
        self.picker = Picker(self.geometry, self.have, prefetch=options.prefetch,
                             salt=int.from_bytes(self.peer_id[-4:], "big"),
                             jitter=LEECHER_JITTER)
        self.port = options.port  # the one bound once listening
        # How blocking storage work runs: in a worker thread (tests may run it inline).
        self.offload = offload
        self.sessions: dict[tuple[str, int], PeerSession] = {}
        self._buffers: dict[int, memoryview] = {}  # page-placed (O_DIRECT, no copy)
        # Their SHA-1 as far as their blocks are in order (core/runhash; v1 hashes
        # alone: a hybrid's pieces are checked against both at the end).
        self._hashing: dict[int, RunningHash] | None = {} if meta.v2 is None else None
        self._verifying: set[int] = set()
        # Peers that sent bad data are banned for the session, by address and peer id.
        self.blame = Blame(self.geometry)
        # Sessions admitted, registered and banned: ``membership.Membership``; the
        # connector and status read the banned addresses here (the same set).
        self.membership = Membership(self)
        self.banned_ips = self.membership.banned_ips
        self.choker = choker or Choker()
        self._dull: dict[PeerSession, float] = {}  # nothing more for us since (pieces.py)
        self.nearby = Nearby(options.prefer_subnet, self.geometry.num_pieces)
        # The torrents of a multi-torrent mount share their rate limits and a cap on
        # connections (``multi.Shared``).
        self.shared = shared
        self.connector = Connector(self, max_peers=options.max_peers, shared=shared, utp=utp)
        self.uploads = Uploader(self, shared.upload if shared
                                else TokenBucket(options.upload_rate))
        self.haves = HaveBatcher(self)  # HAVEs of verified pieces, batched
        self.download_limit = (shared.download if shared  # applied by each PeerSession
                               else TokenBucket(options.download_rate))
        self.cache = DiskCache(self, options.cache_size)
        self.reads = Reads(self, read_timeout=options.read_timeout,
                           cache_size=options.cache_size)
        self._spread = 1  # peers unchoking us (up to SPREAD_MAX): urgent pieces split this way
        # Each peer's requests: a read's blocks before readahead (``requests.Requests``).
        self.requests = Requests(self)
        self._fills: dict[PeerSession, bool] = {}  # picks HAVEs asked for (on_received)
        self.downloaded = 0
        self.wasted = 0
        self.metrics = Metrics(options.origins)  # read by status and --metrics
        # Trackers and local service discovery (never for private torrents), for
        # every swarm of the torrent (a hybrid's v2 one too: ``swarms``).
        self.announcer, self.lsd = discovery(self)
        # Who hears of a piece arriving or leaving (the FUSE layer's st_blocks).
        self.piece_listeners: list = []  # callables taking a piece index
        # Web seeds (BEP 19): the torrent's url-list unless given.
        self.webseeds = WebSeeds(
            self, meta.url_list if options.web_seeds is None else options.web_seeds,
            http_transport)
        self._nursery: trio.Nursery | None = None
        # BEP 10 extensions (metadata serving, PEX): hooks in Membership (on_handshake,
        # on_peer_closed), on_message and _ticker.
        self.ext = PeerExtensions(self, pex_enabled=options.pex and not meta.private)
        for addr in options.peers:
            self.add_peer(addr)

    # -- life cycle -----------------------------------------------------------------

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Serve the torrent until cancelled. Ready (``task_status.started``) once
        storage is open and the listener is bound."""
        await self.offload(self.storage.open)
        if self.seed_only:
            resumed = await self.offload(self.storage.check, self.check_progress)
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
            if self.options.listen:  # bound here: a port taken is a plain OSError
                self.port = await self.connector.bind(self.port, self.options.listen_host)
                log.info("listening on port %d", self.port)
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self.options.listen:
                    await self.connector.serve(nursery)
                nursery.start_soon(self.connector.run)
                nursery.start_soon(self._ticker)
                nursery.start_soon(self.uploads.run)
                nursery.start_soon(self.haves.run)
                if not self.seed_only:
                    nursery.start_soon(self.cache.run)
                    nursery.start_soon(self.reads.head_start.run)  # (engine/headstart)
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
                await self.cache.drain()  # pieces verified, their writes still queued
                await self.offload(self._save_resume_and_close)

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
        self.connector.add(addr)

    @property
    def candidates(self) -> dict[tuple[str, int], Candidate]:
        """The peer addresses known, dialed or not (``connector.Connector``)."""
        return self.connector.candidates

    def _on_tracker_peers(self, peers: list[tuple[str, int]]) -> None:
        for addr in peers:
            self.add_peer(addr)

    def _announce_stats(self) -> tuple[int, int, int]:
        left = self.geometry.total_length - sum(
            self.geometry.piece_size(i) for i in self.have) if not self.have.complete else 0
        return self.uploaded, self.downloaded, left

    async def attach(self, stream: trio.abc.Stream, addr: tuple[str, int], *,
                     transport: str = "tcp") -> PeerSession:
        """Run a session we started over ``stream`` until it ends (``Connector.attach``)."""
        return await self.connector.attach(stream, addr, transport=transport)

    async def accept(self, stream: trio.abc.Stream, addr: tuple[str, int], *,
                     transport: str = "tcp") -> None:
        """Run a session a peer started over ``stream`` (``Connector.accept``)."""
        await self.connector.accept(stream, addr, transport=transport)

    # -- session callbacks (peer.Swarm) ---------------------------------------------

    def on_handshake(self, s: PeerSession) -> bool:
        """Admit and register a session, or refuse it (``Membership.on_handshake``)."""
        return self.membership.on_handshake(s)

    def on_peer_closed(self, s: PeerSession) -> None:
        """A session ended: unregister it (``Membership.on_peer_closed``)."""
        self._fills.pop(s, None)
        self.membership.on_peer_closed(s)

    def on_message(self, s: PeerSession, msg: wire.Message) -> None:
        """One message from a peer past its handshake (the session has already
        updated its own flags: choked, interested, the requests it queued)."""
        # Most messages are blocks (downloading) or requests (seeding): no match for them.
        if type(msg) is wire.Piece:
            self.requests.answered(s, msg.index, msg.begin)
            self.got_block(s, msg.index, msg.begin, msg.data, s.last_received)
            if not self.requests.soon:  # else every peer picks at once, fastest first
                self._fill(s, batch=True)
            return
        if type(msg) is wire.Request:
            self.uploads.request(s, msg)
            return
        match msg:
            case wire.Bitfield():
                bits = Bitfield.from_bytes(msg.bits, self.geometry.num_pieces)
                self.picker.got_bitfield(s, bits)
                self.nearby.got_all(s, bits)
                self._update_interest(s)
            case wire.HaveAll():
                self.picker.got_have_all(s)
                self.nearby.got_all(s, range(self.geometry.num_pieces))
                self._update_interest(s)
            case wire.Have():
                self._on_have(s, msg)
            case wire.Unchoke():
                if not self.seed_only:
                    unchoked(self, s)  # the seeds spared what it has (engine/havesin)
                self._count_spread()
                self._fill(s)
            case wire.Choke():
                self._count_spread()
                if not s.fast:  # with BEP 6 the peer rejects each request explicitly
                    self.picker.peer_choked(s)
                    self.requests.forget(s)
                    self.schedule()
            case wire.Reject():
                self.requests.rejected(s, msg.index, msg.begin)
            case wire.Extended():
                self.ext.on_extended(s, msg)
            case wire.Cancel():
                self.uploads.cancel(s, msg)
            case wire.HashRequest():
                self.uploads.hash_message(s, msg)  # BEP 52
            case wire.Hashes() | wire.HashReject():  # leaves for block-level reads
                self.reads.blocks.hash_message(s, msg)
            case wire.Interested():
                if self.have.count and self.choker.worth_round(trio.current_time()):
                    self.rechoke()  # a free slot, or a better peer, need not wait 10 s
            case wire.NotInterested():
                if not s.am_choking:
                    self.rechoke()
            case (wire.HaveNone() | wire.KeepAlive() | wire.Port() | wire.Suggest()
                  | wire.AllowedFast() | wire.Unknown()):
                pass  # nothing for the torrent: a peer starts with no pieces, the
                # session saw its keep-alive, and the hints of BEP 5/6 go unused

    def on_blocks(self, s: PeerSession, blocks: list) -> None:
        """A run of blocks of one receive from ``s``, ``(index, begin, data)`` each:
        as an on_message of a Piece for each, with one pick after them all."""
        now = s.last_received
        answered, got_block = self.requests.answered, self.got_block
        for index, begin, data in blocks:
            answered(s, index, begin)
            got_block(s, index, begin, data, now)
        if not self.requests.soon:  # else every peer picks at once, fastest first
            self._fill(s, batch=True)

    def _on_have(self, s: PeerSession, msg: wire.Have) -> None:
        got_haves(self, s, [msg.index])
        self.uploads.announced(s, [msg.index])

    def on_haves(self, s: PeerSession, indexes: list[int]) -> None:
        """A run of HAVEs of one receive, handled as one (``engine/havesin``): the
        seeds spared for each piece a leecher now has, the pick they ask for made
        once the receive is handled (``on_received``)."""
        got_haves(self, s, indexes)
        self.uploads.announced(s, indexes)

    def on_received(self, s: PeerSession) -> None:
        """The messages of one receive from ``s`` are handled: the pick its HAVEs
        asked for, once."""
        batch = self._fills.pop(s, None)
        if batch is not None:
            self._fill(s, batch)

    def _count_spread(self) -> None:
        n = sum(1 for p in self.sessions.values() if not p.peer_choking and p.registered)
        n += self.webseeds.up_count()
        self._spread = max(1, min(SPREAD_MAX, n))

    @property
    def spread(self) -> int:
        """Over how many peers (or web seeds) an urgent piece's blocks are split:
        those unchoking us, up to ``SPREAD_MAX``."""
        return self._spread

    def got_block(self, s: PeerSession | WebSeed, index: int, begin: int, data,
                  now: float | None = None) -> None:
        """A block arrived (at ``now``: by default the current time) from a peer or
        a web seed: into its piece's buffer, the other holders cancelled; a complete
        piece goes to be verified."""
        n = len(data)
        got = self.picker.block_received(s, index, begin, n,
                                         trio.current_time() if now is None else now)
        if not got.new:
            self.wasted += n
            return
        buf = self._buffers.get(index)
        if buf is None:
            buf = self._buffers[index] = aligned_buffer(self.geometry.piece_size(index),
                                                        self.storage.buffer_phase(index))
            if self._hashing is not None:  # (made and dropped with the buffer)
                self._hashing[index] = RunningHash()
        buf[begin:begin + n] = data
        if self._hashing is not None:
            self._hashing[index].add(buf, begin, n)
        self.downloaded += n
        self.metrics.received[s.source] += n
        if self.reads.blocks.verifier is not None:  # v2: a read may need it alone
            self.reads.blocks.got_block(s, index, begin, data)
        for other in got.cancel:
            self.requests.cancel(other, index, begin, n)
        if got.piece_complete:
            self._verifying.add(index)
            self._nursery.start_soon(self._verify, index)

    # -- choking ----------------------------------------------------------------------

    @property
    def seeding(self) -> bool:
        return self.seed_only or self.have.complete

    def rechoke(self) -> None:
        """Run the choker over the registered peers and send what it decides."""
        now = trio.current_time()
        count = self.picker.pieces_of
        views = [PeerView(s, s.peer_interested, s.am_choking, s.down.rate(now),
                          s.up.rate(now), s.snubbed, s.connected_at, count(s))
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

    def _fill(self, s: PeerSession, batch: bool = False) -> None:
        """Top up the peer's requests, a read's blocks first (``Requests.fill``)."""
        self.requests.fill(s, batch)

    def cancel_unwanted(self, pieces) -> None:
        """Give up pieces in progress that nobody wants any more (a reader moved on):
        cancel their requests and free their buffers."""
        for index in pieces:
            cancels = self.picker.withdraw(index)
            if cancels is None:
                continue
            self._buffers.pop(index, None)
            if self._hashing is not None:
                self._hashing.pop(index, None)
            for peer, begin, length in cancels:
                self.requests.cancel(peer, index, begin, length)

    def schedule(self, skip: PeerSession | set | None = None, piece: int | None = None,
                 freed: set[int] | None = None) -> None:
        """Priorities changed or requests were freed: let every unchoked peer pick,
        fastest first, so urgent blocks go to the best peers. With ``piece`` (one
        piece raised to NOW), only the peers that have it (web seeds have all), and
        once every block of it is asked, only those asked (core/asked: the
        others would find nothing of it to pick). With ``freed`` (pieces whose
        blocks were freed: what this schedule is for), until none of their blocks
        is free. ``skip``: a peer (or a set of them) not to ask."""
        now = trio.current_time()
        peers = [*self.sessions.values(), *self.webseeds.active()]
        if piece is not None:
            has = self.picker.peer_has
            peers = [p for p in peers if isinstance(p, WebSeed)
                     or (p.registered and has(p, piece))]
        peers.sort(key=lambda p: -p.down.rate(now))
        for s in peers:
            if s is skip or (type(skip) is set and s in skip):
                continue
            if piece is not None:
                asked = askers(self.picker, piece, now)
                if asked is not None and s not in asked:
                    continue
            elif freed is not None and not any(unasked(self.picker, i) for i in freed):
                break
            if isinstance(s, WebSeed):
                s.fill(now)
            else:
                self._fill(s)

    def schedule_soon(self, freed: set[int] | None = None,
                      skip: PeerSession | None = None) -> None:
        """``schedule`` once the running task yields (``Requests.schedule_soon``)."""
        self.requests.schedule_soon(self._nursery, freed, skip)

    def downloading(self, index: int) -> bool:
        """Whether a piece is being fetched, or hashed after its download."""
        return index in self._verifying or bool(self.picker.contributors(index))

    def stop_prefetch(self) -> bool:
        """Stop the background download (``prefetch``); False if it was off."""
        if not self.picker.prefetch:
            return False
        self.picker.prefetch = False
        return True

    def ban(self, s: PeerSession | WebSeed, why: str) -> None:
        """Refuse the peer's address and peer id for the rest of the session, and
        drop every connection that has either; give up a web seed (``Membership.ban``)."""
        self.membership.ban(s, why)

    async def _ticker(self) -> None:
        while True:
            await trio.sleep(1.0)
            now = trio.current_time()
            full = self.connector.starved(now)
            for s in list(self.sessions.values()):
                s.keep_alive(now)
                if (not s.peer_choking and self.picker.outstanding(s)
                        and now - s.last_block > SNUB_AFTER):
                    if s.snubbed:  # and no block since: it only pretends to serve
                        s.close(f"sent no block for {2 * SNUB_AFTER:.0f} s of requests")
                        continue
                    log.info("%r snubbed us: its requests go to others", s)
                    self.picker.peer_choked(s)
                    self.requests.forget(s)
                    s.snubbed = True
                    s.last_block = now
                if s.am_interested or s.peer_interested:
                    s.last_useful = now
                elif full and now - s.last_useful > USELESS_AFTER:
                    s.close("useless: neither side interested")  # room for another
            if self.choker.due(now):
                self.rechoke()
            self.lose_interest(now)
            self.haves.flush_all()  # HAVEs of pieces their peers have already
            self.ext.tick(now)
            self.requests.expire(now)
            self._count_spread()
            self.schedule()

    # -- uploading --------------------------------------------------------------------

    def on_drained(self, s: PeerSession) -> None:
        self.uploads.drained(s)

    @property
    def uploaded(self) -> int:
        return self.uploads.uploaded

    async def block(self, index: int, begin: int, length: int) -> bytes:
        """Bytes of a verified piece, for an upload (``Reads.block``)."""
        return await self.reads.block(index, begin, length)

    def block_now(self, index: int, begin: int, length: int) -> memoryview | None:
        """The same if it can be had without waiting, else None (``Reads.block_now``)."""
        return self.reads.block_now(index, begin, length)

    # -- the read path (reads.Reads) --------------------------------------------------

    def open_handle(self, file_index: int, stream: bool = False) -> ReadHandle:
        """An open file: its reads move a readahead window (``reads.ReadHandle``);
        ``stream``: a video (a seek read may hold for a buffer)."""
        return self.reads.open_handle(file_index, stream)

    async def read(self, file_index: int, offset: int, size: int,
                   handle: ReadHandle | None = None) -> bytes | memoryview:
        """Bytes ``[offset, offset+size)`` of a file once verified: ``Reads.read`` (timed)."""
        t0 = trio.current_time()
        try:
            return await self.reads.read(file_index, offset, size, handle)
        finally:
            self.metrics.read_latency.observe(trio.current_time() - t0)

    @property
    def waiting_reads(self) -> dict[object, tuple[float, list[int]]]:
        """The reads waiting for pieces: owner -> (since when, the pieces)."""
        return self.reads.waiting

    def status(self) -> dict:
        """A snapshot of this torrent for ``torrentfs status`` and the xattrs: see
        ``status.snapshot`` (its schema is documented there)."""
        from torrentfs.engine.status import snapshot
        return snapshot(self)

    def who_has(self, index: int) -> str:
        """Why a piece is not coming, for the log (``status.why_missing``)."""
        from torrentfs.engine.status import why_missing
        return why_missing(self, index)
