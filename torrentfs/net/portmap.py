"""Port mapping: ask the home router to forward our listen ports (PCP, else
NAT-PMP, else UPnP IGD), keep the mappings alive, remove them on the way out.

``PortMapper(ports).run`` is ready at once (it never delays a mount) and then, in
the background:

1. PCP (RFC 6887, ``core/pcp.py``) to the default gateway (/proc/net/route), UDP
   5351: a MAP request per port (each with its own nonce, kept for renewals and
   the deletion), retried 250 ms doubling (``NATPMP_TRIES``); lifetime
   ``NATPMP_LIFETIME``; the external address comes with the answers. PCP first,
   as RFC 6887 (appendix A) has clients do: it is NAT-PMP's successor on the same
   port, and a NAT-PMP-only gateway says so at once (version 0, "unsupported
   version"), which sends us to NAT-PMP without waiting.
2. Else NAT-PMP (``core/natpmp.py``), the same way: the external address, then
   each port.
3. Else UPnP IGD (``core/upnp.py``): an SSDP M-SEARCH (answers for
   ``SSDP_WAIT`` s), the device description of the first answer, and SOAP calls
   (httpx) to its WANIPConnection service: GetExternalIPAddress, AddPortMapping
   per port with lease ``UPNP_LEASE`` (a gateway that takes only permanent leases
   gets lease 0).
4. One log line says which gateway, the external address and the ports mapped
   (or that none was found). Mappings are renewed at half their lifetime; on
   cancel they are deleted (bounded by ``DELETE_WITHIN``).

Each network wait is bounded; a gateway that misbehaves costs a log line, never
the mount.
"""

from __future__ import annotations

import logging
import secrets
import socket as stdsocket
from dataclasses import dataclass

import httpx
import trio

from torrentfs.core import natpmp, pcp, upnp
from torrentfs.net.httpclient import client as http_client

log = logging.getLogger("torrentfs.portmap")

__all__ = ["PortMapper", "NATPMP_LIFETIME", "UPNP_LEASE"]

NATPMP_LIFETIME = 7200
NATPMP_TRIES = 4            # 0.25 + 0.5 + 1 + 2 s
UPNP_LEASE = 3600
SSDP_WAIT = 3.0
HTTP_TIMEOUT = 5.0
DELETE_WITHIN = 3.0
RETRY_EVERY = 300.0         # no gateway found: look again this often
DESCRIPTION = "torrentfs"


@dataclass
class _Mapped:
    protocol: str           # "TCP" / "UDP"
    internal: int
    external: int
    lifetime: int


def _gateway() -> str | None:
    try:
        with open("/proc/net/route") as f:
            return natpmp.default_gateway(f.read())
    except OSError:
        return None


def _local_ip_towards(host: str) -> str:
    with stdsocket.socket(stdsocket.AF_INET, stdsocket.SOCK_DGRAM) as s:
        s.connect((host, 9))  # a route lookup; nothing is sent
        return s.getsockname()[0]


