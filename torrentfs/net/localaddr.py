"""This host's own IP addresses (for ``--prefer-subnet auto``), read from Linux's
/proc/net/fib_trie (IPv4: the ``/32 host LOCAL`` entries) and /proc/net/if_inet6
(IPv6), as seen from our network namespace. Unreadable files give no addresses."""

from __future__ import annotations

import ipaddress


def parse_fib_trie(text: str) -> list[str]:
    """The IPv4 addresses the kernel's fib_trie dump marks ``/32 host LOCAL``."""
    out: list[str] = []
    last = None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("|--"):
            last = s[3:].strip()
        elif s == "/32 host LOCAL" and last and last not in out:
            out.append(last)
    return out


def parse_if_inet6(text: str) -> list[str]:
    """The IPv6 addresses in /proc/net/if_inet6 (32 hex digits per line)."""
    out: list[str] = []
    for line in text.splitlines():
        parts = line.split()
        if parts and len(parts[0]) == 32:
            try:
                ip = str(ipaddress.IPv6Address(bytes.fromhex(parts[0])))
            except ValueError:
                continue
            if ip not in out:
                out.append(ip)
    return out


def own_addresses() -> list[str]:
    found: list[str] = []
    for path, parse in (("/proc/net/fib_trie", parse_fib_trie),
                        ("/proc/net/if_inet6", parse_if_inet6)):
        try:
            with open(path) as f:
                found += parse(f.read())
        except OSError:
            pass
    return found
