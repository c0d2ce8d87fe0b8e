"""NAT-PMP (RFC 6886): the datagrams that ask a home router for our external
address and for port mappings, and their answers; and the default gateway read
from /proc/net/route's text.

A client sends to the gateway's UDP port 5351::

    external address:  version 0, opcode 0                                (2 bytes)
    map a port:        version 0, opcode 1 (UDP) / 2 (TCP), 2 reserved,
                       internal port, suggested external port, lifetime s   (12 bytes)
    answers:           version 0, opcode 128 + request's, result code, seconds
                       since the gateway's epoch, then: the external IPv4 address
                       (12 bytes in all) / internal port, external port, lifetime
                       (16 bytes in all)

A mapping with lifetime 0 (and external port 0) is deleted. Result codes other
than 0 are errors (:data:`RESULTS` names them). Requests are retried by the shell
(250 ms doubling, bounded); the gateway answers every retry.

Pure: no I/O.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

__all__ = ["PORT", "UDP", "TCP", "RESULTS", "NatPmpError", "ExternalAddress", "Mapping",
           "external_address_request", "map_request", "parse_response", "default_gateway"]

PORT = 5351
UDP, TCP = 1, 2
RESULTS = {1: "unsupported version", 2: "not authorized / refused", 3: "network failure",
           4: "out of resources", 5: "unsupported opcode"}


class NatPmpError(Exception):
    """A bad or refusing answer."""


@dataclass(frozen=True)
class ExternalAddress:
    address: str
    epoch: int


@dataclass(frozen=True)
class Mapping:
    protocol: int      # UDP or TCP
    internal_port: int
    external_port: int
    lifetime: int      # seconds granted (0: deleted)
    epoch: int


def external_address_request() -> bytes:
    return b"\x00\x00"


def map_request(protocol: int, internal_port: int, external_port: int,
                lifetime: int) -> bytes:
    """Ask for (or with ``lifetime`` 0 delete) a mapping of ``internal_port``."""
    if protocol not in (UDP, TCP):
        raise ValueError("protocol is UDP or TCP")
    return struct.pack(">BBHHHI", 0, protocol, 0, internal_port, external_port, lifetime)


def parse_response(data: bytes) -> ExternalAddress | Mapping:
    """An answer from the gateway; NatPmpError if it is malformed or says no."""
    if len(data) < 8:
        raise NatPmpError(f"answer of {len(data)} bytes")
    version, op, result, epoch = struct.unpack(">BBHI", data[:8])
    if version != 0 or op < 128:
        raise NatPmpError(f"not a NAT-PMP answer (version {version}, opcode {op})")
    if result:
        raise NatPmpError(f"gateway says: {RESULTS.get(result, f'result {result}')}")
    op -= 128
    if op == 0:
        if len(data) < 12:
            raise NatPmpError("short external address answer")
        return ExternalAddress(str(ipaddress.IPv4Address(data[8:12])), epoch)
    if op in (UDP, TCP):
        if len(data) < 16:
            raise NatPmpError("short mapping answer")
        internal, external, lifetime = struct.unpack(">HHI", data[8:16])
        return Mapping(op, internal, external, lifetime, epoch)
    raise NatPmpError(f"answer to unknown opcode {op}")


def default_gateway(proc_net_route: str) -> str | None:
    """The IPv4 default gateway in the text of /proc/net/route, or None."""
    for line in proc_net_route.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4:
            continue
        try:
            dest, gateway, flags = fields[1], int(fields[2], 16), int(fields[3], 16)
        except ValueError:
            continue
        if dest == "00000000" and flags & 0x2 and gateway:  # RTF_GATEWAY
            return str(ipaddress.IPv4Address(struct.pack("<I", gateway)))
    return None
