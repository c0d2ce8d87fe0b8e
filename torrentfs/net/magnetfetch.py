"""Fetching a magnet link's metadata (BEP 9) from the swarm, before the torrent
can start: the trio shell over ``metadata.MetadataFetcher``.

``fetch_metadata`` runs the peer sources (each pushes addresses as it finds
them), connects to up to ``MAX_CONNECTIONS`` peers at once, asks the ones whose
extension handshake offers ``ut_metadata`` for 16 KiB pieces, and returns the
info dictionary's bytes once they hash to the info-hash, with every peer
address it heard of (so the torrent can start with them).  Peers that send
something hostile, or contribute to metadata that fails its hash, are dropped
and not tried again.  It runs until done: the caller bounds it
(``--metadata-timeout``).

Peer sources are plain async functions ``source(add)`` that call
``add(list of (host, port))`` whenever they learn peers, until cancelled.
``default_sources`` gives the x.pe hints and the magnet's trackers (through
``tracker.Announcer``, so any tracker scheme it learns works here too); the
caller appends any others (the CLI adds the DHT's).  Peers a fetch connection hears
of through ut_pex are added as well.

The verified info dictionary is cached as ``<cache>/<info-hash>/info.bencode``
(mode 0600): the next mount of the same magnet needs no peer at all.

A v2 magnet link (``urn:btmh``) needs more than the info dictionary: the piece
layers of its files longer than a piece, which a .torrent carries beside it. Once
the metadata is in, the peers that gave it are asked for them with BEP 52 hash
requests (``piecelayers.LayerFetch``: every answer proved to its file's root); they
are cached as ``piece-layers.bencode``.
"""

from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Awaitable, Callable, Sequence

import bencodepy
import httpx
import trio

from torrentfs.core import metadata, metainfo_v2, pex, piecelayers, wire
from torrentfs.core.address import Addr
from torrentfs.core.extension import (
    OUR_IDS,
    UT_METADATA,
    UT_PEX,
    ExtensionError,
    encode_handshake,
    parse_handshake,
)
from torrentfs.core.magnet import Magnet
from torrentfs.core.ratelimit import TokenBucket
from torrentfs.disk.private import write_private
from torrentfs.net import mse
from torrentfs.net.peer import PeerSession, connect
from torrentfs.net.tracker import Announcer, TrackerError

log = logging.getLogger("torrentfs.magnet")

PeerSource = Callable[[Callable[[list[Addr]], None]], Awaitable[None]]

MAX_CONNECTIONS = 10
MAX_ADDRESSES = 2000       # addresses remembered from all sources
TRIES = 3                  # connection attempts per address
RETRY_AFTER = 5.0
REQUEST_TIMEOUT = 15.0     # a peer sitting on our metadata requests this long is dropped
HANDSHAKE_WAIT = 10.0      # a peer that has not offered the metadata by then: dropped
ANNOUNCE_EVERY = 30.0      # re-announce this often while the metadata is missing
INFO_FILE = "info.bencode"
LAYERS_FILE = "piece-layers.bencode"


# -- the cache ----------------------------------------------------------------------

def load_cached(folder: Path, info_hash: bytes) -> bytes | None:
    """The cached info dictionary if it is there and hashes right, else None."""
    try:
        data = (Path(folder) / INFO_FILE).read_bytes()
    except OSError:
        return None
    return data if metadata.matches(data, info_hash) else None


def load_cached_layers(folder: Path) -> dict:
    """The cached piece layers of a v2 magnet's torrent ({} if none): parsing the
    torrent checks each against its file's root."""
    try:
        layers = bencodepy.decode((Path(folder) / LAYERS_FILE).read_bytes())
    except Exception:  # missing or damaged: fetched again
        return {}
    return layers if isinstance(layers, dict) else {}


def save_cached(folder: Path, info_bytes: bytes, layers: dict | None = None) -> None:
    """Write the info dictionary (and piece layers) atomically, owner-only."""
    if layers:
        write_private(Path(folder) / LAYERS_FILE, bencodepy.encode(layers), durable=True)
    write_private(Path(folder) / INFO_FILE, info_bytes, durable=True)


