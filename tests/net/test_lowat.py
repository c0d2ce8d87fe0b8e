"""RecvLowat on a real loopback TCP connection: the socket reads as readable only
once the bytes a message still lacks are there, and at once again at a boundary."""

from __future__ import annotations

import fcntl
import select
import socket
import struct
import termios
import time

import trio

from torrentfs.net.lowat import LOWAT_MAX, RecvLowat


def queued(sock: socket.socket, want: int) -> int:
    """Bytes in the receive queue, once ``want`` are (loopback delivers at once;
    bounded all the same)."""
    deadline = time.monotonic() + 5
    while True:
        n = struct.unpack("i", fcntl.ioctl(sock, termios.FIONREAD, b"\0" * 4))[0]
        if n >= want or time.monotonic() > deadline:
            return n
        time.sleep(0.001)


def readable(sock: socket.socket) -> bool:
    p = select.poll()
    p.register(sock, select.POLLIN)
    return bool(p.poll(0))


def test_the_reader_wakes_once_the_message_is_complete():
    async def main():
        server = socket.create_server(("127.0.0.1", 0))
        client = socket.create_connection(server.getsockname())
        conn, _ = server.accept()
        try:
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(conn))
            lowat = RecvLowat(stream)
            lowat.want(1000)
            assert conn.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == 1000
            client.sendall(b"x" * 10)
            assert queued(conn, 10) == 10 and not readable(conn)
            client.sendall(b"x" * 990)
            assert queued(conn, 1000) == 1000 and readable(conn)
            lowat.want(0)  # a boundary: any byte wakes the reader
            assert conn.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) == 1
            lowat.want(10 << 20)
            assert conn.getsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT) <= LOWAT_MAX
        finally:
            client.close()
            conn.close()
            server.close()
    trio.run(main)


def test_streams_without_a_socket_of_their_own_are_left_alone():
    class Other:  # an encrypted stream, a uTP stream
        pass
    RecvLowat(Other()).want(1000)  # nothing to tune, nothing raised
