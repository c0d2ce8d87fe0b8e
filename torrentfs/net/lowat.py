"""Wake a peer's receiver once per message, not once per packet.

At a trickle (a cluster's peers capped at 2 MB/s, a seeder far away) the segments
of a 16 KiB block arrive one by one, and each wakes the receiving task: an epoll
event, a task switch, a ``recv`` and a parse that finds half a message, a dozen
times per block. ``RecvLowat`` sets the socket's SO_RCVLOWAT to the bytes that
complete the message begun (``PeerConnection.missing``), so that the kernel
reports it readable once they are all there (or at EOF or an error), and back to
1 at a message boundary so that short messages come at once. Linux's TCP honours
it in poll and in its wake-ups (since 4.18); it clamps the value to half the
receive buffer. Only plain TCP streams (``trio.SocketStream``) are tuned: an
encrypted stream may hold decrypted bytes of its own, and uTP has no socket per
connection. A socket that refuses the option is left alone.
"""

from __future__ import annotations

import socket

import trio

LOWAT_MAX = 64 << 10  # never wait for more than this at once (big bitfields, hashes)


class RecvLowat:
    """The receive low-water mark of one stream's socket."""

    def __init__(self, stream) -> None:
        self._sock = stream.socket if isinstance(stream, trio.SocketStream) else None
        self._value = 1

    def want(self, missing: int) -> None:
        """Wake the reader when ``missing`` more bytes are there (0: any)."""
        if self._sock is None:
            return
        value = max(1, min(missing, LOWAT_MAX))
        if value == self._value:
            return
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, value)
        except OSError:
            self._sock = None  # unsupported here: every segment wakes us, as before
            return
        self._value = value