# -- peer sources -------------------------------------------------------------------

def static_source(addrs: Sequence[Addr]) -> PeerSource:
    """A source that gives fixed addresses (x.pe hints, --peer) once."""
    async def source(add: Callable[[list[Addr]], None]) -> None:
        add(list(addrs))
    return source


async def tracker_source(tiers: list[list[str]], info_hash: bytes, peer_id: bytes,
                         port: int, add: Callable[[list[Addr]], None]) -> None:
    """Announce to the trackers every ANNOUNCE_EVERY s (or their interval, if
    shorter) and pass on their peers; no 'stopped' (the torrent announces next)."""
    ann = Announcer(tiers, info_hash, peer_id, lambda: port, lambda: (0, 0, 1), add)
    async with httpx.AsyncClient(follow_redirects=True, max_redirects=3,
                                 headers={"User-Agent": "torrentfs/0.1"}) as client, ann.udp:
        while True:
            try:
                resp = await ann.announce(client, "started")
                add(list(resp.peers))
                wait = min(ANNOUNCE_EVERY, max(5.0, float(resp.min_interval or 0)))
            except TrackerError:
                wait = ANNOUNCE_EVERY / 2
            await trio.sleep(wait)


def default_sources(magnet: Magnet, peer_id: bytes, port: int,
                    peers: Sequence[Addr] = ()) -> list[PeerSource]:
    sources = [static_source([*magnet.peers, *peers])]
    if magnet.trackers:
        sources.append(partial(tracker_source, [[url] for url in magnet.trackers],
                               magnet.info_hash, peer_id, port))
    # Further sources (the DHT: engine.sources.fetch_metainfo) are appended by the caller.
    return sources


# -- the fetch ----------------------------------------------------------------------

