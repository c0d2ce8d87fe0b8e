"""An ``httpx.AsyncClient`` that sets up TLS only when an ``https://`` URL is asked.

httpx's default transport builds its SSL context when the client is made, and that
loads the CA bundle: about 35 ms of CPU, which a mount paid before it could answer
the kernel even when every tracker is ``http://`` or ``udp://`` (most are).
``LazyTLSTransport`` sends ``http://`` requests over a transport whose SSL context
trusts nothing (it never does TLS; if it were ever asked to, the handshake would
fail, not pass unverified) and makes the real, verifying transport on the first
``https://`` request, redirects included.
"""

from __future__ import annotations

import ssl

import httpx


class LazyTLSTransport(httpx.AsyncBaseTransport):
    """``http://`` at once; ``https://`` over ``httpx.AsyncHTTPTransport(**options)``,
    made when first needed (its default ``verify=True``: the CA bundle)."""

    def __init__(self, **options) -> None:
        self.options = options
        self.plain = httpx.AsyncHTTPTransport(
            verify=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT), **options)
        self.tls: httpx.AsyncHTTPTransport | None = None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme == "http":
            return await self.plain.handle_async_request(request)
        if self.tls is None:
            self.tls = httpx.AsyncHTTPTransport(**self.options)
        return await self.tls.handle_async_request(request)

    async def aclose(self) -> None:
        await self.plain.aclose()
        if self.tls is not None:
            await self.tls.aclose()


def client(transport: httpx.AsyncBaseTransport | None = None, **kwargs) -> httpx.AsyncClient:
    """``httpx.AsyncClient(**kwargs)`` over ``transport`` (tests give a fake one), by
    default a ``LazyTLSTransport``."""
    return httpx.AsyncClient(transport=transport or LazyTLSTransport(), **kwargs)
