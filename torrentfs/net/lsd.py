"""Local Service Discovery (BEP 14) on the network: the trio shell over ``lsd``.

``LsdService.run`` joins the LSD multicast group (IPv4, and IPv6 if asked) on port
6771, announces the torrent at once and then every 5 minutes, and hands each peer
it hears of to a callback. A network without multicast (no route, no such group)
only turns LSD off, with one log line: it never stops the torrent. Several
processes on one host can listen at once (SO_REUSEADDR/SO_REUSEPORT: every one of
them gets each multicast datagram).
"""

from __future__ import annotations

import logging
import secrets
import socket as stdsocket
import struct
from typing import Any, Callable

import trio

from torrentfs.core.address import zoned
from torrentfs.core.lsd import (
    ANNOUNCE_INTERVAL,
    GROUP4,
    GROUP6,
    PORT,
    LocalDiscovery,
    LsdError,
)

RETRIES = 5         # announcements that failed to send, tried again ...
RETRY_AFTER = 2.0   # ... this many seconds later

log = logging.getLogger("torrentfs.lsd")

RECV_SIZE = 2048


async def open_multicast_socket(family: int) -> Any:
    """A UDP socket bound to the LSD port that has joined the LSD group."""
    sock = trio.socket.socket(family, stdsocket.SOCK_DGRAM)
    try:
        sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEADDR, 1)
        if hasattr(stdsocket, "SO_REUSEPORT"):
            sock.setsockopt(stdsocket.SOL_SOCKET, stdsocket.SO_REUSEPORT, 1)
        if family == stdsocket.AF_INET6:
            await sock.bind(("::", PORT))
            sock.setsockopt(stdsocket.IPPROTO_IPV6, stdsocket.IPV6_JOIN_GROUP,
                            stdsocket.inet_pton(stdsocket.AF_INET6, GROUP6)
                            + struct.pack("@I", 0))
        else:
            await sock.bind(("0.0.0.0", PORT))
            sock.setsockopt(stdsocket.IPPROTO_IP, stdsocket.IP_ADD_MEMBERSHIP,
                            stdsocket.inet_aton(GROUP4) + stdsocket.inet_aton("0.0.0.0"))
    except BaseException:
        sock.close()
        raise
    return sock


class LsdService:
    """Announces one torrent on the local network and listens for its peers."""

    def __init__(self, info_hash: bytes, port: Callable[[], int],
                 on_peer: Callable[[tuple[str, int]], None], *, ipv6: bool = True,
                 interval: float = ANNOUNCE_INTERVAL,
                 open_socket: Callable[[int], Any] = open_multicast_socket,
                 also: tuple[bytes, ...] = ()) -> None:
        self.core = LocalDiscovery(info_hash, secrets.token_hex(4), interval, also)
        self.port = port
        self.on_peer = on_peer
        self.families = [stdsocket.AF_INET] + ([stdsocket.AF_INET6] if ipv6 else [])
        self._open_socket = open_socket
        self.found = 0

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        sockets = []
        for family in self.families:
            try:
                sockets.append((family, await self._open_socket(family)))
            except OSError as e:
                log.info("local peer discovery over %s off: %s", _name(family),
                         e.strerror or e)
        task_status.started()
        if not sockets:
            return
        try:
            async with trio.open_nursery() as nursery:
                for family, sock in sockets:
                    nursery.start_soon(self._receive, sock)
                nursery.start_soon(self._announce, sockets)
        finally:
            for _, sock in sockets:
                sock.close()

    async def _announce(self, sockets) -> None:
        """At start, then every interval: one announcement per family."""
        retries = 0
        while True:
            now = trio.current_time()
            port = self.port()
            if self.core.announce_due(now) and port:
                failed = False
                for family, sock in sockets:
                    ipv6 = family == stdsocket.AF_INET6
                    group = (GROUP6 if ipv6 else GROUP4, PORT)
                    try:
                        await sock.sendto(self.core.announcement(port, ipv6), group)
                    except OSError as e:
                        failed = True
                        log.debug("LSD announce over %s failed: %s", _name(family),
                                  e.strerror or e)
                if failed and retries < RETRIES:
                    # A daemon started with the network (a unit at boot) may find its
                    # address not usable yet (IPv6 DAD): try again soon, a few times,
                    # rather than in five minutes.
                    retries += 1
                    await trio.sleep(RETRY_AFTER)
                    continue
                retries = 0
                self.core.announced(now)
            # Not listening yet (port 0): look again in a second.
            await trio.sleep_until(self.core.next_announce(trio.current_time()) if port
                                   else trio.current_time() + 1)

    async def _receive(self, sock) -> None:
        while True:
            try:
                data, source = await sock.recvfrom(RECV_SIZE)
            except OSError as e:
                log.debug("LSD receive failed: %s", e.strerror or e)
                await trio.sleep(1)  # bounded: errors on a datagram socket are rare
                continue
            # A link-local IPv6 sender keeps its zone (scope id): TCP needs it.
            host = zoned(str(source[0]), source[3] if len(source) > 3 else 0)
            try:
                peer = self.core.heard(data, host, trio.current_time())
            except LsdError as e:
                log.debug("LSD datagram from %s ignored: %s", host, e)
                continue
            if peer is not None:
                self.found += 1
                log.info("local peer discovery: found peer %s:%d", *peer)
                self.on_peer(peer)


def _name(family: int) -> str:
    return "IPv6" if family == stdsocket.AF_INET6 else "IPv4"