class _Fetch:
    """The ``peer.Swarm`` of the metadata phase: sessions that only speak BEP 10."""

    def __init__(self, magnet: Magnet, peer_id: bytes, port: int, progress,
                 connect=connect, encryption: str = "prefer") -> None:
        self.magnet = magnet
        self.encryption = encryption
        self.encrypt: set[Addr] = set()   # addresses to dial with MSE (net/mse.py)
        self.connect = connect
        self.peer_id = peer_id
        self.port = port
        self.progress = progress
        self.fetcher = metadata.MetadataFetcher(magnet.info_hash)
        self.download_limit = TokenBucket(None)
        self.addrs: dict[Addr, list] = {}      # address -> [tries, next_try, banned]
        self.sessions: dict[Addr, PeerSession] = {}
        self.connecting: set[Addr] = set()
        self.their_ids: dict[PeerSession, dict[str, int]] = {}
        self.joined_at: dict[PeerSession, float] = {}   # waiting for its BEP 10 handshake
        self.asked_at: dict[PeerSession, float] = {}    # last progress on our requests
        self.pex_seen: dict[PeerSession, pex.PexPeer] = {}
        self.result: bytes | None = None
        self.layers: piecelayers.LayerFetch | None = None  # a v2 magnet's piece layers
        self.done = trio.Event()
        self.wake = trio.Event()
        self.tried = 0

    def add(self, addrs: list[Addr]) -> None:
        before = len(self.addrs)
        for host, port in addrs:
            addr = (str(host), int(port))
            if addr not in self.addrs and len(self.addrs) < MAX_ADDRESSES:
                self.addrs[addr] = [0, 0.0, False]
                self.wake.set()
        if len(self.addrs) != before:
            self._report()

    def _report(self) -> None:
        if self.progress:
            f = self.fetcher
            pieces = f"{f.received_pieces}/{f.total_pieces} pieces" if f.total_pieces else \
                "no size yet"
            self.progress(f"fetching metadata: {len(self.sessions)} peers connected, "
                          f"{len(self.addrs)} known, {pieces}")

    # -- peer.Swarm -----------------------------------------------------------------

    def on_handshake(self, s: PeerSession) -> bool:
        if not s.conn.extended:
            s.close_reason = "no extension protocol (BEP 10): cannot give metadata"
            return False
        s.send(wire.Extended(0, encode_handshake(OUR_IDS, port=self.port or None,
                                                 client="torrentfs")))
        self.joined_at[s] = trio.current_time()  # its handshake is due by HANDSHAKE_WAIT
        log.info("metadata: connected to %r", s)
        self._report()
        return True

    def on_message(self, s: PeerSession, msg: wire.Message) -> None:
        if isinstance(msg, (wire.Hashes, wire.HashReject)):
            self._on_hashes(s, msg)
            return
        if not isinstance(msg, wire.Extended):
            return
        try:
            self._on_extended(s, msg)
        except (ExtensionError, metadata.MetadataError) as e:
            s.close(str(e))
            self._ban(s.addr)

    def _on_extended(self, s: PeerSession, msg: wire.Extended) -> None:
        if msg.ext_id == 0:
            hs = parse_handshake(msg.payload)
            self.their_ids[s] = hs.ids
            if hs.listen_port and not s.outgoing:
                self.add([(s.addr[0], hs.listen_port)])
            if not hs.supports(UT_METADATA) or not hs.metadata_size:
                if not hs.supports(UT_PEX):
                    s.close("does not offer the metadata")
                return  # it may still tell us of peers: dropped after HANDSHAKE_WAIT
            self.fetcher.peer_joined(s, hs.metadata_size)
            self.joined_at.pop(s, None)
            self._ask_all()
        elif msg.ext_id == OUR_IDS[UT_METADATA]:
            m = metadata.decode(msg.payload)
            if isinstance(m, metadata.Request):
                their = self.their_ids.get(s, {}).get(UT_METADATA)
                if their:
                    s.send(wire.Extended(their, metadata.encode(metadata.Reject(m.piece))))
                return
            if m is None:
                return
            outcome = self.fetcher.received(s, m)
            self.asked_at[s] = trio.current_time()
            if isinstance(m, metadata.Reject) and not self.fetcher.useful(s):
                s.close("rejected every metadata piece")
            if isinstance(outcome, metadata.Complete):
                self.result = outcome.info_bytes
                self._complete()
                return
            if isinstance(outcome, metadata.HashFailed):
                log.warning("metadata failed its hash check; %s", "dropping " + ", ".join(
                    map(repr, outcome.culprits)) if outcome.culprits else
                    "several peers gave pieces: now one peer per attempt")
                for peer in outcome.culprits:
                    peer.close("gave metadata that fails the hash check")
                    self._ban(peer.addr)
            self._report()
            self._ask_all()
        elif msg.ext_id == OUR_IDS[UT_PEX]:
            seen = self.pex_seen.setdefault(s, pex.PexPeer())
            if seen.accept(trio.current_time()):
                try:
                    added = pex.decode(msg.payload).added
                except pex.PexError as e:
                    log.info("%r: %s", s, e)
                    return
                self.add([addr for addr, _ in added])

    def _ask_all(self) -> None:
        for s in list(self.sessions.values()):
            self._ask(s)
            self._ask_hashes(s)

    # -- a v2 magnet's piece layers (BEP 52 hash requests) ----------------------------

    def _complete(self) -> None:
        """The metadata is in: done, unless a v2 magnet's piece layers are missing."""
        needs: list = []
        if self.magnet.info_hash_v2 is not None:
            try:
                piece_length, needs = metainfo_v2.layer_needs(bencodepy.decode(self.result))
            except Exception as e:  # the torrent is refused later, with the reason
                log.info("metadata: not a usable v2 torrent: %s", e)
                needs = []
        if not needs:
            self.done.set()
            return
        log.info("metadata: asking for the piece layers of %d files", len(needs))
        self.layers = piecelayers.LayerFetch(piece_length, needs)
        self._ask_all()

    def _ask_hashes(self, s: PeerSession) -> None:
        if self.layers is None or s.closed or s not in self.their_ids:
            return
        while (req := self.layers.next_request(s)) is not None:
            s.send(req)
            self.asked_at[s] = trio.current_time()

    def _on_hashes(self, s: PeerSession, msg) -> None:
        if self.layers is None:
            s.close("sent hashes we never asked for")
            return
        if isinstance(msg, wire.Hashes):
            if not self.layers.received(s, msg):
                s.close("sent hashes we did not ask for or that do not prove to the root")
                self._ban(s.addr)
        elif not self.layers.rejected(s, msg):
            return
        self.asked_at[s] = trio.current_time()
        if self.layers.done:
            self.done.set()
            return
        if self.layers.stuck(self.sessions.values()):
            log.info("metadata: every peer refused some piece layers; waiting for others")
        self._ask_all()

    def _ask(self, s: PeerSession) -> None:
        their = self.their_ids.get(s, {}).get(UT_METADATA)
        if not their or s.closed:
            return
        if not self.fetcher.outstanding(s):
            self.asked_at[s] = trio.current_time()
        while (piece := self.fetcher.next_request(s)) is not None:
            s.send(wire.Extended(their, metadata.encode(metadata.Request(piece))))

    def on_peer_closed(self, s: PeerSession) -> None:
        if self.sessions.get(s.addr) is s:
            del self.sessions[s.addr]
        self.fetcher.peer_left(s)
        if self.layers is not None:
            self.layers.peer_left(s)
        self.their_ids.pop(s, None)
        self.asked_at.pop(s, None)
        self.joined_at.pop(s, None)
        self.pex_seen.pop(s, None)
        log.info("metadata: %r closed: %s", s, s.close_reason or "done")
        self.wake.set()
        self._ask_all()
        self._report()

    def on_drained(self, s: PeerSession) -> None:
        pass

    def _ban(self, addr: Addr) -> None:
        if addr in self.addrs:
            self.addrs[addr][2] = True

    # -- tasks ------------------------------------------------------------------------

    async def connector(self, nursery: trio.Nursery) -> None:
        while True:
            now = trio.current_time()
            for s, since in list(self.joined_at.items()):
                if now - since > HANDSHAKE_WAIT:
                    s.close("does not offer the metadata" if s in self.their_ids
                            else "no extension handshake")
            for s, since in list(self.asked_at.items()):
                waiting = self.fetcher.outstanding(s) or (
                    self.layers is not None and self.layers.outstanding(s))
                if waiting and now - since > REQUEST_TIMEOUT:
                    s.close("no answer to our metadata requests")
            for addr, entry in self.addrs.items():
                if len(self.sessions) + len(self.connecting) >= MAX_CONNECTIONS:
                    break
                tries, next_try, banned = entry
                if (banned or tries >= TRIES or next_try > now or addr in self.sessions
                        or addr in self.connecting):
                    continue
                entry[0] += 1
                entry[1] = now + RETRY_AFTER * entry[0]
                self.tried += 1
                self.connecting.add(addr)
                nursery.start_soon(self._connect, addr)
            self.wake = trio.Event()
            with trio.move_on_after(1.0):
                await self.wake.wait()

    async def _connect(self, addr: Addr) -> None:
        """Dial ``addr`` and run a session; with the ``prefer`` policy a peer that
        closes a plain connection before its handshake is dialed again at once with
        encryption (``require``: always encrypted; ``off``: never)."""
        policy = self.encryption
        encrypt = policy == "require" or (policy == "prefer" and addr in self.encrypt)
        stream = None
        try:
            stream = await self.connect(addr)
            if encrypt:
                stream = await mse.initiate(stream, self.magnet.info_hash,
                                            require=policy == "require",
                                            reopen=partial(self.connect, addr))
        except (OSError, mse.MSEError, trio.TooSlowError, trio.BrokenResourceError) as e:
            log.info("metadata: connect %s:%d failed: %s", *addr, e)
            if stream is not None:
                with trio.CancelScope(shield=True):
                    await stream.aclose()
            return
        finally:
            self.connecting.discard(addr)
            self.wake.set()
        v2 = self.magnet.info_hash_v2
        conn = wire.PeerConnection(self.magnet.info_hash, self.peer_id, num_pieces=None,
                                   v2=v2 is not None,
                                   also_info_hash=None if v2 is None else v2[:20])
        s = self.sessions[addr] = PeerSession(self, stream, addr, conn, outgoing=True)
        await s.run()
        if s.peer_id is None and not encrypt and policy == "prefer" \
                and addr not in self.encrypt:
            self.encrypt.add(addr)
            entry = self.addrs.get(addr)
            if entry is not None:
                entry[1] = 0.0   # due at once
            self.wake.set()


