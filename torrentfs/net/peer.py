"""One peer connection: the trio shell over ``wire.PeerConnection``.

A ``PeerSession`` owns a socket stream and two tasks: a receiver that feeds bytes to
the wire core and hands each message to the swarm (``Swarm.on_message``), and a
sender that writes whatever ``send`` queued. It tracks the four BEP 3 flags (choked and
interested, both ways), rates, and when the peer last spoke. Any protocol error, EOF
or timeout ends the session; the swarm hears of it through ``on_peer_closed``.

A hostile peer costs bounded memory and time: the wire core refuses oversized
messages before buffering them; what is buffered is at most one message plus one
read; half a message that does not complete within ``PARTIAL_TIMEOUT`` ends the
session (slowloris), as does silence for ``IDLE_TIMEOUT``; a peer that sends more
blocks than we ever asked it for (``UNREQUESTED_SLACK`` spare) is dropped.

``send`` never blocks: it encodes and appends to an outgoing queue, so the swarm's
(synchronous) decisions can send without awaiting. The queue is bounded: a peer that
does not read what we send is dropped. A block's payload is queued as it is (a view
of a verified piece in memory), not copied: on a plain TCP connection the sender hands
the queue to the kernel with ``sendmsg`` (many messages, heads and payloads, per call);
an encrypted or uTP stream gets them joined.
"""

from __future__ import annotations

import itertools
import logging
import os
import socket
from collections import deque
from typing import Callable, Protocol

import trio

from torrentfs.core import wire
from torrentfs.core.ratelimit import Rate, TokenBucket

log = logging.getLogger("torrentfs.peer")

HANDSHAKE_TIMEOUT = 10.0
CONNECT_TIMEOUT = 5.0
IDLE_TIMEOUT = 180.0      # no message at all from the peer for this long: drop it
PARTIAL_TIMEOUT = 60.0    # part of a message pending this long: drop it
UNREQUESTED_SLACK = 16    # blocks beyond what we ever requested that a peer may send
KEEPALIVE_EVERY = 90.0
RECV_SIZE = 1 << 18
# What a receive asks for after a small one (under half this: a trickle, a block or
# a request at a time). CPython allocates the whole size for a read, then shrinks
# it to what came; glibc maps an allocation over its mmap threshold (128 KiB at
# first) afresh each time (mmap, page faults, mremap, munmap: the shrink keeps the
# threshold from rising), one under it comes from the heap, where shrinking is free.
# A receive of more (a fast peer) is followed by one of RECV_SIZE: a read of 96 KiB
# after each short one made the fast read's receives a fifth more.
TRICKLE_RECV_SIZE = 96 << 10
MAX_SEND_BUFFER = 8 << 20
SEND_IOV = 64             # buffers per sendmsg call (the kernel allows IOV_MAX, 1024)


class Swarm(Protocol):
    def on_handshake(self, session: "PeerSession") -> bool: ...
    def on_message(self, session: "PeerSession", msg: wire.Message) -> None: ...
    # Optional: told when the messages of one receive are all handled (the work
    # several of them ask for, done once: ``Torrent.on_received``).
    # def on_received(self, session: "PeerSession") -> None: ...
    # Optional: a run of blocks of one receive, ``[(index, begin, data), ...]``,
    # instead of an on_message of a Piece for each (the session's books done once).
    # def on_blocks(self, session: "PeerSession", blocks: list) -> None: ...
    # Optional: a run of HAVE messages of one receive, their piece indexes in order,
    # instead of an on_message for each.
    # def on_haves(self, session: "PeerSession", indexes: list[int]) -> None: ...
    def on_peer_closed(self, session: "PeerSession") -> None: ...
    def on_drained(self, session: "PeerSession") -> None: ...
    download_limit: TokenBucket  # shared by all sessions: applied as blocks arrive


