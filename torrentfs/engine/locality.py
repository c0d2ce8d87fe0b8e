"""``--prefer-subnet`` for one torrent: ``Nearby``, owned by a ``Torrent``
(``torrent.nearby``). The decisions are core/topology's; this keeps their inputs:
which peers are local (by address, against the subnets given or, with ``auto``,
those of our own addresses: net/localaddr), and what the local peers have.

The torrent tells it of each peer's bitfield and haves (``got``, ``got_all``) and
of its going (``closed``); it answers which peers are remote (``remote``), what a peer is not to be asked for (``avoid``: the
picker's), and in what order to dial candidates (``dial_order``). With no subnet
preferred every answer is "no preference" and nothing is kept.
"""

from __future__ import annotations

from typing import Iterable

from torrentfs.core.topology import LocalHave, Locality, RemoteGate, dial_order
from torrentfs.net.localaddr import own_addresses


class Nearby:
    def __init__(self, spec: str | None, num_pieces: int, own=own_addresses) -> None:
        self.locality = Locality.parse(spec, own() if spec == "auto" else ())
        self.local_have = LocalHave(num_pieces)
        self.gate = RemoteGate(self.local_have)
        self._local: dict[str, bool] = {}   # host -> local?

    def __bool__(self) -> bool:
        return bool(self.locality)

    def is_local(self, host: str) -> bool:
        got = self._local.get(host)
        if got is None:
            if len(self._local) > 4096:
                self._local.clear()
            got = self._local[host] = self.locality.is_local(host)
        return got

    def remote(self, s) -> bool:
        """The peer is outside our subnet, and we prefer ours."""
        return bool(self.locality) and not self.is_local(s.addr[0])

    def avoid(self, s):
        """What not to ask the peer for (``Picker.pick``'s ``avoid``), or None."""
        return self.gate if self.remote(s) else None

    def got(self, s, index: int) -> None:
        if self.locality and self.is_local(s.addr[0]):
            self.local_have.have(s, index)

    def got_all(self, s, indexes: Iterable[int]) -> None:
        if self.locality and self.is_local(s.addr[0]):
            self.local_have.have_all(s, indexes)

    def closed(self, s) -> None:
        if self.locality:
            self.local_have.forget(s)

    def dial_order(self, addrs: list[tuple[str, int]]) -> list[tuple[str, int]]:
        if not self.locality:
            return addrs
        return dial_order(addrs, lambda a: self.is_local(a[0]))
