"""Announcing to ``udp://`` trackers (BEP 15): the trio shell over ``udptracker``.

One ``UdpTrackerClient`` serves all the UDP trackers of an announcer, one request at
a time, over one socket per address family (opened on first use, closed by
``aclose``): a connection id a tracker gave is bound to our address, so it is
reused for a minute across announces (``started`` then ``completed``, or
``stopped``). A request with no answer is sent again after ``15 * 2**n`` s; after
``retries`` resends the client gives up with ``TrackerError`` and the announcer
tries the next tracker. (BEP 15 allows n up to 8, over an hour; we stop sooner
because the announcer has other trackers to try and its own backoff.)
The socket and the name lookup are parameters, so tests can use a fake network.
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import socket as stdsocket
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

import trio

from torrentfs.core.announce import AnnounceRequest, AnnounceResponse, TrackerError
from torrentfs.core.udptracker import (
    ANNOUNCE,
    CONNECT,
    MAX_DATAGRAM,
    RETRY_BASE,
    SCRAPE,
    Announced,
    Connected,
    ConnectionIds,
    Scraped,
    ScrapeStats,
    announce_request,
    connect_request,
    read_answer,
    retry_timeout,
    scrape_request,
)

log = logging.getLogger("torrentfs.udptracker")

RETRIES = 2  # resends after the first sending: 15 + 30 + 60 s at most per exchange

Address = tuple[Any, ...]


async def resolve(host: str, port: int) -> list[tuple[int, Address]]:
    """(family, sockaddr) of each address of ``host``, in the system's order."""
    infos = await trio.socket.getaddrinfo(host, port, type=stdsocket.SOCK_DGRAM)
    return [(family, sockaddr) for family, _, _, _, sockaddr in infos
            if family in (stdsocket.AF_INET, stdsocket.AF_INET6)]


def open_udp_socket(family: int):
    return trio.socket.socket(family, stdsocket.SOCK_DGRAM)


def parse_udp_url(url: str) -> tuple[str, int]:
    """(host, port) of ``udp://host:port[/path]``; ``TrackerError`` if it is not one."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        host = port = None
    if not url.startswith("udp://") or not host or not port:
        raise TrackerError(f"bad UDP tracker URL {url!r}")
    return host, port


def _same_address(a: Address, b: Address) -> bool:
    try:
        return ipaddress.ip_address(a[0]) == ipaddress.ip_address(b[0]) and a[1] == b[1]
    except (ValueError, IndexError, TypeError):
        return False


class UdpTrackerClient:
    """Announces and scrapes over UDP. ``retry_base`` (15 s) is the first wait for
    an answer; ``retries`` how many times a request is sent again before giving up."""

    def __init__(self, *, retry_base: float = RETRY_BASE, retries: int = RETRIES,
                 open_socket: Callable[[int], Any] = open_udp_socket,
                 resolve: Callable[[str, int], Awaitable[list[tuple[int, Address]]]] = resolve
                 ) -> None:
        self.retry_base = retry_base
        self.retries = retries
        self._open_socket = open_socket
        self._resolve = resolve
        self._sockets: dict[int, Any] = {}
        self._ids = ConnectionIds()
        self._lock = trio.Lock()

    async def aclose(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()

    async def __aenter__(self) -> "UdpTrackerClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def announce(self, url: str, req: AnnounceRequest) -> AnnounceResponse:
        """One announce. Raises ``TrackerError`` with a one-line reason on any failure."""
        family, addr = await self._address(url)
        answer = await self._exchange(
            url, family, addr, ANNOUNCE,
            lambda conn, tid: announce_request(conn, tid, req))
        assert isinstance(answer, Announced)
        return answer.response

    async def scrape(self, url: str, info_hashes: list[bytes]) -> tuple[ScrapeStats, ...]:
        """Seeders, completed and leechers of each info-hash, in order."""
        family, addr = await self._address(url)
        answer = await self._exchange(
            url, family, addr, SCRAPE,
            lambda conn, tid: scrape_request(conn, tid, info_hashes), len(info_hashes))
        assert isinstance(answer, Scraped)
        return answer.stats

    async def _address(self, url: str) -> tuple[int, Address]:
        host, port = parse_udp_url(url)
        try:
            found = await self._resolve(host, port)
        except OSError as e:
            raise TrackerError(f"tracker {url}: cannot resolve {host}: {e.strerror or e}") from None
        if not found:
            raise TrackerError(f"tracker {url}: {host} has no IPv4 or IPv6 address")
        return found[0]

    async def _socket(self, family: int):
        sock = self._sockets.get(family)
        if sock is None:
            sock = self._open_socket(family)
            await sock.bind(("::" if family == stdsocket.AF_INET6 else "0.0.0.0", 0))
            self._sockets[family] = sock
        return sock

    async def _exchange(self, url: str, family: int, addr: Address, action: int,
                        build: Callable[[int, int], bytes], scraped: int = 0):
        """Connect if there is no live connection id, then send the request, each
        sending waiting ``retry_timeout(n)`` for its answer; a connection id that
        expired meanwhile is renewed before the next sending."""
        async with self._lock:
            try:
                sock = await self._socket(family)
            except OSError as e:
                raise TrackerError(f"tracker {url}: no UDP socket: {e.strerror or e}") from None
            ipv6 = family == stdsocket.AF_INET6
            key = (family, addr[0], addr[1])
            connect_tid = secrets.randbits(32)
            request_tid = secrets.randbits(32)
            attempt = 0
            waited = 0.0
            while attempt <= self.retries:
                timeout = retry_timeout(attempt, self.retry_base)
                conn = self._ids.get(key, trio.current_time())
                if conn is None:
                    packet, tid, want = connect_request(connect_tid), connect_tid, CONNECT
                else:
                    packet, tid, want = build(conn, request_tid), request_tid, action
                try:
                    answer = await self._send_and_wait(sock, addr, packet, tid, want, ipv6,
                                                       scraped, timeout)
                except TrackerError as e:
                    self._ids.forget(key)  # an error may mean our connection id is stale
                    raise TrackerError(f"tracker {url}: {e}") from None
                except OSError as e:
                    raise TrackerError(f"tracker {url} unreachable: {e.strerror or e}") from None
                if answer is None:
                    waited += timeout
                    attempt += 1
                    log.debug("tracker %s: no answer in %.0f s", url, timeout)
                elif isinstance(answer, Connected):
                    self._ids.put(key, answer.connection_id, trio.current_time())
                else:
                    return answer
            raise TrackerError(f"tracker {url} did not answer ({attempt} tries over "
                               f"{waited:.0f} s)")

    async def _send_and_wait(self, sock, addr: Address, packet: bytes, tid: int, action: int,
                             ipv6: bool, scraped: int, timeout: float):
        """The answer to ``packet``, or ``None`` after ``timeout`` seconds without one.
        Datagrams from elsewhere or for other requests are dropped."""
        await sock.sendto(packet, addr)
        with trio.move_on_after(timeout):
            while True:
                data, source = await sock.recvfrom(MAX_DATAGRAM)
                if not _same_address(source, addr):
                    continue
                answer = read_answer(data, tid, action, ipv6=ipv6, scraped=scraped)
                if answer is not None:
                    return answer
        return None
