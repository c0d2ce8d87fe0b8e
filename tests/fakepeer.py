"""A scriptable BitTorrent peer for shell tests: speaks the wire protocol over any
trio stream (usually an in-memory one), serving a payload, and can misbehave on
purpose (never answer, answer late, send corrupt data)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import trio

from torrentfs import wire
from torrentfs.create import create_torrent
from torrentfs.metainfo import parse


@dataclass
class Behaviour:
    answer: bool = True          # False: swallow every request (a stalled peer)
    delay: float = 0.0           # seconds before each answer
    corrupt: set[int] = field(default_factory=set)  # pieces whose blocks are flipped
    have: set[int] | None = None  # pieces it has (None: all)
    garbage_after: int | None = None  # after this many answers, send an oversized message


@dataclass
class Stats:
    requests: list[tuple[int, int, int]] = field(default_factory=list)
    cancels: list[tuple[int, int, int]] = field(default_factory=list)
    sent_bytes: int = 0
    closed: bool = False


async def fake_peer(stream: trio.abc.Stream, meta, payload: bytes,
                    behaviour: Behaviour | None = None, stats: Stats | None = None,
                    peer_id: bytes = b"-FK0001-" + b"0" * 12) -> Stats:
    """Serve ``payload`` (the torrent's whole byte stream) to whoever is on the other
    end of ``stream`` until it hangs up."""
    b = behaviour or Behaviour()
    stats = stats or Stats()
    conn = wire.PeerConnection(meta.info_hash, peer_id, num_pieces=meta.num_pieces)
    lock = trio.Lock()

    async def send(data: bytes) -> None:
        async with lock:
            await stream.send_all(data)

    await send(conn.handshake())
    plen = meta.piece_length
    async with trio.open_nursery() as nursery:
        answered = 0

        async def answer(req: wire.Request) -> None:
            nonlocal answered
            if b.delay:
                await trio.sleep(b.delay)
            answered += 1
            if b.garbage_after is not None and answered > b.garbage_after:
                await send((1 << 30).to_bytes(4, "big") + b"\x07" + b"x" * 100)
                return
            start = req.index * plen + req.begin
            data = bytearray(payload[start:start + req.length])
            if req.index in b.corrupt:
                data[0] ^= 0xFF
            try:
                await send(conn.send(wire.Piece(req.index, req.begin, bytes(data))))
                stats.sent_bytes += len(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

        try:
            while True:
                event = conn.next_event()
                if event is wire.NEED_DATA:
                    conn.receive_data(await stream.receive_some(1 << 16))
                    continue
                if isinstance(event, wire.ConnectionClosed):
                    break
                if isinstance(event, wire.Handshake):
                    if b.have is None:
                        out = conn.send(wire.HaveAll()) if conn.fast else conn.send(
                            wire.Bitfield(b"\xff" * ((meta.num_pieces + 7) // 8)))
                    else:
                        bits = bytearray((meta.num_pieces + 7) // 8)
                        for i in b.have:
                            bits[i >> 3] |= 0x80 >> (i & 7)
                        out = conn.send(wire.Bitfield(bytes(bits)))
                    await send(out)
                elif isinstance(event, wire.Interested):
                    await send(conn.send(wire.Unchoke()))
                elif isinstance(event, wire.Request):
                    stats.requests.append((event.index, event.begin, event.length))
                    if b.answer:
                        nursery.start_soon(answer, event)
                elif isinstance(event, wire.Cancel):
                    stats.cancels.append((event.index, event.begin, event.length))
        except (trio.BrokenResourceError, trio.ClosedResourceError, wire.ProtocolError):
            pass
        finally:
            stats.closed = True
            nursery.cancel_scope.cancel()
    return stats


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


# -- a peer that speaks the extension protocol (BEP 10, 9, 11) -------------------------

@dataclass
class ExtBehaviour:
    info: bytes | None = None          # metadata it serves (None: it has none)
    size: int | None = None            # metadata_size it claims (default: len(info))
    corrupt: bool = False              # flips a byte of every metadata piece it sends
    answer: bool = True                # False: sits on metadata requests
    reject: bool = False               # rejects every metadata request
    pex: list = field(default_factory=list)  # addresses it tells by ut_pex, once
    ask_metadata: bool = False         # requests every piece of the other side's metadata
    listen_port: int | None = None     # 'p' in its extension handshake


@dataclass
class ExtStats:
    handshake: object = None           # the other side's ExtHandshake
    metadata_requests: list = field(default_factory=list)
    metadata: dict = field(default_factory=dict)  # piece -> Data/Reject it got
    pex: list = field(default_factory=list)       # PexMessages it got
    closed: bool = False


async def ext_peer(stream: trio.abc.Stream, info_hash: bytes, behaviour: ExtBehaviour,
                   stats: ExtStats | None = None,
                   peer_id: bytes = b"-FX0001-" + b"0" * 12) -> ExtStats:
    """A peer with no pieces that speaks BEP 10 (ut_metadata id 3, ut_pex id 4 on its
    side) as ``behaviour`` says, until the other side hangs up."""
    from torrentfs import metadata, pex
    from torrentfs.extension import encode_handshake, parse_handshake
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
                out += conn.send(wire.Extended(0, encode_handshake(
                    {"ut_metadata": 3, "ut_pex": 4}, metadata_size=size, port=b.listen_port)))
            elif isinstance(event, wire.Extended) and event.ext_id == 0:
                hs = stats.handshake = parse_handshake(event.payload)
                if b.pex and "ut_pex" in hs.ids:
                    out += conn.send(wire.Extended(hs.ids["ut_pex"], pex.encode(
                        [(a, 0) for a in b.pex])))
                if b.ask_metadata and hs.metadata_size:
                    for i in range(metadata.num_pieces(hs.metadata_size)):
                        out += conn.send(wire.Extended(hs.ids["ut_metadata"],
                                                       metadata.encode(metadata.Request(i))))
            elif isinstance(event, wire.Extended) and event.ext_id == 4:
                stats.pex.append(pex.decode(event.payload))
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
