"""Which peers are near: the ``--prefer-subnet`` decisions. Pure: no I/O, no clock.

In a cluster the nodes of one rack (one subnet) share a fast switch and reach the
other racks through a slower uplink. For that uplink to carry about one copy of the
data per rack rather than one per node, each node, given its subnet (``Locality``):

* dials and keeps peers of its subnet first (``choose``: nearly all of its slots go
  to local peers; ``remote_min`` of them stay for the others, through which new
  pieces come into the rack);
* asks a remote peer only for pieces no local peer has (``RemoteGate``, counted
  by ``LocalHave``), unless a read has waited on the piece ``AVOID_GRACE`` past
  its deadline (then anyone may serve it). Nodes of one rack reading the same data
  ask for pieces in orders of their own (``Picker``'s per-node jitter), so a piece
  one of them brought in is mostly taken from it by the others. (Naming one
  importer per piece among a node's local peers, by rendezvous hash, cut the
  uplink's copies further but stalled reads for the importer's remote peers:
  five times slower in the simulator; not done.)
* does not prefer local peers when unchoking: the simulator showed that even a
  local-first tie-break among equal rates (all 0 in a new swarm) lets the origin
  and the first holders feed their own rack first and starves the others (3
  racks of 8 nodes: the last rack took 3.8 copies over its uplink instead of 1.2,
  and twice as long). Remote peers only ask for what their subnet lacks anyway.

``Locality.parse(spec, own)`` takes a CIDR (``10.1.2.0/24``) or ``auto``: the /24
(IPv4) or /64 (IPv6) of each of our own non-loopback addresses.
"""

from __future__ import annotations

import ipaddress
from typing import Callable, Hashable, Iterable, Sequence, TypeVar

from torrentfs.core.bitfield import Bitfield

AUTO_PREFIX = {4: 24, 6: 64}   # ``auto``: our own addresses' subnet of this size
REMOTE_MIN = 4                 # dialed/kept peers outside the subnet, at least
AVOID_GRACE = 1.0              # s past a waiting read's deadline: any peer may serve it

T = TypeVar("T")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class TopologyError(ValueError):
    """A --prefer-subnet value that is neither a CIDR nor ``auto``."""


class Locality:
    """The subnets counted as local (empty: every peer is as near as any other)."""

    def __init__(self, networks: Iterable[Network] = ()) -> None:
        self.networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __repr__(self) -> str:
        return f"Locality({', '.join(map(str, self.networks)) or 'off'})"

    @classmethod
    def parse(cls, spec: str | None, own: Iterable[str] = ()) -> Locality:
        """``spec``: None (off), a CIDR, or ``auto`` (the subnet of each address in
        ``own`` that is neither loopback, link-local nor unspecified)."""
        if not spec:
            return cls()
        if spec == "auto":
            nets = []
            for host in own:
                try:
                    ip = ipaddress.ip_address(host.split("%")[0])
                except ValueError:
                    continue
                if ip.is_loopback or ip.is_link_local or ip.is_unspecified:
                    continue
                net = ipaddress.ip_network(f"{ip}/{AUTO_PREFIX[ip.version]}", strict=False)
                if net not in nets:
                    nets.append(net)
            return cls(nets)
        try:
            return cls([ipaddress.ip_network(part.strip(), strict=False)
                        for part in spec.split(",") if part.strip()])
        except ValueError as e:
            raise TopologyError(f"--prefer-subnet: {e} (a CIDR such as 10.0.1.0/24, "
                                "or auto)") from None

    def is_local(self, host: str) -> bool:
        """True when ``host`` (an IP address; an IPv4-mapped IPv6 one counts as IPv4)
        is in one of the subnets."""
        if not self.networks:
            return False
        try:
            ip = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == n.version and ip in n for n in self.networks)


def choose(candidates: Sequence[T], is_local: Callable[[T], bool], limit: int,
           remote_min: int = REMOTE_MIN) -> list[T]:
    """Up to ``limit`` of ``candidates`` (in their order otherwise): local ones first,
    keeping at least ``remote_min`` places for remote ones while there are any (fewer
    if ``limit`` is smaller)."""
    local = [c for c in candidates if is_local(c)]
    remote = [c for c in candidates if not is_local(c)]
    keep_remote = min(len(remote), remote_min, limit)
    chosen_local = local[:limit - keep_remote]
    chosen_remote = remote[:limit - len(chosen_local)]
    return chosen_local + chosen_remote


def dial_order(candidates: Sequence[T], is_local: Callable[[T], bool]) -> list[T]:
    """``candidates`` with the local ones first (a stable sort)."""
    return sorted(candidates, key=lambda c: not is_local(c))


class LocalHave:
    """Which pieces local peers have, as they announce them: the shell tells it of
    each local peer's bitfield and haves (``have``) and of its going (``forget``).
    ``index in local_have`` is True while at least one local peer has it."""

    def __init__(self, num_pieces: int) -> None:
        self.num_pieces = num_pieces
        self.counts = [0] * num_pieces
        self._peers: dict[Hashable, Bitfield] = {}

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and 0 <= index < self.num_pieces \
            and self.counts[index] > 0

    def have(self, peer: Hashable, index: int) -> None:
        bits = self._peers.get(peer)
        if bits is None:
            bits = self._peers[peer] = Bitfield(self.num_pieces)
        if 0 <= index < self.num_pieces and bits.add(index):
            self.counts[index] += 1

    def have_all(self, peer: Hashable, indexes: Iterable[int]) -> None:
        for i in indexes:
            self.have(peer, i)

    def forget(self, peer: Hashable) -> None:
        for i in self._peers.pop(peer, ()):
            self.counts[i] -= 1


class RemoteGate:
    """What a remote peer is not asked for (``Picker.pick``'s ``avoid``, which still
    takes a piece a read waits on ``AVOID_GRACE`` past its deadline): a piece some
    local peer has."""

    def __init__(self, local_have: LocalHave) -> None:
        self.local_have = local_have

    def __contains__(self, index: object) -> bool:
        return index in self.local_have
