"""net/peer.py hands a swarm with ``on_blocks`` the blocks of a receive as runs
(issue 13): every block arrives, in order, with the other messages in between as
before; the session's books (blocks, bytes, rate) count each block once; a peer that
sends more than the slack allows is dropped at the slack, as block by block."""

from __future__ import annotations

import os
import socket

import trio

from tests.net.test_peer_receive import (
    INFO_HASH,
    NUM_PIECES,
    Swarm,
    send_in_growing_pieces,
    session,
)
from torrentfs.core import messages, wire
from torrentfs.net.peer import UNREQUESTED_SLACK

BLOCK = 1 << 14


class Runs(Swarm):
    def __init__(self) -> None:
        super().__init__()
        self.runs: list[int] = []

    def on_message(self, s, msg) -> None:
        assert type(msg) is not wire.Piece, "blocks come in runs"
        super().on_message(s, msg)

    def on_blocks(self, s, blocks) -> None:
        self.runs.append(len(blocks))
        self.got.extend(wire.Piece(i, b, bytes(d)) for i, b, d in blocks)


async def test_blocks_come_in_runs_in_order_and_are_counted_once():
    a, b = socket.socketpair()
    swarm = Runs()
    s = session(a, swarm)
    s.requests_sent = 1000
    remote = wire.PeerConnection(INFO_HASH, b"B" * 20, num_pieces=NUM_PIECES)
    payload = os.urandom(1 << 20)
    sent: list[wire.Message] = [wire.Unchoke()]
    for n in range(60):
        if n % 7 == 3:
            sent.append(wire.Have(n % NUM_PIECES))
        sent.append(wire.Piece(n % NUM_PIECES, BLOCK, payload[n << 14:(n + 1) << 14]))
    sent.append(wire.Piece(1, 0, b"z"))  # a short last block
    data = remote.handshake() + b"".join(messages.encode(m, NUM_PIECES) for m in sent)
    far = trio.socket.from_stdlib_socket(b)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(s.run)
            await send_in_growing_pieces(far, data)
            while len(swarm.got) < len(sent):
                await trio.sleep(0.01)
            assert swarm.got == sent
            assert max(swarm.runs) > 1  # several blocks of one receive, as one run
            assert s.blocks_received == 61 == sum(swarm.runs)
            assert s.down.total == 60 * BLOCK + 1
            assert not s.closed
            s.close("done")
    a.close()
    b.close()


async def test_a_run_past_the_slack_is_taken_up_to_it_and_the_peer_dropped():
    a, b = socket.socketpair()
    swarm = Runs()
    s = session(a, swarm)
    s.requests_sent = 3
    remote = wire.PeerConnection(INFO_HASH, b"B" * 20, num_pieces=NUM_PIECES)
    blocks = [wire.Piece(i % NUM_PIECES, 0, bytes(BLOCK)) for i in range(24)]
    data = remote.handshake() + b"".join(messages.encode(m, NUM_PIECES) for m in blocks)
    far = trio.socket.from_stdlib_socket(b)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(s.run)

            async def push() -> None:  # until the session drops us
                pos = 0
                try:
                    while pos < len(data):
                        pos += await far.send(data[pos:])
                except OSError:
                    pass
            nursery.start_soon(push)
            await swarm.closed.wait()
    assert s.close_reason == "sent blocks we never asked for"
    assert swarm.got == blocks[:3 + UNREQUESTED_SLACK]
    assert s.blocks_received == 3 + UNREQUESTED_SLACK
    assert s.down.total == (3 + UNREQUESTED_SLACK) * BLOCK
    a.close()
    b.close()
