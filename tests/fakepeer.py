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
