"""The --metrics HTTP server (``net.metricsserver``): answers over memory streams on
the autojump clock, its bounds (request size, time, clients), and one real scrape
over loopback with httpx."""

from __future__ import annotations

import errno

import httpx
import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry, Counter

from torrentfs.net import metricsserver
from torrentfs.net.metricsserver import MAX_REQUEST, REQUEST_TIMEOUT, answer, respond


@pytest.fixture
def reg():
    r = CollectorRegistry()
    Counter("torrentfs_test_things", "Things", registry=r).inc(3)
    return r


async def exchange(request: bytes, reg) -> bytes:
    """Send ``request`` to ``answer`` over a memory stream; what comes back."""
    ours, theirs = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as n:
        n.start_soon(answer, theirs, reg)
        await ours.send_all(request)
        out = bytearray()
        with trio.move_on_after(10):
            while chunk := await ours.receive_some():
                out += chunk
                if b"\r\n\r\n" in out:
                    head, _, body = bytes(out).partition(b"\r\n\r\n")
                    length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                    if len(body) >= length or request.startswith(b"HEAD"):
                        break
    return bytes(out)


async def test_get_metrics_answers_the_text_format(reg, autojump_clock):
    out = await exchange(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", reg)
    head, _, body = out.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Content-Type: text/plain; version=0.0.4" in head
    assert b"Connection: close" in head
    assert b"torrentfs_test_things_total 3.0\n" in body
    assert f"Content-Length: {len(body)}".encode() in head


async def test_head_has_no_body_and_a_query_string_is_ignored(reg, autojump_clock):
    out = await exchange(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n", reg)
    assert out.startswith(b"HTTP/1.1 200 OK") and out.endswith(b"\r\n\r\n")


@pytest.mark.parametrize("request_line,status", [
    (b"GET / HTTP/1.1", 200),
    (b"GET /nope HTTP/1.1", 404),
    (b"POST /metrics HTTP/1.1", 405),
    (b"GET /metrics", 400),
    (b"\x16\x03\x01 tls hello", 400),
])
async def test_other_requests(reg, request_line, status, autojump_clock):
    out = await exchange(request_line + b"\r\n\r\n", reg)
    assert out.startswith(f"HTTP/1.1 {status} ".encode()), out[:80]


def test_a_head_over_the_limit_is_refused(reg):
    assert respond(None, reg)[0] == 431


async def test_a_huge_request_is_cut_short(reg, autojump_clock):
    ours, theirs = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as n:
        n.start_soon(answer, theirs, reg)
        await ours.send_all(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * (4 * MAX_REQUEST))
        out = await ours.receive_some()
    assert out.startswith(b"HTTP/1.1 431 ")


async def test_real_socket_scrape_and_bounds(reg, autojump_clock):
    """Over loopback: httpx scrapes; a client that sends nothing is dropped after
    REQUEST_TIMEOUT; clients past MAX_CLIENTS are closed at once."""
    listeners = await metricsserver.listen("127.0.0.1", 0)
    port = metricsserver.bound_port(listeners)
    async with trio.open_nursery() as n:
        n.start_soon(metricsserver.serve, listeners, reg)
        async with httpx.AsyncClient() as client:
            r = await client.get(f"http://127.0.0.1:{port}/metrics")
        assert r.status_code == 200 and "torrentfs_test_things_total 3.0" in r.text
        silent = await trio.open_tcp_stream("127.0.0.1", port)
        t0 = trio.current_time()
        assert await silent.receive_some() == b""  # closed by the server
        assert trio.current_time() - t0 == pytest.approx(REQUEST_TIMEOUT, abs=0.1)
        held = [await trio.open_tcp_stream("127.0.0.1", port)
                for _ in range(metricsserver.MAX_CLIENTS)]
        await trio.sleep(0.1)
        extra = await trio.open_tcp_stream("127.0.0.1", port)
        with trio.fail_after(1):
            assert await extra.receive_some() == b""  # refused at once
        for s in (*held, extra, silent):
            await s.aclose()
        n.cancel_scope.cancel()


async def test_a_busy_port_is_an_os_error():
    taken = await metricsserver.listen("127.0.0.1", 0)
    port = metricsserver.bound_port(taken)
    with pytest.raises(OSError) as e:
        await metricsserver.listen("127.0.0.1", port)
    assert e.value.errno == errno.EADDRINUSE
    for lst in taken:
        await lst.aclose()
