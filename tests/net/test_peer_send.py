"""The send side of net/peer.py: blocks (``send`` of a Piece, or ``send_block``) are
queued as views, not copied, and a plain TCP stream gets them with ``sendmsg``;
whatever the kernel takes, partly or whole, the peer receives exactly the messages
queued, in order (issue 13)."""

from __future__ import annotations

import os
import socket
from contextlib import asynccontextmanager

import trio

from torrentfs.core import messages, wire
from torrentfs.core.ratelimit import TokenBucket
from torrentfs.net import peer as peer_mod
from torrentfs.net.mse import EncryptedStream, rc4
from torrentfs.net.peer import PeerSession

INFO_HASH = bytes(range(20))
NUM_PIECES = 64
HANDSHAKE_LEN = 68


class Swarm:
    def __init__(self) -> None:
        self.drained = 0
        self.closed = trio.Event()
        self.download_limit = TokenBucket(0)

    def on_handshake(self, s) -> bool:
        return True

    def on_message(self, s, msg) -> None:
        pass

    def on_peer_closed(self, s) -> None:
        self.closed.set()

    def on_drained(self, s) -> None:
        self.drained += 1


def test_plain_socket_found_under_plain_streams_only():
    a, b = socket.socketpair()
    with a, b:
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(a))
        assert peer_mod._plain_socket(stream) is stream.socket
        assert peer_mod._plain_socket(EncryptedStream(stream)) is stream.socket
        encrypted = EncryptedStream(stream, rc4(b"k" * 16), rc4(b"l" * 16))
        assert peer_mod._plain_socket(encrypted) is None
        assert peer_mod._plain_socket(trio.testing.memory_stream_pair()[0]) is None


async def _exchange(wrap) -> tuple[bytes, bytes, Swarm, PeerSession]:
    """A session over a socketpair (its stream made by ``wrap``) queues many blocks
    (far more than the socket buffer holds) and a few other messages; the far end
    reads everything. Returns (what was expected, what arrived, swarm, session)."""
    a, b = socket.socketpair()
    a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 << 10)
    far = trio.socket.from_stdlib_socket(b)
    swarm = Swarm()
    conn = wire.PeerConnection(INFO_HASH, b"A" * 20, num_pieces=NUM_PIECES)
    stream = wrap(trio.SocketStream(trio.socket.from_stdlib_socket(a)))
    s = PeerSession(swarm, stream, ("127.0.0.1", 1), conn, outgoing=True)
    remote = wire.PeerConnection(INFO_HASH, b"B" * 20, num_pieces=NUM_PIECES)
    payload = os.urandom(1 << 20)
    expected = bytearray()
    received = bytearray()
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(s.run)
            await far.send(remote.handshake())
            while len(received) < HANDSHAKE_LEN:
                received += await far.recv(1 << 16)
            del received[:HANDSHAKE_LEN]
            msgs: list[wire.Message] = []
            for n in range(200):
                index, begin = n % NUM_PIECES, (n * 7 % 64) << 14
                msgs.append(wire.Piece(index, begin, memoryview(payload)[begin:begin + (1 << 14)]))
                if n % 37 == 0:
                    msgs.append(wire.Have(n % NUM_PIECES))
            msgs.append(wire.Piece(1, 5, b"xyz"))  # a short last block, bytes
            for k, msg in enumerate(msgs):
                if type(msg) is wire.Piece and k % 2:  # half of them without a Piece
                    s.send_block(msg.index, msg.begin, msg.data)
                else:
                    s.send(msg)
                expected += messages.encode(msg, NUM_PIECES)
            assert s.backlog > 0
            while len(received) < len(expected):
                await trio.sleep(0.001)  # let the far end's buffer fill: partial sends
                received += await far.recv(1 << 16)
            while s.backlog:
                await trio.sleep(0.01)
            s.close("done")
    a.close()
    b.close()
    return bytes(expected), bytes(received), swarm, s


async def test_blocks_arrive_whole_and_in_order_over_sendmsg():
    expected, received, swarm, s = await _exchange(lambda st: st)
    assert received == expected
    assert s.backlog == 0
    assert swarm.drained >= 1