class PeerSession:
    source = "peer"  # whose bytes, for the metrics: "origin" if the swarm says so

    def __init__(self, swarm: Swarm, stream: trio.abc.Stream, addr: tuple[str, int],
                 conn: wire.PeerConnection, *, outgoing: bool) -> None:
        self.swarm = swarm
        self.stream = stream
        self.addr = addr
        self.conn = conn
        self.outgoing = outgoing
        self.transport = "tcp"   # or "utp" (the connector says)
        self.peer_id: bytes | None = None
        self.am_choking = True
        self.am_interested = False
        self.peer_choking = True
        self.peer_interested = False
        self.down = Rate()
        self.up = Rate()
        now = trio.current_time()
        self.connected_at = now
        self.last_received = now
        self.last_sent = now
        self.last_block = now
        self._out: deque = deque()  # buffers to send, in order
        self._out_len = 0            # their bytes
        self._wake = trio.Event()
        self._sends = 0              # sends set going (woken or pushed): see ``_receiver``
        self._idle_fd = -1           # the socket while the sender waits idle (``push``)
        self._full = False           # ``push`` left it full: wait for room, then write
        self._cancel = trio.CancelScope()
        self.closed = False
        self.close_reason = ""
        self.registered = False  # set by the swarm once the peer is in its picker
        self.snubbed = False     # it sat on our requests (set by the swarm)
        self.queued: set[tuple[int, int, int]] = set()  # its requests we have yet to answer
        self.upload_fifo: deque = deque()  # those requests, in arrival order
        self.last_useful = now   # last time either side was interested
        self.requests_sent = 0   # block requests we ever sent it ...
        self.blocks_received = 0  # ... and blocks it ever sent us
        self.refused = 0         # its requests refused in a row (upload.py)
        self.reqq = 0            # requests it queues at most (BEP 10 'reqq'; 0: not told)

    def __repr__(self) -> str:
        return f"<peer {self.addr[0]}:{self.addr[1]}>"

    @property
    def fast(self) -> bool:
        return self.conn.fast

    # -- sending ------------------------------------------------------------------

    def send(self, msg: wire.Message) -> None:
        """Queue a message; never blocks. Updates our choke/interest flags."""
        if self.closed:
            return
        if type(msg) is wire.Piece:  # the common case: no flag to update, no copy
            head, data = self.conn.send_piece(msg)
            self._out.append(head)
            self._out.append(data)
            self._queued(len(head) + len(data))
            return
        if isinstance(msg, wire.Choke):
            self.am_choking = True
        elif isinstance(msg, wire.Unchoke):
            self.am_choking = False
        elif isinstance(msg, wire.Interested):
            self.am_interested = True
        elif isinstance(msg, wire.NotInterested):
            self.am_interested = False
        elif isinstance(msg, wire.Request):
            self.requests_sent += 1
        data = self.conn.send(msg)
        self._out.append(data)
        self._queued(len(data))

    def send_block(self, index: int, begin: int, data, wake: bool = True) -> None:
        """``send(Piece(index, begin, data))`` without the message object (a seed
        sends this most); ``data``, bytes-like of bytes, is queued as it is. With
        ``wake=False`` the sender is not woken: the caller ``push``es."""
        if self.closed:
            return
        head = self.conn.send_block(index, begin, len(data))
        out = self._out
        out.append(head)
        out.append(data)
        self._queued(13 + len(data), wake)

    def send_requests(self, blocks: list[tuple[int, int, int]]) -> None:
        """Queue a Request for each ``(index, begin, length)``, as one buffer (what
        a pick asks for: many per call)."""
        if self.closed or not blocks:
            return
        data = self.conn.send_requests(blocks)
        self.requests_sent += len(blocks)
        self._out.append(data)
        self._queued(len(data))

    def send_lazy(self, msg: wire.Message) -> None:
        """Queue a message without waking the sender: it leaves with the next
        message sent, or at the next ``flush`` (HAVEs: many per wake-up)."""
        if self.closed:
            return
        data = self.conn.send(msg)
        self._out.append(data)
        self._queued(len(data), wake=False)

    def flush(self) -> None:
        """Send what ``send_lazy`` queued, now."""
        if self._out:
            self._sends += 1
            self._wake.set()

    def push(self) -> None:
        """Send what is queued now, from the calling task, if the sender is idle on
        a plain TCP socket: one ``writev`` there, the sender woken only for what the
        kernel does not take (else it is woken, as by ``flush``). An uploader's round
        ends with this: at a trickle every block went out on a sender wake-up and
        task step of its own, and its drain woke the uploader again."""
        if not self._out or self.closed:
            return
        self._sends += 1
        fd = self._idle_fd
        if fd < 0:  # the sender is busy, or it joins the queue for a stream
            self._wake.set()
            return
        bufs = list(itertools.islice(self._out, SEND_IOV))
        try:
            sent = os.writev(fd, bufs)
        except BlockingIOError:
            sent = 0
        except OSError:  # the sender meets it again and ends the session
            self._wake.set()
            return
        self._took(bufs, sent)
        if self._out:  # the socket is full: the sender waits for room
            self._idle_fd = -1
            self._full = True
            self._wake.set()
        else:
            self.last_sent = trio.current_time()
            self.swarm.on_drained(self)

    def _queued(self, n: int, wake: bool = True) -> None:
        self._out_len += n
        if self._out_len > MAX_SEND_BUFFER:
            self.close("peer does not read what we send")
        if wake:
            self._sends += 1
            self._wake.set()

    def close(self, reason: str = "") -> None:
        """End the session (from any task)."""
        if not self.closed:
            self.closed = True
            self.close_reason = reason
            self._cancel.cancel()

    # -- running ------------------------------------------------------------------

    async def run(self, *, send_handshake: bool = True) -> None:
        """Handshake, then pump messages both ways until closed or failed. Whatever
        goes wrong with this peer ends this session only: never the mount."""
        try:
            with self._cancel:
                await self._guarded(self._run, send_handshake)
        finally:
            self.closed = True
            with trio.CancelScope(shield=True):
                with trio.move_on_after(1):
                    await self.stream.aclose()
                log.info("%r closed: %s (received %d bytes of blocks, sent %d)", self,
                         self.close_reason or "shutting down", self.down.total,
                         self.up.total)
                self.swarm.on_peer_closed(self)

    async def _run(self, send_handshake: bool) -> None:
        if send_handshake:
            await self.stream.send_all(self.conn.handshake())
        with trio.fail_after(HANDSHAKE_TIMEOUT):
            hs = await self._next_event()
        if isinstance(hs, wire.ConnectionClosed):  # a full peer does that (connector.py)
            self.close_reason = "peer closed the connection before its handshake"
            return
        if not isinstance(hs, wire.Handshake):
            raise wire.RemoteProtocolError("expected a handshake")
        self.peer_id = hs.peer_id
        if not send_handshake:
            await self.stream.send_all(self.conn.handshake())
        if not self.swarm.on_handshake(self):
            return
        async with trio.open_nursery() as nursery:
            # Each task catches its own errors (a nursery would wrap them in an
            # ExceptionGroup) and ends the session when it ends.
            async def pump(fn) -> None:
                try:
                    await self._guarded(fn)
                finally:
                    nursery.cancel_scope.cancel()

            nursery.start_soon(pump, self._sender)
            await pump(self._receiver)

    async def _guarded(self, fn, *args) -> None:
        """Run ``fn``, turning a peer's failure into a close reason."""
        try:
            await fn(*args)
        except wire.ProtocolError as e:
            self.close_reason = self.close_reason or f"protocol error: {e}"
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
            self.close_reason = self.close_reason or f"connection lost: {e}"
        except trio.TooSlowError:
            self.close_reason = self.close_reason or "timed out"
        except Exception as e:  # a bug of ours in handling this peer: drop the peer only
            log.exception("error while talking to %r", self)
            self.close_reason = self.close_reason or f"internal error: {e!r}"

    async def _next_event(self) -> wire.Message:
        while True:
            event = self.conn.next_event()
            if event is not wire.NEED_DATA:
                return event
            data = await self.stream.receive_some(RECV_SIZE)
            self.last_received = trio.current_time()
            self.conn.receive_data(data)

    def _receive_deadline(self, partial_since: float | None) -> float:
        """When the peer is dropped if nothing more arrives: IDLE_TIMEOUT after the
        last byte, or PARTIAL_TIMEOUT after half a message began to wait."""
        deadline = self.last_received + IDLE_TIMEOUT
        if partial_since is not None:
            deadline = min(deadline, partial_since + PARTIAL_TIMEOUT)
        return deadline

    async def _receiver(self) -> None:
        # One cancel scope at a time holds the deadline. It is moved earlier when it
        # must be (half a message began to wait), never later: moving a trio deadline
        # costs heap work, and data moves it on with every read. When it fires too
        # early the true deadline is worked out again and a new scope waits for it:
        # about once a PARTIAL_TIMEOUT, not once a read.
        partial_since: float | None = None
        resume_at = 0.0  # the download limit's pause runs until then
        ack = _quick_acker(self.stream)
        # The quick ACK is for a peer sending us blocks (more to come: its next one
        # may wait for our ACK), so it is given once the messages of a receive are
        # handled, if they were blocks or left half a message, and set no send going
        # (a request we send carries the ACK). A receive of requests or HAVEs alone
        # needs none (a seed got a setsockopt per request). ``ack_sends`` is
        # ``_sends`` at the receive (-1: none due); ``got_blocks``: it had blocks.
        ack_sends = -1
        got_blocks = False
        size = RECV_SIZE  # what the next receive asks for
        # A plain TCP socket is read directly (``_receive_fd``): one wake-up, one
        # recv, one task step per arrival, where trio's ``receive_some`` adds a
        # recv that fails (EAGAIN) and a second step after each that succeeds.
        fd = _receive_fd(self.stream)
        drained = False  # the last read emptied the socket: wait before the next
        received = getattr(self.swarm, "on_received", None)
        on_blocks = getattr(self.swarm, "on_blocks", None)  # a run of blocks at once
        on_haves = getattr(self.swarm, "on_haves", None)  # a run of HAVEs at once
        handled = False  # a message since the last receive: tell ``received``
        while True:
            with trio.CancelScope(deadline=self._receive_deadline(partial_since)) as idle:
                while True:
                    if resume_at:
                        if resume_at > trio.current_time():
                            # stop reading this socket a while: TCP slows the peer
                            await trio.sleep_until(resume_at)
                        resume_at = 0.0
                    event = self.conn.next_event()
                    if event is wire.NEED_DATA:
                        if handled and received is not None:
                            handled = False
                            received(self)
                            if self.closed:
                                return
                        if ack_sends == self._sends and (got_blocks
                                                         or self.conn.buffered):
                            ack()
                        ack_sends = -1
                        got_blocks = False
                        if self.conn.buffered and partial_since is None:
                            partial_since = trio.current_time()
                            idle.deadline = min(idle.deadline,
                                                partial_since + PARTIAL_TIMEOUT)
                        if fd is None:
                            data = await self.stream.receive_some(size)
                        else:
                            if drained:
                                await trio.lowlevel.wait_readable(fd)
                            try:
                                data = os.read(fd, size)
                            except BlockingIOError:
                                drained = True
                                continue
                            drained = len(data) < size
                            if not drained:  # more may be waiting: let others run first
                                await trio.lowlevel.checkpoint()
                        size = (TRICKLE_RECV_SIZE if len(data) < TRICKLE_RECV_SIZE // 2
                                else RECV_SIZE)
                        if ack is not None:
                            ack_sends = self._sends
                        self.last_received = trio.current_time()
                        self.conn.receive_data(data)
                        continue
                    partial_since = None
                    if type(event) is wire.Piece and on_blocks is not None:
                        blocks = [(event.index, event.begin, event.data),
                                  *self.conn.take_blocks()]
                        over = self.blocks_received + len(blocks) - (
                            self.requests_sent + UNREQUESTED_SLACK)
                        if over > 0:  # the run goes past the slack: up to it, then drop
                            del blocks[len(blocks) - over:]
                            self.close_reason = "sent blocks we never asked for"
                        if blocks:
                            got_blocks = True
                            resume_at = self._got_blocks(blocks)
                            on_blocks(self, blocks)
                            handled = True
                        if self.closed or over > 0:
                            return
                        continue
                    if type(event) is wire.Have and on_haves is not None:
                        on_haves(self, [event.index, *self.conn.take_haves()])
                        handled = True
                        if self.closed:
                            return
                        continue
                    if type(event) is wire.Piece:
                        got_blocks = True
                        self.blocks_received += 1
                        if self.blocks_received > self.requests_sent + UNREQUESTED_SLACK:
                            self.close_reason = "sent blocks we never asked for"
                            return
                        now = self.last_received
                        self.down.add(len(event.data), now)
                        self.last_block = now
                        self.snubbed = False
                        limit = self.swarm.download_limit
                        if not limit.unlimited:
                            wait = limit.take(len(event.data), now)
                            if wait:
                                resume_at = now + wait
                    elif type(event) is wire.Request:
                        pass  # the common case for a seed: no flag to update
                    elif isinstance(event, wire.ConnectionClosed):
                        self.close_reason = "peer closed the connection"
                        return
                    elif isinstance(event, wire.Choke):
                        self.peer_choking = True
                    elif isinstance(event, wire.Unchoke):
                        self.peer_choking = False
                    elif isinstance(event, wire.Interested):
                        self.peer_interested = True
                    elif isinstance(event, wire.NotInterested):
                        self.peer_interested = False
                    self.swarm.on_message(self, event)
                    handled = True
                    if self.closed:
                        return
            if trio.current_time() >= self._receive_deadline(partial_since):
                break
        if partial_since is not None and self.conn.buffered:
            self.close_reason = f"half a message pending for {PARTIAL_TIMEOUT:.0f} s"
        else:
            self.close_reason = f"peer silent for {IDLE_TIMEOUT:.0f} s"

    def _got_blocks(self, blocks: list) -> float:
        """The session's books for a run of blocks just received (as for each
        Piece below, once). Returns when the download limit lets reading go on
        (0: now)."""
        n = len(blocks)
        self.blocks_received += n
        size = sum([len(data) for _, _, data in blocks]) if n > 1 else len(blocks[0][2])
        now = self.last_received
        self.down.add(size, now)
        self.last_block = now
        self.snubbed = False
        limit = self.swarm.download_limit
        if not limit.unlimited:
            wait = limit.take(size, now)
            if wait:
                return now + wait
        return 0.0

    def keep_alive(self, now: float) -> None:
        """Send a keep-alive if we have sent nothing for KEEPALIVE_EVERY seconds
        (the swarm calls this from its ticker)."""
        if now - self.last_sent >= KEEPALIVE_EVERY and not self._out:
            self.send(wire.KeepAlive())

    @property
    def backlog(self) -> int:
        """Bytes queued for this peer that the socket has not taken yet."""
        return self._out_len

    async def _sender(self) -> None:
        sock = _plain_socket(self.stream)
        fd = sock.fileno() if sock is not None else -1
        while True:
            if not self._out:
                self._wake = trio.Event()
                self._idle_fd = fd
                try:
                    await self._wake.wait()
                finally:
                    self._idle_fd = -1
                continue  # a ``push`` may have sent it all meanwhile
            if sock is not None:
                await self._send_some(fd)
            else:
                out, self._out, self._out_len = self._out, deque(), 0
                await self.stream.send_all(b"".join(out))
            self.last_sent = trio.current_time()
            if not self._out:
                self.swarm.on_drained(self)

    async def _send_some(self, fd: int) -> None:
        """Hand the kernel up to SEND_IOV queued buffers in one ``writev`` on the
        socket ``fd``; what it took leaves the queue. Waits until the socket can
        take more if it took less than all of them (a full socket), else yields
        only if more is queued: a send that empties the queue costs no task step
        of its own (trio's ``sendmsg`` adds one after each)."""
        if self._full:
            self._full = False
            await trio.lowlevel.wait_writable(fd)
        out = self._out
        bufs = list(itertools.islice(out, SEND_IOV))
        try:
            sent = os.writev(fd, bufs)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(fd)
            return
        taken = self._took(bufs, sent)
        if out:
            if taken == len(bufs):  # all it was given went: the rest next, after others
                await trio.lowlevel.checkpoint()
            else:  # the socket is full: wait for room
                await trio.lowlevel.wait_writable(fd)

    def _took(self, bufs: list, sent: int) -> int:
        """The kernel took ``sent`` bytes of ``bufs`` (the queue's head): they leave
        the queue. Returns how many whole buffers went."""
        out = self._out
        self._out_len -= sent
        taken = 0  # whole buffers the kernel took
        while taken < len(bufs):
            n = len(out[0])
            if sent < n:  # the kernel took part of this buffer (or none): keep the rest
                if sent:
                    out[0] = memoryview(out[0])[sent:]
                break
            out.popleft()
            sent -= n
            taken += 1
        return taken


