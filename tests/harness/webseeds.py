"""Web seeds for tests: HTTP servers of a torrent's files that honour ``Range`` (or
misbehave on purpose). ``MockSeed`` answers through an ``httpx.MockTransport`` on
trio's clock (shell tests, no sockets); ``range_server`` is a real threaded HTTP
server on loopback (Python's ``http.server`` does not do ranges) for mounts.

Both serve ``files``: URL path (as sent, percent-encoded) -> bytes, and follow one
``SeedBehaviour``, which may be changed while they run."""

from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator
from urllib.parse import quote

import httpx
import trio

from torrentfs.core.metainfo import Metainfo


@dataclass
class SeedBehaviour:
    down: bool = False            # refuse connections (MockSeed: httpx.ConnectError)
    status: int | None = None     # answer every request with this status (e.g. 503)
    retry_after: str | None = None
    corrupt: bool = False         # flip the first byte of every body
    ignore_range: bool = False    # 200 with the whole file, whatever the Range
    delay: float = 0.0            # seconds before the headers (MockSeed: trio time)
    stall: bool = False           # headers, then a body that never comes (MockSeed)
    chunk: int = 16384            # body chunk size


def files_of(meta: Metainfo, payload: bytes, prefix: str = "/") -> dict[str, bytes]:
    """URL path -> bytes of each file of the torrent, where a web seed at ``prefix``
    (ending in ``/``) keeps them: ``prefix + name[/path]``, percent-encoded."""
    out = {}
    for f in meta.files:
        if f.padding:
            continue
        parts = (meta.name, *f.path) if meta.multi_file else (meta.name,)
        out[prefix + "/".join(quote(p, safe="") for p in parts)] = payload[f.offset:f.end]
    return out


def files_on_disk(meta: Metainfo, parent, prefix: str = "/") -> dict[str, bytes]:
    """``files_of`` for a torrent whose file or folder lies in ``parent``."""
    from pathlib import Path
    parts = [Path(parent, meta.name, *f.path) if meta.multi_file else Path(parent, meta.name)
             for f in meta.files]
    payload = b"".join(b"\0" * f.length if f.padding else p.read_bytes()
                       for f, p in zip(meta.files, parts))
    return files_of(meta, payload, prefix)


_RANGE = re.compile(r"bytes=(\d+)-(\d+)")


def answer(files: dict[str, bytes], path: str, range_: str | None,
           b: SeedBehaviour) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a GET, as a range-capable server would answer."""
    if b.status is not None:
        headers = {"Retry-After": b.retry_after} if b.retry_after else {}
        return b.status, headers, b"busy"
    data = files.get(path)
    if data is None:
        return 404, {}, b"not found"
    m = _RANGE.fullmatch(range_ or "")
    if m is None or b.ignore_range:
        status, body, headers = 200, data, {}
    else:
        first, last = int(m[1]), min(int(m[2]), len(data) - 1)
        if first >= len(data):
            return 416, {"Content-Range": f"bytes */{len(data)}"}, b""
        status, body = 206, data[first:last + 1]
        headers = {"Content-Range": f"bytes {first}-{last}/{len(data)}"}
    if b.corrupt and body:
        body = bytes([body[0] ^ 0xFF]) + body[1:]
    headers["Content-Length"] = str(len(body))
    return status, headers, body


class _Body(httpx.AsyncByteStream):
    """A body sent chunk by chunk, counting what the client took."""

    def __init__(self, seed: "MockSeed", data: bytes, chunk: int, stall: bool) -> None:
        self.seed, self.data, self.chunk, self.stall = seed, data, chunk, stall

    async def __aiter__(self):
        if self.stall:
            await trio.sleep_forever()
        for i in range(0, len(self.data), self.chunk):
            piece = self.data[i:i + self.chunk]
            self.seed.bytes_taken += len(piece)
            yield piece
            await trio.sleep(0)


@dataclass
class MockSeed:
    """A web seed answering through ``transport`` (an ``httpx.MockTransport``).
    Records ``(time, path, Range)`` of each request and the most requests at once."""

    files: dict[str, bytes]
    behaviour: SeedBehaviour = field(default_factory=SeedBehaviour)
    requests: list[tuple[float, str, str | None]] = field(default_factory=list)
    in_flight: int = 0
    peak: int = 0
    bytes_taken: int = 0

    @property
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        b = self.behaviour
        self.requests.append((trio.current_time(), request.url.raw_path.decode(),
                              request.headers.get("range")))
        if b.down:
            raise httpx.ConnectError("connection refused", request=request)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            if b.delay:
                await trio.sleep(b.delay)
        finally:
            self.in_flight -= 1
        status, headers, body = answer(self.files, request.url.raw_path.decode(),
                                       request.headers.get("range"), b)
        return httpx.Response(status, headers=headers,
                              stream=_Body(self, body, b.chunk, b.stall))

    def ranges(self) -> list[tuple[str, int, int]]:
        """(path, first, last) of every ranged request, in order."""
        out = []
        for _, path, r in self.requests:
            m = _RANGE.fullmatch(r or "")
            if m:
                out.append((path, int(m[1]), int(m[2])))
        return out


@contextlib.contextmanager
def range_server(files: dict[str, bytes], host: str = "127.0.0.1",
                 behaviour: SeedBehaviour | None = None) -> Iterator["RangeServer"]:
    """A threaded HTTP/1.1 server on ``host`` (any free port) serving ``files`` with
    ranges; stopped on exit. ``url`` is its base URL (ends in ``/``)."""
    server = RangeServer(files, host, behaviour or SeedBehaviour())
    thread = threading.Thread(target=server.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
        thread.join(10)


class RangeServer:
    def __init__(self, files: dict[str, bytes], host: str, behaviour: SeedBehaviour) -> None:
        self.files = files
        self.behaviour = behaviour
        self.requests: list[tuple[str, str | None]] = []
        self.connections = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive

            def setup(self) -> None:
                outer.connections += 1
                super().setup()

            def do_GET(self) -> None:
                outer.requests.append((self.path, self.headers.get("Range")))
                status, headers, body = answer(outer.files, self.path,
                                               self.headers.get("Range"), outer.behaviour)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def handle(self) -> None:
                try:
                    super().handle()
                except ConnectionError:  # the client hung up: normal for us
                    pass

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer((host, 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://{host}:{self.httpd.server_address[1]}/"
