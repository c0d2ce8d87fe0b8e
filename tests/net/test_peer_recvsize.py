"""The receive path's syscalls at a trickle (issue 13): a receive after one that did
not fill its buffer asks for ``TRICKLE_RECV_SIZE`` (an allocation glibc serves from
its heap, not a fresh mapping), one that filled it is followed by one of
``RECV_SIZE``; the quick ACK is given only after a receive of blocks (or of half a
message) whose messages set no send going. Whatever the sizes, every block lands
whole and unchanged, and a block handed on is never changed by later receives."""

from __future__ import annotations

import os
import socket

import pytest
import trio

from tests.net.test_peer_receive import INFO_HASH, NUM_PIECES, Swarm, session
from torrentfs.core import messages, wire
from torrentfs.net import peer as peer_mod
from torrentfs.net.peer import RECV_SIZE, TRICKLE_RECV_SIZE


def test_a_trickle_receive_stays_under_the_mmap_threshold():
    assert TRICKLE_RECV_SIZE + 64 < 128 << 10  # glibc's initial M_MMAP_THRESHOLD
    assert TRICKLE_RECV_SIZE > 4 * (13 + (16 << 10))  # a few blocks per receive


class Keeping(Swarm):
    """Keeps each block's data as handed over: the view itself, not a copy."""

    def __init__(self) -> None:
        super().__init__()
        self.views: list[tuple[int, int, memoryview]] = []

    def on_message(self, s, msg) -> None:
        if type(msg) is wire.Piece:
            self.views.append((msg.index, msg.begin, msg.data))
        self.got.append(msg)


async def sendall(far, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[await far.send(view):]


async def test_a_block_cut_at_every_byte_lands_whole_and_stays_unchanged(monkeypatch):
    sizes: list[int] = []
    real_read = os.read

    def read(fd, n):
        sizes.append(n)
        return real_read(fd, n)

    monkeypatch.setattr(peer_mod.os, "read", read)
    a, b = socket.socketpair()
    swarm = Keeping()
    s = session(a, swarm)
    remote = wire.PeerConnection(INFO_HASH, b"B" * 20, num_pieces=NUM_PIECES)
    far = trio.socket.from_stdlib_socket(b)
    block = 1 << 10  # small blocks: every cut of one, quickly
    msg_len = 13 + block
    cuts = list(range(1, msg_len))
    s.requests_sent = len(cuts) + 1
    payloads = [os.urandom(block) for _ in cuts]
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(s.run)
            await far.send(remote.handshake())
            for n, (cut, payload) in enumerate(zip(cuts, payloads)):
                data = messages.encode(wire.Piece(n % NUM_PIECES, n, payload),
                                       NUM_PIECES)
                for part in (data[:cut], data[cut:]):
                    await sendall(far, part)
                    await trio.testing.wait_all_tasks_blocked()
            assert len(swarm.views) == len(cuts)
            # one receive filling its buffer (RECV_SIZE worth of keep-alives) ...
            big = b"\0" * (TRICKLE_RECV_SIZE + RECV_SIZE)
            await sendall(far, big)
            while swarm.got.count(wire.KeepAlive()) < len(big) // 4:
                await trio.sleep(0.01)
            s.close("done")
    for n, (index, begin, view) in enumerate(swarm.views):
        assert (index, begin) == (n % NUM_PIECES, n)
        assert bytes(view) == payloads[n]  # still the block, after every later receive
    # the first reads (one finding nothing yet) ask for RECV_SIZE, the trickle's little
    assert set(sizes[2:2 * len(cuts)]) == {TRICKLE_RECV_SIZE}
    assert RECV_SIZE in sizes[2 * len(cuts):]  # ... a full receive, then more
    a.close()
    b.close()


@pytest.mark.parametrize("runs", [False, True], ids=["on_message", "on_blocks"])
async def test_the_quick_ack_only_for_blocks_when_nothing_sent_carries_it(
        monkeypatch, runs):
    acks: list[int] = []

    class Answering(Swarm):
        def on_message(self, s, msg) -> None:
            super().on_message(s, msg)
            if type(msg) is wire.Piece:
                self.answer(s, msg.index)

        def answer(self, s, index) -> None:
            if index == 1:
                s.send_requests([(1, 0, 1 << 14)])  # an answer: it carries the ACK
            if index == 3:
                s.send_lazy(wire.Have(0))  # queued, not sent now: no ACK carried

    class Runs(Answering):
        def on_blocks(self, s, blocks) -> None:
            for index, begin, data in blocks:
                self.got.append(wire.Piece(index, begin, bytes(data)))
                self.answer(s, index)

    def acker(stream):
        return lambda: acks.append(len(swarm.got))

    monkeypatch.setattr(peer_mod, "_quick_acker", acker)
    a, b = socket.socketpair()
    swarm = Runs() if runs else Answering()
    s = session(a, swarm)
    s.requests_sent = 100
    remote = wire.PeerConnection(INFO_HASH, b"B" * 20, num_pieces=NUM_PIECES)
    far = trio.socket.from_stdlib_socket(b)
    blocks = [wire.Piece(i, 0, bytes([i]) * 100) for i in range(4)]

    def enc(msg) -> bytes:
        return messages.encode(msg, NUM_PIECES)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(s.run)
            await far.send(remote.handshake())
            await trio.testing.wait_all_tasks_blocked()
            for data in (enc(blocks[0]),  # a block, nothing sent: acked
                         enc(blocks[1]),  # a block answered: not acked
                         enc(wire.Have(5)),  # no block: not acked
                         enc(blocks[2])[:50],  # half a block: acked
                         enc(blocks[2])[50:],  # the rest: acked
                         enc(blocks[3])):  # a block, a send queued lazily: acked
                await far.send(data)
                await trio.testing.wait_all_tasks_blocked()
            s.close("done")
    assert acks == [1, 3, 4, 5]  # how many messages were in when each came
    assert swarm.got == [blocks[0], blocks[1], wire.Have(5), blocks[2], blocks[3]]
    a.close()
    b.close()
