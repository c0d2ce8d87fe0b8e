"""A scriptable BitTorrent peer for shell tests: speaks the wire protocol over any
trio stream (usually an in-memory one, or a real socket), serving a payload, and can
misbehave on purpose: never answer, answer late, send corrupt data, a wrong
info-hash, hand-made (invalid) messages, floods, half a message then silence, or hang
up mid-block. ``Swarm``/``start`` wire fake peers to a Torrent by memory streams."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from dataclasses import dataclass, field, replace
from typing import Iterator

import trio
import trio.testing

from torrentfs.core import handshake, wire
from torrentfs.core.metainfo import parse
from torrentfs.disk.create import create_torrent
from torrentfs.engine.options import TorrentOptions


@dataclass
class Behaviour:
    answer: bool = True          # False: swallow every request (a stalled peer)
    delay: float = 0.0           # seconds before each answer
    corrupt: set[int] = field(default_factory=set)  # pieces whose blocks are flipped
    have: set[int] | None = None  # pieces it has (None: all)
    garbage_after: int | None = None  # after this many answers, send an oversized message
    info_hash: bytes | None = None  # handshake with this info-hash instead of the torrent's
    greeting: bytes | None = None  # raw bytes sent instead of the bitfield / have-all
    raw: bytes = b""              # raw bytes sent right after the greeting (hand-made)
    mute: bool = False            # after greeting and raw, send nothing more (still reads)
    cut_after: int | None = None  # after this many answers, send half a block and hang up
    keepalive_every: float | None = None  # send keep-alives this often (seems alive)
    # An uplink of this many bytes/s: requests are answered one after another in the
    # order asked, each taking its length / rate; a cancel drops a request not yet
    # being sent (answered with a reject when the fast extension is on), as
    # libtorrent does. None: every request is answered at once (after ``delay``).
    rate: float | None = None
    committed: int = 0            # with ``rate``: bytes at the head of its queue a cancel
    #                               no longer reaches (libtorrent's send buffer)
    fast: bool = True             # offer the fast extension (BEP 6)
    # With ``rate``: send in bursts this many seconds apart (``rate * tick`` bytes of
    # the queue each, the first ``phase`` s after connecting), as a capped libtorrent
    # seeder hands out its quota (its tick_interval, 0.5 s). None: a steady uplink.
    tick: float | None = None
    phase: float = 0.0
    # BEP 52 requests for block hashes (base layer 0) of a v2 torrent: "answer" them
    # from the payload, answer with a leaf flipped ("bad"), or "reject" them; None:
    # ignore them (a peer that never answers).
    leaves: str | None = None


@dataclass
class Stats:
    requests: list[tuple[int, int, int]] = field(default_factory=list)
    cancels: list[tuple[int, int, int]] = field(default_factory=list)
    rejects: list[tuple[int, int, int]] = field(default_factory=list)
    blocks: list[tuple[int, int, int]] = field(default_factory=list)  # received from us
    hash_requests: list = field(default_factory=list)  # BEP 52 HashRequests it got
    sent_bytes: int = 0
    handshaken: bool = False  # our handshake reached it
    closed: bool = False


async def fake_peer(stream: trio.abc.Stream, meta, payload: bytes,
                    behaviour: Behaviour | None = None, stats: Stats | None = None,
                    peer_id: bytes = b"-FK0001-" + b"0" * 12) -> Stats:
    """Serve ``payload`` (the torrent's whole byte stream) to whoever is on the other
    end of ``stream`` until it hangs up."""
    b = behaviour or Behaviour()
    stats = stats or Stats()
    conn = wire.PeerConnection(meta.info_hash, peer_id, num_pieces=meta.num_pieces,
                               fast=b.fast)
    lock = trio.Lock()

    async def send(data: bytes) -> None:
        async with lock:
            await stream.send_all(data)

    greeting = conn.handshake()
    if b.info_hash is not None:
        greeting = handshake.encode(replace(conn.our_handshake, info_hash=b.info_hash))
    plen = meta.piece_length
    async with trio.open_nursery() as nursery:
        answered = 0

        async def answer(req: wire.Request) -> None:
            nonlocal answered
            if b.delay:
                await trio.sleep(b.delay)
            answered += 1
            start = req.index * plen + req.begin
            data = bytearray(payload[start:start + req.length])
            if req.index in b.corrupt:
                data[0] ^= 0xFF
            msg = conn.send(wire.Piece(req.index, req.begin, bytes(data)))
            try:
                if b.garbage_after is not None and answered > b.garbage_after:
                    await send((1 << 30).to_bytes(4, "big") + b"\x07" + b"x" * 100)
                    return
                if b.cut_after is not None and answered > b.cut_after:
                    await send(msg[:len(msg) // 2])
                    await stream.aclose()
                    return
                await send(msg)
                stats.sent_bytes += len(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        uplink: list[wire.Request] = []  # with ``rate``: the requests not yet served
        more = trio.Event()

        async def serve_at_rate(rate: float) -> None:
            nonlocal more
            while True:
                if not uplink:
                    more = trio.Event()
                    await more.wait()
                    continue
                req = uplink.pop(0)
                await trio.sleep(req.length / rate)
                await answer(req)

        async def serve_in_ticks(rate: float, tick: float, phase: float) -> None:
            await trio.sleep(phase)
            while True:
                quota = rate * tick
                while uplink and uplink[0].length <= quota:
                    req = uplink.pop(0)
                    quota -= req.length
                    await answer(req)
                await trio.sleep(tick)

        async def keep_alive(every: float) -> None:
            while True:
                await trio.sleep(every)
                await send(conn.send(wire.KeepAlive()))

        try:
            await send(greeting)
            if b.keepalive_every:
                nursery.start_soon(keep_alive, b.keepalive_every)
            if b.rate and b.tick:
                nursery.start_soon(serve_in_ticks, b.rate, b.tick, b.phase)
            elif b.rate:
                nursery.start_soon(serve_at_rate, b.rate)
            while True:
                event = conn.next_event()
                if event is wire.NEED_DATA:
                    conn.receive_data(await stream.receive_some(1 << 16))
                    continue
                if isinstance(event, wire.ConnectionClosed):
                    break
                if isinstance(event, wire.Handshake):
                    stats.handshaken = True
                    if b.greeting is not None:
                        out = b.greeting
                    elif b.have is None:
                        out = conn.send(wire.HaveAll()) if conn.fast else conn.send(
                            wire.Bitfield(b"\xff" * ((meta.num_pieces + 7) // 8)))
                    else:
                        bits = bytearray((meta.num_pieces + 7) // 8)
                        for i in b.have:
                            bits[i >> 3] |= 0x80 >> (i & 7)
                        out = conn.send(wire.Bitfield(bytes(bits)))
                    await send(out + b.raw)
                elif isinstance(event, wire.Interested) and not b.mute:
                    await send(conn.send(wire.Unchoke()))
                elif isinstance(event, wire.Request):
                    stats.requests.append((event.index, event.begin, event.length))
                    if b.answer and not b.mute and b.rate:
                        uplink.append(event)
                        more.set()
                    elif b.answer and not b.mute:
                        nursery.start_soon(answer, event)
                elif isinstance(event, wire.Cancel):
                    stats.cancels.append((event.index, event.begin, event.length))
                    req = wire.Request(event.index, event.begin, event.length)
                    ahead = 0
                    for n, queued in enumerate(uplink):
                        if ahead >= b.committed and queued == req:
                            del uplink[n]
                            break
                        ahead += queued.length
                    else:
                        req = None
                    if req is not None and conn.fast:
                        await send(conn.send(wire.Reject(req.index, req.begin, req.length)))
                elif isinstance(event, wire.Reject):
                    stats.rejects.append((event.index, event.begin, event.length))
                elif isinstance(event, wire.HashRequest):
                    stats.hash_requests.append(event)
                    if b.leaves is not None:
                        await send(conn.send(_leaves_answer(meta, payload, event, b.leaves)))
                elif isinstance(event, wire.Piece):
                    stats.blocks.append((event.index, event.begin, len(event.data)))
        except (trio.BrokenResourceError, trio.ClosedResourceError, wire.ProtocolError):
            pass
        finally:
            stats.closed = True
            nursery.cancel_scope.cancel()
    return stats


def _leaves_answer(meta, payload: bytes, req, how: str):
    """The answer to a request for block hashes: the file's leaves (zero hashes past
    its end), one flipped if ``how`` is "bad", or a reject."""
    from torrentfs.core import merkle
    f = meta.v2.file_of_root(req.pieces_root)
    if how == "reject" or f is None or req.base_layer != 0:
        return wire.HashReject(req.pieces_root, req.base_layer, req.index, req.length,
                               req.proof_layers)
    start = sum(x.length for x in meta.files[:f])
    leaves = merkle.leaf_hashes(payload[start:start + meta.files[f].length])
    run = [leaves[i] if i < len(leaves) else merkle.ZERO
           for i in range(req.index, req.index + req.length)]
    if how == "bad":
        run[-1] = bytes([run[-1][0] ^ 1]) + run[-1][1:]
    return wire.Hashes(req.pieces_root, 0, req.index, req.length, req.proof_layers,
                       b"".join(run))


@contextlib.contextmanager
def serve_fake_peers(meta, payload: bytes, host: str, behaviours: list[Behaviour],
                     *, lifetime: float = 300.0) -> Iterator[list[int]]:
    """Serve one fake peer per behaviour on real TCP sockets at ``host``, each on a port
    of its own (yields the ports), from a trio loop in a thread of the test process.
    Every connection lasts at most ``lifetime`` seconds; all stop on exit."""
    ready = threading.Event()
    ports: list[int] = []
    loop: dict = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            loop["scope"] = nursery.cancel_scope
            loop["token"] = trio.lowlevel.current_trio_token()
            for n, behaviour in enumerate(behaviours):
                listeners = await trio.open_tcp_listeners(0, host=host)
                ports.append(listeners[0].socket.getsockname()[1])

                async def handler(stream, behaviour=behaviour, n=n) -> None:
                    with trio.move_on_after(lifetime):
                        await fake_peer(stream, meta, payload, behaviour,
                                        peer_id=b"-FK0001-" + b"hostile%05d" % n)
                    await stream.aclose()

                nursery.start_soon(trio.serve_listeners, handler, listeners)
            ready.set()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    try:
        if not ready.wait(10):
            raise RuntimeError("fake peers did not start")
        yield ports
    finally:
        if "token" in loop:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(loop["scope"].cancel, trio_token=loop["token"])
        thread.join(10)


def small_torrent(tmp_path, size: int, piece_length: int = 32768, seed: int = 5):
    """A single-file torrent of ``size`` pseudo-random bytes: (meta, payload)."""
    data = bytearray()
    counter = 0
    while len(data) < size:
        data += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    payload = bytes(data[:size])
    src = tmp_path / "payload.bin"
    src.write_bytes(payload)
    meta = parse(create_torrent(src, piece_length=piece_length, creation_date=0))
    return meta, payload


def small_tree_torrent(tmp_path, files: dict[str, int], piece_length: int = 32768,
                       seed: int = 7):
    """A multi-file torrent of a folder ``tree`` holding ``files`` (relative path ->
    size) of pseudo-random bytes: (meta, payload), the payload being the torrent's
    whole byte stream (files in torrent order)."""
    root = tmp_path / "tree"
    for n, (rel, size) in enumerate(files.items()):
        data = bytearray()
        counter = 0
        while len(data) < size:
            data += hashlib.sha256(f"{seed}:{n}:{counter}".encode()).digest()
            counter += 1
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(bytes(data[:size]))
    meta = parse(create_torrent(root, piece_length=piece_length, creation_date=0))
    payload = b"".join((root.joinpath(*f.path)).read_bytes() for f in meta.files)
    return meta, payload


def raw_message(msg_id: int, payload: bytes = b"") -> bytes:
    """A length-prefixed message as it goes on the wire, unchecked (``wire.send``
    refuses invalid ones)."""
    return (1 + len(payload)).to_bytes(4, "big") + bytes([msg_id]) + payload


def block_fields(*values: int) -> bytes:
    """Big-endian u32 fields (index, begin, length) of a have/request/piece/cancel."""
    return b"".join(v.to_bytes(4, "big") for v in values)


def quiet(**settings) -> TorrentOptions:
    """The settings of a Torrent that neither listens nor announces, and ``settings``."""
    return TorrentOptions(listen=False, announce=False, **settings)


async def inline(fn, *args, limiter=None):
    """Storage work run in the trio thread: with the autojump clock, a worker thread
    would let virtual time jump while it runs."""
    return fn(*args)


class Swarm:
    """A Torrent plus fake peers wired to it by memory streams. Fake peer ``n`` is at
    address ``("fakeN", 6881)``: a host of its own, so banning one bans no other."""

    def __init__(self, nursery, torrent, meta, payload):
        self.nursery, self.torrent, self.meta, self.payload = nursery, torrent, meta, payload
        self.n = 0

    def add(self, behaviour: Behaviour | None = None, *, incoming: bool = False,
            peer_id: bytes | None = None, host: str | None = None) -> Stats:
        """Start a fake peer; ``incoming``: as if it had connected to us."""
        self.n += 1
        ours, theirs = trio.testing.memory_stream_pair()
        stats = Stats()
        peer_id = peer_id or b"-FK0001-" + str(self.n).zfill(12).encode()
        self.nursery.start_soon(fake_peer, theirs, self.meta, self.payload, behaviour, stats,
                                peer_id)
        run = self.torrent.accept if incoming else self.torrent.attach
        self.nursery.start_soon(run, ours, (host or f"fake{self.n}", 6881))
        return stats


async def start(nursery, make_swarm, **kw) -> Swarm:
    """A running Torrent from the ``make_swarm`` fixture, with no peers yet."""
    meta, payload, torrent = make_swarm(**kw)
    await nursery.start(torrent.run)
    return Swarm(nursery, torrent, meta, payload)


# -- a peer that speaks the extension protocol (BEP 10, 9, 11) -------------------------

@dataclass
class ExtBehaviour:
    info: bytes | None = None          # metadata it serves (None: it has none)
    size: int | None = None            # metadata_size it claims (default: len(info))
    corrupt: bool = False              # flips a byte of every metadata piece it sends
    answer: bool = True                # False: sits on metadata requests
    reject: bool = False               # rejects every metadata request
    pex: list = field(default_factory=list)  # addresses it tells by ut_pex, once
    pex_flags: int = 0                 # the flags it gives each of them
    # (an entry may be (address, flags); a bare address has pex_flags)
    ask_metadata: bool = False         # requests every piece of the other side's metadata
    listen_port: int | None = None     # 'p' in its extension handshake
    v2: object = None                  # a V2Info: answers BEP 52 hash requests from it
    bad_hashes: bool = False           # flips a byte of every hashes answer

    extra_handshake: dict = field(default_factory=dict)  # more keys in that handshake
    holepunch: bool = False            # offers ut_holepunch (BEP 55), as id 5 on its side
    holepunch_send: list = field(default_factory=list)  # payloads it sends on it, once


@dataclass
class ExtStats:
    handshake: object = None           # the other side's ExtHandshake
    metadata_requests: list = field(default_factory=list)
    metadata: dict = field(default_factory=dict)  # piece -> Data/Reject it got
    pex: list = field(default_factory=list)       # PexMessages it got
    hash_requests: list = field(default_factory=list)  # BEP 52 HashRequests it got
    holepunch: list = field(default_factory=list)  # ut_holepunch payloads it got
    closed: bool = False


async def ext_peer(stream: trio.abc.Stream, info_hash: bytes, behaviour: ExtBehaviour,
                   stats: ExtStats | None = None,
                   peer_id: bytes = b"-FX0001-" + b"0" * 12) -> ExtStats:
    """A peer with no pieces that speaks BEP 10 (ut_metadata id 3, ut_pex id 4 on its
    side) as ``behaviour`` says, until the other side hangs up."""
    from torrentfs.core import metadata, pex
    from torrentfs.core.extension import bdecode, bencode, encode_handshake, parse_handshake
    b, stats = behaviour, stats or ExtStats()
    conn = wire.PeerConnection(info_hash, peer_id, num_pieces=None)
    size = b.size if b.size is not None else (len(b.info) if b.info else None)
    await stream.send_all(conn.handshake())
    try:
        while True:
            event = conn.next_event()
            if event is wire.NEED_DATA:
                conn.receive_data(await stream.receive_some(1 << 16))
                continue
            if isinstance(event, wire.ConnectionClosed):
                break
            out = b""
            if isinstance(event, wire.Handshake):
                greeting = encode_handshake(
                    {"ut_metadata": 3, "ut_pex": 4, **({"ut_holepunch": 5} if b.holepunch
                                                       else {})},
                    metadata_size=size, port=b.listen_port)
                if b.extra_handshake:
                    greeting = bencode({**bdecode(greeting), **b.extra_handshake})
                out += conn.send(wire.Extended(0, greeting))
            elif isinstance(event, wire.Extended) and event.ext_id == 0:
                hs = stats.handshake = parse_handshake(event.payload)
                if b.pex and "ut_pex" in hs.ids:
                    out += conn.send(wire.Extended(hs.ids["ut_pex"], pex.encode(
                        [a if isinstance(a[0], tuple) else (a, b.pex_flags)
                         for a in b.pex])))
                for payload in b.holepunch_send:
                    if "ut_holepunch" in hs.ids:
                        out += conn.send(wire.Extended(hs.ids["ut_holepunch"], payload))
                if b.ask_metadata and hs.metadata_size:
                    for i in range(metadata.num_pieces(hs.metadata_size)):
                        out += conn.send(wire.Extended(hs.ids["ut_metadata"],
                                                       metadata.encode(metadata.Request(i))))
            elif isinstance(event, wire.Extended) and event.ext_id == 4:
                stats.pex.append(pex.decode(event.payload))
            elif isinstance(event, wire.Extended) and event.ext_id == 5:
                stats.holepunch.append(event.payload)
            elif isinstance(event, wire.HashRequest):
                from dataclasses import replace

                from torrentfs.core.piecelayers import HashServer
                stats.hash_requests.append(event)
                reply = (HashServer(b.v2).answer(event) if b.v2 is not None else
                         wire.HashReject(event.pieces_root, event.base_layer, event.index,
                                         event.length, event.proof_layers))
                if b.bad_hashes and isinstance(reply, wire.Hashes):
                    reply = replace(reply, hashes=bytes([reply.hashes[0] ^ 1]) + reply.hashes[1:])
                out += conn.send(reply)
            elif isinstance(event, wire.Extended) and event.ext_id == 3:
                m = metadata.decode(event.payload)
                their = stats.handshake.ids["ut_metadata"]
                if isinstance(m, metadata.Request):
                    stats.metadata_requests.append(m.piece)
                    if not b.answer:
                        continue
                    reply = metadata.Reject(m.piece) if b.reject else metadata.serve(b.info, m)
                    if b.corrupt and isinstance(reply, metadata.Data):
                        reply = metadata.Data(reply.piece, reply.total_size,
                                              bytes([reply.data[0] ^ 1]) + reply.data[1:])
                    out += conn.send(wire.Extended(their, metadata.encode(reply)))
                else:
                    stats.metadata[m.piece] = m
            if out:
                await stream.send_all(out)
    except (trio.BrokenResourceError, trio.ClosedResourceError, wire.ProtocolError):
        pass
    finally:
        stats.closed = True
    return stats