async def fetch_metadata(magnet: Magnet, *, peer_id: bytes, port: int,
                         sources: Sequence[PeerSource],
                         progress: Callable[[str], None] | None = None,
                         connect=connect, layers_out: dict | None = None,
                         encryption: str = "prefer") -> tuple[bytes, list[Addr]]:
    """The verified info dictionary of ``magnet`` and every peer address heard of.
    Runs until it has them: bound it with ``trio.fail_after``. ``connect(addr)``
    opens a stream to a peer (tests pass in-memory ones); ``encryption`` is the MSE
    policy (net/mse.py). A v2 magnet's piece layers, got from the same peers, are put
    in ``layers_out``."""
    f = _Fetch(magnet, peer_id, port, progress, connect, encryption)
    f._report()
    async with trio.open_nursery() as nursery:
        for source in sources:
            nursery.start_soon(source, f.add)
        nursery.start_soon(f.connector, nursery)
        await f.done.wait()
        nursery.cancel_scope.cancel()
    assert f.result is not None
    if f.layers is not None and layers_out is not None:
        layers_out.update(f.layers.layers())
    good = [a for a, (_, _, banned) in f.addrs.items() if not banned]
    log.info("metadata of %s: %d bytes from %d peers tried", magnet.info_hash_hex,
             len(f.result), f.tried)
    return f.result, good


