"""Peer and node addresses: ``(host, port)`` pairs, their compact form and how
they are shown.

The compact form (BEP 23 tracker peers, BEP 5 DHT nodes and values, BEP 11 PEX,
BEP 32 for IPv6) is the packed IP address followed by the port, big-endian: 6
bytes for IPv4, 18 for IPv6.  Shown, an IPv6 address is bracketed
(``[::1]:6881``), as in URLs and magnet links.

An IPv6 link-local address (``fe80::/10``) is only dialable with its zone, the
interface it was heard on: the socket layer reports it as a scope id beside the
address, and we carry it in the host string (``fe80::1%2``, as getaddrinfo reads it).
Every address a socket reports goes through ``zoned``, so one peer has one address
whichever way it was heard of (LSD, an incoming connection, a uTP datagram).

Pure: no I/O.
"""

from __future__ import annotations

import ipaddress

Addr = tuple[str, int]
"""An IP address literal (no hostname) and a port."""


def is_ipv6(addr: Addr) -> bool:
    return ":" in addr[0]


def show_addr(addr: Addr) -> str:
    """``host:port``, or ``[host]:port`` for IPv6."""
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def pack_addr(addr: Addr) -> bytes:
    """``addr`` in compact form: 6 bytes (IPv4) or 18 (IPv6).  Raises ValueError if
    the host is not an IP address literal, OverflowError for a port outside 0..65535."""
    return ipaddress.ip_address(addr[0]).packed + int(addr[1]).to_bytes(2, "big")


def unpack_addr(raw: bytes) -> Addr:
    """The address in ``raw``, a compact form (6 or 18 bytes; the caller checks the
    length)."""
    return str(ipaddress.ip_address(raw[:-2])), int.from_bytes(raw[-2:], "big")


def zoned(host: str, scope_id: int) -> str:
    """``host`` as a socket reported it with ``scope_id`` (its 4th element for IPv6):
    ``fe80::1%2`` for a link-local address heard on interface 2, anything else
    unchanged. Without the zone TCP cannot connect to a link-local address, and the
    replies to uTP sent to it come back from the zoned one."""
    if scope_id and ":" in host and "%" not in host:
        return f"{host}%{scope_id}"
    return host


def unzoned_link_local(host: str) -> bool:
    """Whether ``host`` is an IPv6 link-local address without a zone (as PEX and
    trackers pass them on): it names no link of ours, so it cannot be dialed."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.version == 6 and ip.is_link_local and not ip.scope_id
