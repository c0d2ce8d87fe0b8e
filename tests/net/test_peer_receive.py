"""The receive side of net/peer.py over a real socket: a plain TCP stream (or one
under MSE that only replays its first bytes) is read directly from its descriptor,
waiting for it to be readable only after a read that emptied it (issue 13). Whatever
the pieces the bytes come in, the swarm hears every message, in order; an EOF ends
the session as the peer closing it."""

from __future__ import annotations

import os
import socket

import trio

from torrentfs.core import messages, wire
from torrentfs.core.ratelimit import TokenBucket
from torrentfs.net import peer as peer_mod
from torrentfs.net.mse import EncryptedStream, rc4
from torrentfs.net.peer import RECV_SIZE, PeerSession

INFO_HASH = bytes(range(20))
NUM_PIECES = 64


class Swarm:
    def __init__(self) -> None:
        self.got: list[wire.Message] = []
        self.closed = trio.Event()
        self.download_limit = TokenBucket(0)

    def on_handshake(self, s) -> bool:
        return True

    def on_message(self, s, msg) -> None:
        if type(msg) is wire.Piece:  # a view into the receive buffer: keep a copy
            msg = wire.Piece(msg.index, msg.begin, bytes(msg.data))
        self.got.append(msg)

    def on_peer_closed(self, s) -> None:
        self.closed.set()

    def on_drained(self, s) -> None:
        pass


def session(a: socket.socket, swarm) -> PeerSession:
    """An incoming session of ``swarm`` on our end ``a`` of a socket pair."""
    conn = wire.PeerConnection(INFO_HASH, b"A" * 20, num_pieces=NUM_PIECES)
    return PeerSession(swarm, trio.SocketStream(trio.socket.from_stdlib_socket(a)),
                       ("127.0.0.1", 1), conn, outgoing=False)


async def send_in_growing_pieces(far, data: bytes) -> None:
    """Send ``data`` a byte, then larger and larger pieces, letting the session run
    between them: every way a message can be cut across receives."""
    pos, step = 0, 1
    while pos < len(data):
        end = min(len(data), pos + step)
        while pos < end:
            pos += await far.send(data[pos:end])
        step = step * 3 + 1
        await trio.sleep(0)


def test_receive_fd_only_for_what_arrives_as_it_is():
    a, b = socket.socketpair()
    with a, b:
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(a))
        assert peer_mod._receive_fd(stream) == a.fileno()
        assert peer_mod._receive_fd(EncryptedStream(stream)) == a.fileno()
        assert peer_mod._receive_fd(EncryptedStream(stream, head=b"x")) is None  # replays
        decrypting = EncryptedStream(stream, rc4(b"k" * 16), rc4(b"l" * 16))
        assert peer_mod._receive_fd(decrypting) is None
        assert peer_mod._receive_fd(trio.testing.memory_stream_pair()[0]) is None


async def test_every_message_arrives_in_order_whatever_the_reads():
    a, b = socket.socketpair()
    swarm = Swarm()
    s = session(a, swarm)
    s.requests_sent = 1000  # the blocks below were asked for
    remote = wire.PeerConnection(INFO_HASH, b"B" * 20, num_pieces=NUM_PIECES)
    payload = os.urandom(1 << 20)
    sent: list[wire.Message] = [wire.Unchoke()]
    for n in range(40):
        sent.append(wire.Have(n % NUM_PIECES))
        sent.append(wire.Piece(n % NUM_PIECES, 0, payload[n << 14:(n + 1) << 14]))
    data = remote.handshake() + b"".join(messages.encode(m, NUM_PIECES) for m in sent)
    data += b"\0" * (RECV_SIZE + 100)  # keep-alives: more than one read takes
    far = trio.socket.from_stdlib_socket(b)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(s.run)
            await send_in_growing_pieces(far, data)
            while swarm.got.count(wire.KeepAlive()) < (RECV_SIZE + 100) // 4:
                await trio.sleep(0.01)
            assert swarm.got[:len(sent)] == sent
            assert not s.closed
            b.shutdown(socket.SHUT_WR)  # EOF
            await swarm.closed.wait()
    assert s.close_reason == "peer closed the connection"
    a.close()
    b.close()


async def test_the_swarm_hears_once_per_receive_after_its_messages():
    class Counting(Swarm):
        def on_received(self, s) -> None:
            self.got.append("received")

    a, b = socket.socketpair()
    swarm = Counting()
    s = session(a, swarm)
    remote = wire.PeerConnection(INFO_HASH, b"B" * 20, num_pieces=NUM_PIECES)
    far = trio.socket.from_stdlib_socket(b)
    haves = b"".join(messages.encode(wire.Have(i), NUM_PIECES) for i in range(3))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(s.run)
            await far.send(remote.handshake())
            await trio.testing.wait_all_tasks_blocked()
            assert swarm.got == []  # the handshake is no message for the swarm
            await far.send(haves)  # three messages in one receive
            while "received" not in swarm.got:
                await trio.sleep(0.01)
            assert swarm.got == [wire.Have(0), wire.Have(1), wire.Have(2), "received"]
            await far.send(haves[:13])  # one whole, one cut: heard after the whole one
            while swarm.got.count("received") < 2:
                await trio.sleep(0.01)
            await far.send(haves[13:18])
            while swarm.got.count("received") < 3:
                await trio.sleep(0.01)
            assert swarm.got[4:] == [wire.Have(0), "received", wire.Have(1), "received"]
            s.close("done")
    a.close()
    b.close()


async def test_a_run_of_haves_is_handed_over_at_once():
    class Runs(Swarm):
        def on_haves(self, s, indexes) -> None:
            self.got.append(("haves", list(indexes)))

        def on_received(self, s) -> None:
            self.got.append("received")

    a, b = socket.socketpair()
    swarm = Runs()
    s = session(a, swarm)
    remote = wire.PeerConnection(INFO_HASH, b"B" * 20, num_pieces=NUM_PIECES)
    far = trio.socket.from_stdlib_socket(b)

    def enc(*msgs) -> bytes:
        return b"".join(messages.encode(m, NUM_PIECES) for m in msgs)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(s.run)
            await far.send(remote.handshake() + enc(wire.Unchoke()))
            while "received" not in swarm.got:
                await trio.sleep(0.01)
            # HAVEs, a choke between two runs, half a HAVE at the end
            data = enc(wire.Have(5), wire.Have(1), wire.Have(63), wire.Choke(),
                       wire.Have(2), wire.Have(3))
            await far.send(data[:-4])
            while swarm.got.count("received") < 2:
                await trio.sleep(0.01)
            await far.send(data[-4:])
            while swarm.got.count("received") < 3:
                await trio.sleep(0.01)
            assert swarm.got == [wire.Unchoke(), "received",
                                 ("haves", [5, 1, 63]), wire.Choke(), ("haves", [2]),
                                 "received", ("haves", [3]), "received"]
            assert s.peer_choking
            s.close("done")
    a.close()
    b.close()