async def test_blocks_arrive_whole_and_in_order_when_joined():
    # A stream that is not a plain socket stream (uTP, RC4) gets the queue joined.
    class Wrapped(trio.abc.Stream):
        def __init__(self, inner):
            self.inner = inner

        async def send_all(self, data):
            await self.inner.send_all(data)

        async def wait_send_all_might_not_block(self):
            await self.inner.wait_send_all_might_not_block()

        async def receive_some(self, max_bytes=None):
            return await self.inner.receive_some(max_bytes)

        async def aclose(self):
            await self.inner.aclose()

    expected, received, swarm, s = await _exchange(Wrapped)
    assert received == expected
    assert s.backlog == 0


@asynccontextmanager
async def handshaken_session(sndbuf: int | None = None):
    """A PeerSession over a socketpair (its socket's send buffer ``sndbuf``), running
    and past the handshake, inside a 20 s bound: ``(session, its swarm, receive)``,
    ``receive(n)`` the next ``n`` bytes at the far end. Closed on the way out."""
    a, b = socket.socketpair()
    if sndbuf is not None:
        a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    far = trio.socket.from_stdlib_socket(b)
    swarm = Swarm()
    conn = wire.PeerConnection(INFO_HASH, b"A" * 20, num_pieces=NUM_PIECES)
    s = PeerSession(swarm, trio.SocketStream(trio.socket.from_stdlib_socket(a)),
                    ("127.0.0.1", 1), conn, outgoing=True)
    remote = wire.PeerConnection(INFO_HASH, b"B" * 20, num_pieces=NUM_PIECES)
    got = bytearray()

    async def receive(n: int) -> bytes:
        while len(got) < n:
            got.extend(await far.recv(1 << 16))
        data = bytes(got[:n])
        del got[:n]
        return data

    try:
        with trio.fail_after(20):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(s.run)
                await far.send(remote.handshake())
                await receive(HANDSHAKE_LEN)
                await trio.testing.wait_all_tasks_blocked()
                yield s, swarm, receive
                s.close("done")
    finally:
        a.close()
        b.close()


async def test_a_lazy_message_waits_for_a_flush_or_the_next_send():
    async with handshaken_session() as (s, _, receive):
        s.send_lazy(wire.Have(3))
        await trio.testing.wait_all_tasks_blocked()
        assert s.backlog == 9  # queued, the sender not woken
        s.flush()
        assert await receive(9) == messages.encode(wire.Have(3), NUM_PIECES)
        s.send_lazy(wire.Have(4))
        s.send(wire.Have(5))  # the next message takes it along
        assert await receive(18) == (messages.encode(wire.Have(4), NUM_PIECES)
                                     + messages.encode(wire.Have(5), NUM_PIECES))


async def test_push_sends_from_the_callers_task_and_leaves_the_rest_to_the_sender():
    # An uploader's round queues blocks without waking the sender, then pushes: an
    # idle sender's socket takes what it can at once (no task step), the drain is
    # told at once; what the socket cannot take goes with the sender, in order.
    payload = os.urandom(1 << 20)
    async with handshaken_session(sndbuf=16 << 10) as (s, swarm, receive):
        drained = swarm.drained
        s.send_block(0, 0, payload[:1024], wake=False)
        s.send_block(0, 1024, payload[1024:2048], wake=False)
        assert s.backlog == 2 * (13 + 1024)  # queued, the sender not woken
        s.push()
        assert s.backlog == 0 and swarm.drained == drained + 1  # sent here, now
        assert await receive(2 * (13 + 1024)) == b"".join(
            messages.encode(wire.Piece(0, begin, payload[begin:begin + 1024]),
                            NUM_PIECES) for begin in (0, 1024))
        expected = bytearray()
        for n in range(48):  # far more than the socket holds
            begin = n << 14
            s.send_block(1, begin, memoryview(payload)[begin:begin + (1 << 14)],
                         wake=False)
            expected += messages.encode(
                wire.Piece(1, begin, payload[begin:begin + (1 << 14)]), NUM_PIECES)
        s.push()
        assert 0 < s.backlog < len(expected)  # the socket took part of it
        assert swarm.drained == drained + 1
        assert await receive(len(expected)) == bytes(expected)
        while s.backlog:
            await trio.sleep(0.01)
        await trio.testing.wait_all_tasks_blocked()
        assert swarm.drained == drained + 2  # the sender finished and told it