def _plain_socket(stream, plain: str = "plain_stream") -> "trio.socket.SocketType | None":
    """The TCP socket under ``stream`` if what we write goes to it as it is (not
    encrypted, not uTP), else None. With ``plain="plain_receive_stream"``: if what
    arrives there is the stream's as it is (not decrypted, no bytes held back)."""
    inner = getattr(stream, plain, stream)
    return inner.socket if isinstance(inner, trio.SocketStream) else None


def _receive_fd(stream) -> int | None:
    """The descriptor of the TCP socket under ``stream`` if what arrives there is
    the stream's as it is (not decrypted, not uTP, no bytes held back), else None."""
    sock = _plain_socket(stream, "plain_receive_stream")
    return sock.fileno() if sock is not None else None


def _quick_acker(stream) -> Callable[[], None] | None:
    """A call that has the TCP socket under ``stream`` (plain or under MSE) ack what
    came at once, or None (uTP; no TCP_QUICKACK here). A seeder with Nagle on holds
    the last block of a run (a segment under the MSS: every block, on loopback)
    until our ACK, which Linux delays 40 ms when we have nothing to send: a read's
    last blocks came 40 ms late. Quick-ack mode ends by itself: set again after each
    receive of blocks that nothing we send answers (``_receiver``)."""
    opt = getattr(socket, "TCP_QUICKACK", None)
    while opt is not None and not isinstance(stream, trio.SocketStream):
        stream = getattr(stream, "stream", None)  # mse.EncryptedStream's TCP stream
        if stream is None:
            return None
    if opt is None:
        return None
    sock = stream.socket

    def ack() -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, opt, 1)
        except OSError:
            pass
    return ack


NOTSENT_LOWAT = 16 << 10


def tune(stream: trio.SocketStream) -> None:
    """No Nagle delay; and little unsent data in the kernel (TCP_NOTSENT_LOWAT), so
    what waits to be uploaded waits in our queue, where a cancel can still drop it."""
    stream.setsockopt(trio.socket.IPPROTO_TCP, trio.socket.TCP_NODELAY, 1)
    lowat = getattr(socket, "TCP_NOTSENT_LOWAT", None)
    if lowat is not None:
        try:
            stream.setsockopt(trio.socket.IPPROTO_TCP, lowat, NOTSENT_LOWAT)
        except OSError:
            pass


async def connect(addr: tuple[str, int]) -> trio.SocketStream:
    """Open a TCP connection within ``CONNECT_TIMEOUT``; raises OSError on failure."""
    with trio.move_on_after(CONNECT_TIMEOUT):
        stream = await trio.open_tcp_stream(*addr)
        tune(stream)
        return stream
    raise OSError(f"connect to {addr[0]}:{addr[1]} timed out")
