"""``--metrics ADDR:PORT``: Prometheus metrics over HTTP, served from trio.

A deliberately small HTTP/1.0-style server: ``GET /metrics`` (or ``HEAD``) answers
a ``prometheus_client`` registry in the text exposition format
(``generate_latest``, rendered in the trio thread, where the torrents' counters
live); ``GET /`` a line saying where the metrics are; anything else 404 or 405.
One request per connection, then the connection is closed.

A client costs bounded memory and time: the request head is read up to
``MAX_REQUEST`` bytes (more: 431) within ``REQUEST_TIMEOUT`` seconds (slower: the
connection is closed), and at most ``MAX_CLIENTS`` connections are served at once
(more are closed at once). prometheus_client's own server is not used: it runs in
a thread of its own, which would read the counters while trio changes them.
"""

from __future__ import annotations

import logging

import trio

log = logging.getLogger("torrentfs.metrics")

MAX_REQUEST = 8192       # bytes of request line and headers at most
REQUEST_TIMEOUT = 5.0    # seconds to send the request and take the answer
MAX_CLIENTS = 16         # connections served at once
# What generate_latest writes: the classic text format, which every Prometheus reads
# (prometheus_client's own server sends it under this type unless asked for another).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           431: "Request Header Fields Too Large"}


async def listen(host: str | None, port: int) -> list[trio.SocketListener]:
    """The listening sockets on ``host`` (None or "": every address) and ``port``
    (0: any free port). Raises OSError (a busy port, an address not ours, a host
    that does not resolve)."""
    return await trio.open_tcp_listeners(port, host=host or None)


def bound_port(listeners: list[trio.SocketListener]) -> int:
    return listeners[0].socket.getsockname()[1]


async def serve(listeners: list[trio.SocketListener], registry) -> None:
    """Answer scrapes of ``registry`` on ``listeners`` until cancelled."""
    limit = trio.CapacityLimiter(MAX_CLIENTS)

    async def handler(stream: trio.SocketStream) -> None:
        try:
            limit.acquire_nowait()
        except trio.WouldBlock:
            await trio.aclose_forcefully(stream)
            return
        try:
            with trio.move_on_after(REQUEST_TIMEOUT):
                await answer(stream, registry)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass  # the client went away
        finally:
            limit.release()
            await trio.aclose_forcefully(stream)

    await trio.serve_listeners(handler, listeners)


async def read_head(stream: trio.abc.ReceiveStream) -> bytes | None:
    """The request's head (up to the blank line), or None if it is over
    ``MAX_REQUEST`` bytes; b"" if the client closed first."""
    buf = bytearray()
    while b"\r\n\r\n" not in buf and b"\n\n" not in buf:
        if len(buf) > MAX_REQUEST:
            return None
        chunk = await stream.receive_some(MAX_REQUEST + 1 - len(buf))
        if not chunk:
            return bytes(buf) if buf else b""
        buf += chunk
    return bytes(buf)


def respond(head: bytes | None, registry) -> tuple[int, str, bytes, bool]:
    """(status, content type, body, whether the body is sent) for a request head."""
    text = "text/plain; charset=utf-8"
    if head is None:
        return 431, text, b"request too large\n", True
    line = head.split(b"\n", 1)[0].decode("latin-1").strip().split()
    if len(line) != 3 or not line[2].startswith("HTTP/"):
        return 400, text, b"bad request\n", True
    method, target = line[0], line[1].split("?", 1)[0]
    if method not in ("GET", "HEAD"):
        return 405, text, b"only GET\n", True
    send_body = method == "GET"
    if target == "/metrics":
        from prometheus_client import generate_latest
        return 200, CONTENT_TYPE, generate_latest(registry), send_body
    if target == "/":
        return 200, text, b"torrentfs: metrics at /metrics\n", send_body
    return 404, text, b"not found: try /metrics\n", send_body


async def answer(stream: trio.abc.Stream, registry) -> None:
    """Read one request from ``stream`` and send its answer."""
    head = await read_head(stream)
    if head == b"":
        return
    status, ctype, body, send_body = respond(head, registry)
    if status >= 400 and status != 404:
        log.debug("metrics: answered %d", status)
    header = (f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: {ctype}\r\n"
              f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    await stream.send_all(header + body if send_body else header)