class PortMapper:
    """Maps ``ports`` ([("TCP", 6881), ("UDP", 6881)]) on the router; see the module
    docstring. ``gateway``/``ssdp`` override where to look (tests)."""

    def __init__(self, ports: list[tuple[str, int]], *, gateway: str | None = None,
                 natpmp_port: int = natpmp.PORT,
                 ssdp: tuple[str, int] = (upnp.SSDP_GROUP, upnp.SSDP_PORT)) -> None:
        self.ports = [(p.upper(), n) for p, n in ports if n]
        self.gateway = gateway
        self.natpmp_port = natpmp_port
        self.ssdp = ssdp
        self.external_address: str | None = None
        self.mapped: list[_Mapped] = []
        self.method: str | None = None
        self.mapped_event = trio.Event()
        self._nonces: dict[tuple[str, int], bytes] = {}   # PCP: one per mapping

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            while True:
                renew_in = await self._map_once()
                await trio.sleep(renew_in)
        finally:
            if self.mapped:
                with trio.CancelScope(shield=True):
                    with trio.move_on_after(DELETE_WITHIN):
                        await self._unmap()

    async def _map_once(self) -> float:
        """Map (or renew) every port; seconds until the next renewal."""
        gateway = self.gateway or _gateway()
        if self.method in (None, "PCP") and gateway:
            try:
                return await self._pcp(gateway)
            except pcp.PcpUnsupported as e:
                log.debug("PCP on %s: %s: NAT-PMP then", gateway, e)
            except (pcp.PcpError, OSError, trio.TooSlowError) as e:
                if self.method == "PCP":
                    log.info("port mapping: PCP renewal failed: %s", e)
                log.debug("PCP on %s: %s", gateway, e)
        if self.method in (None, "PCP", "NAT-PMP") and gateway:
            try:
                return await self._natpmp(gateway)
            except (natpmp.NatPmpError, OSError, trio.TooSlowError) as e:
                if self.method == "NAT-PMP":
                    log.info("port mapping: NAT-PMP renewal failed: %s", e)
                log.debug("NAT-PMP on %s: %s", gateway, e)
        try:
            return await self._upnp()
        except (upnp.UpnpError, OSError, httpx.HTTPError, trio.TooSlowError) as e:
            log.debug("UPnP: %s", e)
            if self.method is None:
                log.info("port mapping: no PCP, NAT-PMP or UPnP gateway found (%s)", e)
            else:
                log.info("port mapping: %s renewal failed: %s", self.method, e)
            self.method = None
            self.mapped = []
            return RETRY_EVERY

    # -- PCP -----------------------------------------------------------------------

    async def _ask(self, gateway: str, request: bytes, size: int, answer_of,
                   what: str):
        """Send ``request`` to the gateway's NAT-PMP/PCP port, again after 0.25 s,
        0.5 s, ... (NATPMP_TRIES in all), until a datagram (of up to ``size`` bytes)
        gives an answer: ``answer_of(data)``, None for one that is not ours."""
        sock = trio.socket.socket(stdsocket.AF_INET, stdsocket.SOCK_DGRAM)
        with sock:
            await sock.connect((gateway, self.natpmp_port))
            wait = 0.25
            for _ in range(NATPMP_TRIES):
                await sock.send(request)
                with trio.move_on_after(wait):
                    while True:
                        answer = answer_of(await sock.recv(size))
                        if answer is not None:
                            return answer
                wait *= 2
        raise trio.TooSlowError(f"no {what} answer from {gateway}")

    async def _pcp_ask(self, gateway: str, request: bytes, nonce: bytes) -> pcp.MapAnswer:
        def answer_of(data: bytes) -> pcp.MapAnswer | None:
            try:
                return pcp.parse_response(data, nonce)
            except pcp.PcpOther:
                return None   # an answer to an earlier request: not ours
        return await self._ask(gateway, request, pcp.MAX_ANSWER + 1, answer_of, "PCP")

    def _pcp_request(self, gateway: str, proto: str, port: int,
                     lifetime: int) -> tuple[bytes, bytes]:
        nonce = self._nonces.setdefault((proto, port), secrets.token_bytes(12))
        code = pcp.TCP if proto == "TCP" else pcp.UDP
        return pcp.map_request(nonce, code, port, _local_ip_towards(gateway), lifetime,
                               port if lifetime else 0), nonce

    async def _pcp(self, gateway: str) -> float:
        mapped, external = [], None
        for proto, port in self.ports:
            m = await self._pcp_ask(gateway, *self._pcp_request(gateway, proto, port,
                                                                NATPMP_LIFETIME))
            mapped.append(_Mapped(proto, port, m.external_port, m.lifetime))
            external = external or m.external_address
        self._done("PCP", gateway, external or "?", mapped)
        return max(30.0, min(m.lifetime for m in mapped) / 2) if mapped else RETRY_EVERY

    # -- NAT-PMP -----------------------------------------------------------------

    async def _natpmp_ask(self, gateway: str, request: bytes):
        def answer_of(data: bytes):
            answer = natpmp.parse_response(data)
            if isinstance(answer, natpmp.ExternalAddress) == (request[1] == 0):
                return answer
            return None
        return await self._ask(gateway, request, 64, answer_of, "NAT-PMP")

    async def _natpmp(self, gateway: str) -> float:
        ext = await self._natpmp_ask(gateway, natpmp.external_address_request())
        mapped = []
        for proto, port in self.ports:
            code = natpmp.TCP if proto == "TCP" else natpmp.UDP
            m = await self._natpmp_ask(gateway, natpmp.map_request(code, port, port,
                                                                   NATPMP_LIFETIME))
            mapped.append(_Mapped(proto, port, m.external_port, m.lifetime))
        self._done("NAT-PMP", gateway, ext.address, mapped)
        return max(30.0, min(m.lifetime for m in mapped) / 2) if mapped else RETRY_EVERY

    # -- UPnP --------------------------------------------------------------------

    async def _discover(self) -> str:
        sock = trio.socket.socket(stdsocket.AF_INET, stdsocket.SOCK_DGRAM)
        with sock:
            sock.setsockopt(stdsocket.IPPROTO_IP, stdsocket.IP_MULTICAST_TTL, 2)
            await sock.bind(("0.0.0.0", 0))
            await sock.sendto(upnp.search_request(), self.ssdp)
            with trio.move_on_after(SSDP_WAIT):
                while True:
                    data, _ = await sock.recvfrom(4096)
                    location = upnp.parse_search_response(data)
                    if location:
                        return location
        raise trio.TooSlowError("no answer to an SSDP search")

    async def _soap(self, client: httpx.AsyncClient, request) -> dict[str, str]:
        headers, body = request
        r = await client.post(self._service.control_url, content=body, headers=headers)
        return upnp.parse_soap_response(r.status_code, r.content[:upnp.MAX_XML + 1])

    async def _upnp(self) -> float:
        async with http_client(timeout=HTTP_TIMEOUT, trust_env=False) as client:
            if self.method != "UPnP":
                location = await self._discover()
                r = await client.get(location)
                self._service = upnp.parse_description(r.content[:upnp.MAX_XML + 1], location)
            service = self._service
            host = httpx.URL(service.control_url).host
            me = _local_ip_towards(host)
            ext = (await self._soap(client, upnp.get_external_ip_address(service))
                   ).get("NewExternalIPAddress", "?")
            mapped = []
            for proto, port in self.ports:
                lease = UPNP_LEASE
                try:
                    await self._soap(client, self._add(service, proto, port, me, lease))
                except upnp.UpnpError as e:
                    if "725" not in str(e):  # OnlyPermanentLeasesSupported
                        raise
                    lease = 0
                    await self._soap(client, self._add(service, proto, port, me, lease))
                mapped.append(_Mapped(proto, port, port, lease))
        self._done("UPnP", host, ext, mapped)
        leases = [m.lifetime for m in mapped if m.lifetime]
        return max(30.0, min(leases) / 2) if leases else 24 * 3600.0

    @staticmethod
    def _add(service, proto: str, port: int, me: str, lease: int):
        return upnp.add_port_mapping(service, external_port=port, protocol=proto,
                                     internal_port=port, internal_client=me,
                                     description=f"{DESCRIPTION} {proto} {port}", lease=lease)

    # -- both --------------------------------------------------------------------

    def _done(self, method: str, gateway: str, external: str, mapped: list[_Mapped]) -> None:
        first = self.method != method
        self.method, self.external_address, self.mapped = method, external, mapped
        if first:
            log.info("port mapping (%s, gateway %s): external address %s; %s", method,
                     gateway, external, ", ".join(
                         f"{m.protocol} {m.internal} -> {m.external}"
                         + (f" for {m.lifetime} s" if m.lifetime else " (permanent)")
                         for m in mapped) or "no ports")
        self.mapped_event.set()

    async def _unmap(self) -> None:
        mapped, self.mapped = self.mapped, []
        if self.method == "PCP":
            gateway = self.gateway or _gateway()
            for m in mapped:
                try:
                    await self._pcp_ask(gateway, *self._pcp_request(gateway, m.protocol,
                                                                    m.internal, 0))
                except (pcp.PcpError, OSError, trio.TooSlowError) as e:
                    log.debug("PCP delete: %s", e)
        elif self.method == "NAT-PMP":
            gateway = self.gateway or _gateway()
            for m in mapped:
                code = natpmp.TCP if m.protocol == "TCP" else natpmp.UDP
                try:
                    await self._natpmp_ask(gateway, natpmp.map_request(code, m.internal, 0, 0))
                except (natpmp.NatPmpError, OSError, trio.TooSlowError) as e:
                    log.debug("NAT-PMP delete: %s", e)
        elif self.method == "UPnP":
            async with http_client(timeout=HTTP_TIMEOUT, trust_env=False) as client:
                for m in mapped:
                    try:
                        await self._soap(client, upnp.delete_port_mapping(
                            self._service, external_port=m.external, protocol=m.protocol))
                    except (upnp.UpnpError, OSError, httpx.HTTPError) as e:
                        log.debug("UPnP delete: %s", e)
        log.info("port mapping: removed %d mappings", len(mapped))
