"""The TCP listening sockets peers dial: IPv4 and IPv6 on one port.

``open_listeners(port, host)`` with no host (or a wildcard) listens on every IPv4
address and on every IPv6 address, both on the same port number (two sockets, the
IPv6 one IPv6-only, as trio makes it; the port 0 picks is retried until both
families have it free). A host without IPv6 listens on IPv4 alone, with one log
line. A named host listens there only.
"""

from __future__ import annotations

import errno
import functools
import logging
import socket

import trio

log = logging.getLogger("torrentfs.listen")

__all__ = ["open_listeners", "WILDCARDS", "global_ipv6"]

WILDCARDS = (None, "", "*", "::")
_TRIES = 20  # port 0: how many ports to try before giving up on IPv6 for it


async def open_listeners(port: int, host: str | None = None) -> list[trio.SocketListener]:
    """Listeners on ``port`` (0: a free one) on ``host``, or on every IPv4 and
    IPv6 address (see the module docstring). Raises OSError as binding does."""
    if host not in WILDCARDS:
        return await trio.open_tcp_listeners(port, host=host)
    for _ in range(_TRIES if port == 0 else 1):
        v4 = await trio.open_tcp_listeners(port, host="0.0.0.0")
        bound = v4[0].socket.getsockname()[1]
        try:
            v6 = await trio.open_tcp_listeners(bound, host="::")
        except OSError as e:
            if e.errno == errno.EADDRINUSE and port == 0:
                for listener in v4:
                    await listener.aclose()
                continue
            if e.errno == errno.EADDRINUSE:
                raise
            log.info("no IPv6 listener (%s): IPv4 only", e.strerror or e)
            return v4
        return v4 + v6
    log.info("no port free for both IPv4 and IPv6: IPv4 only")
    return await trio.open_tcp_listeners(0, host="0.0.0.0")


@functools.lru_cache(maxsize=1)
def global_ipv6() -> str | None:
    """Our global IPv6 address (the source the kernel would pick for the public
    IPv6 internet; nothing is sent), or None without one. Asked once per process:
    what the extension handshake's ``ipv6`` key tells peers (BEP 7)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.connect(("2001:4860:4860::8888", 9))  # UDP connect: a route lookup only
            addr = s.getsockname()[0]
    except OSError:
        return None
    if addr.startswith(("fe80:", "::1", "fc", "fd")) or addr == "::":
        return None
    return addr
