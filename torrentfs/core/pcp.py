"""PCP (RFC 6887), the Port Control Protocol: the MAP request that asks a home
router to forward a port to us, and its answer. PCP is NAT-PMP's successor, on the
same UDP port (5351) of the default gateway; a NAT-PMP-only gateway answers a PCP
request with a NAT-PMP "unsupported version" answer (version 0), which
``parse_response`` reports as ``PcpUnsupported`` so the caller falls back.

A MAP request (60 bytes)::

    version 2, opcode 1 (MAP), 2 reserved, requested lifetime (4),
    the client's IP address (16: IPv4 as ::ffff:a.b.c.d),
    mapping nonce (12), protocol (1: 6 TCP, 17 UDP), 3 reserved,
    internal port (2), suggested external port (2), suggested external address (16)

The answer (60 bytes, more with options, which are skipped)::

    version 2, 128 + opcode, 1 reserved, result code, lifetime granted (4),
    epoch (4), 12 reserved, then the MAP payload with the assigned external port
    and address

The nonce (12 random bytes, given by the caller) ties an answer to its request and
a renewal or deletion (lifetime 0) to its mapping. Result codes other than 0 are
errors (:data:`RESULTS` names them).

Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

__all__ = ["PORT", "VERSION", "TCP", "UDP", "RESULTS", "MAX_ANSWER", "PcpError",
           "PcpUnsupported", "PcpOther", "MapAnswer", "map_request", "parse_response"]

PORT = 5351
VERSION = 2
OP_MAP = 1
TCP, UDP = 6, 17
MAX_ANSWER = 1100          # RFC 6887 §7: no PCP message is longer
RESULTS = {1: "unsupported version", 2: "not authorized", 3: "malformed request",
           4: "unsupported opcode", 5: "unsupported option", 6: "malformed option",
           7: "network failure", 8: "no resources", 9: "unsupported protocol",
           10: "user quota exceeded", 11: "cannot provide external address",
           12: "address mismatch", 13: "excessive remote peers"}
_HEADER = struct.Struct(">BBBBII12s")      # answer header: 24 bytes
_MAP = struct.Struct(">12sB3xHH16s")       # MAP payload: 36 bytes


class PcpError(Exception):
    """A malformed, unrelated or refusing answer."""


class PcpUnsupported(PcpError):
    """The gateway does not speak PCP (a NAT-PMP answer, or PCP's own
    "unsupported version"): fall back to NAT-PMP."""


class PcpOther(PcpError):
    """An answer to another request (not MAP, or another nonce): to be ignored."""


@dataclass(frozen=True)
class MapAnswer:
    protocol: int          # TCP or UDP
    internal_port: int
    external_port: int
    external_address: str  # IPv4 as a.b.c.d, else IPv6
    lifetime: int          # seconds granted (0: deleted)
    epoch: int


def _ip16(address: str) -> bytes:
    ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + ip.packed).packed
    return ip.packed


def _ip_text(raw: bytes) -> str:
    ip = ipaddress.IPv6Address(raw)
    return str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip)


def map_request(nonce: bytes, protocol: int, internal_port: int, client_ip: str,
                lifetime: int, external_port: int = 0) -> bytes:
    """Ask for (or renew, or with ``lifetime`` 0 delete) the mapping of
    ``internal_port`` identified by ``nonce`` (12 bytes); ``client_ip`` is our
    address as the gateway sees it (the source of the request)."""
    if len(nonce) != 12:
        raise ValueError("the nonce is 12 bytes")
    if protocol not in (TCP, UDP):
        raise ValueError("protocol is TCP or UDP")
    if not (0 < internal_port < 65536 and 0 <= external_port < 65536
            and 0 <= lifetime < 1 << 32):
        raise ValueError("port or lifetime out of range")
    unspecified = _ip16("0.0.0.0" if ":" not in client_ip else "::")
    return (struct.pack(">BBHI", VERSION, OP_MAP, 0, lifetime) + _ip16(client_ip)
            + _MAP.pack(nonce, protocol, internal_port, external_port, unspecified))


def parse_response(data: bytes, nonce: bytes) -> MapAnswer:
    """The gateway's answer to the MAP request with ``nonce``. Raises
    ``PcpUnsupported`` if the gateway does not speak PCP, ``PcpOther`` if it
    answers another request, ``PcpError`` if it is malformed or says no."""
    if len(data) >= 4 and data[0] == 0:   # NAT-PMP: version 0 (its "unsupported version")
        raise PcpUnsupported("the gateway speaks NAT-PMP, not PCP")
    if len(data) < _HEADER.size + _MAP.size or len(data) > MAX_ANSWER or len(data) % 4:
        raise PcpError(f"answer of {len(data)} bytes")
    version, op, _, result, lifetime, epoch, _ = _HEADER.unpack_from(data)
    if version != VERSION:
        raise PcpUnsupported(f"PCP version {version}")
    if op != 128 + OP_MAP:
        raise PcpOther(f"not an answer to MAP (opcode {op})")
    got_nonce, protocol, internal, external, address = _MAP.unpack_from(data, _HEADER.size)
    if got_nonce != nonce:
        raise PcpOther("answer to another request (nonce)")
    if result == 1:
        raise PcpUnsupported("unsupported version")
    if result:
        raise PcpError(f"gateway says: {RESULTS.get(result, f'result {result}')}")
    if protocol not in (TCP, UDP):
        raise PcpError(f"answer for protocol {protocol}")
    return MapAnswer(protocol, internal, external, _ip_text(address), lifetime, epoch)