class MetadataTimeout(Exception):
    """No metadata within the time allowed; ``str()`` says what was tried."""


async def resolve(magnet: Magnet, folder: Path, *, peer_id: bytes, port: int,
                  timeout: float, peers: Sequence[Addr] = (),
                  sources: Sequence[PeerSource] | None = None,
                  progress: Callable[[str], None] | None = None, connect=connect,
                  encryption: str = "prefer"):
    """(Metainfo, peers) for a magnet: from the cache folder if it holds the info
    dictionary, else fetched within ``timeout`` seconds and cached. Raises
    MetadataTimeout, or MagnetError if what the peers gave is not a usable torrent."""
    info = load_cached(folder, magnet.info_hash)
    if info is not None:
        log.info("metadata of %s from the cache", magnet.info_hash_hex)
        return magnet.metainfo(info, load_cached_layers(folder)), [*magnet.peers, *peers]
    if sources is None:
        sources = default_sources(magnet, peer_id, port, peers)
    with trio.move_on_after(timeout):
        layers: dict = {}
        info, found = await fetch_metadata(magnet, peer_id=peer_id, port=port,
                                           sources=sources, progress=progress,
                                           connect=connect, layers_out=layers,
                                           encryption=encryption)
        meta = magnet.metainfo(info, layers)
        try:
            save_cached(folder, info, layers)
        except OSError as e:
            log.warning("could not cache the metadata: %s", e)
        return meta, found
    where = []
    if magnet.trackers:
        where.append(f"{len(magnet.trackers)} tracker{'s' * (len(magnet.trackers) > 1)}")
    if magnet.peers or peers:
        n = len(magnet.peers) + len(peers)
        where.append(f"{n} peer address{'es' * (n > 1)}")
    raise MetadataTimeout(
        f"no metadata for {magnet.info_hash_hex} after {timeout:g} s "
        f"(asked {' and '.join(where) or 'nobody: the magnet has no trackers or peers'})")
