"""net/httpclient.py: an ``http://`` request is served without TLS ever being set up
(no CA bundle loaded), an ``https://`` one makes the verifying transport first, and
the plain transport's SSL context trusts nothing, so it could never pass TLS
unverified."""

from __future__ import annotations

import ssl
from functools import partial

import httpx
import pytest
import trio

from torrentfs.net.httpclient import LazyTLSTransport, client


async def one_answer(stream: trio.SocketStream) -> None:
    """A minimal HTTP server: reads the request head, answers 200 "ok", closes."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk:
            return
        data += chunk
    await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    await stream.aclose()


async def test_http_needs_no_tls():
    async with trio.open_nursery() as n:
        listeners = await n.start(partial(trio.serve_tcp, one_answer, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        transport = LazyTLSTransport()
        async with client(transport) as c:
            with trio.fail_after(10):
                resp = await c.get(f"http://127.0.0.1:{port}/announce")
        assert (resp.status_code, resp.content) == (200, b"ok")
        assert transport.tls is None
        n.cancel_scope.cancel()


async def test_https_makes_a_verifying_transport():
    transport = LazyTLSTransport()
    # A closed port: the request fails, but only after the TLS transport was made.
    with trio.socket.socket() as s:
        await s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with client(transport) as c:
        with pytest.raises(httpx.ConnectError), trio.fail_after(10):
            await c.get(f"https://127.0.0.1:{port}/announce")
    assert transport.tls is not None
    ctx = transport.tls._pool._ssl_context
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.cert_store_stats()["x509_ca"] > 0  # the CA bundle is loaded


def test_the_plain_transport_trusts_nothing():
    ctx = LazyTLSTransport().plain._pool._ssl_context
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    assert ctx.cert_store_stats()["x509_ca"] == 0


def test_a_given_transport_is_used():
    mock = httpx.MockTransport(lambda request: httpx.Response(204))
    assert client(mock)._transport is mock
