"""What a DHT node keeps for others (BEP 5): announce tokens, and the peers announced.

Pure: no clock, no randomness; ``now`` and fresh secrets come from the caller.

Contract
--------
* ``Tokens``: a token is a hash of a secret and the asker's IP. The secret is
  rotated every ``ROTATE_EVERY`` seconds (the caller supplies the new one when
  ``due``); a token made with the current or the previous secret is valid, so a
  token lives between 5 and 10 minutes. A token given to one IP is worthless from
  another.
* ``PeerStore``: peers announced per info-hash, each forgotten ``PEER_TTL`` seconds
  after its last announce. At most ``max_torrents`` info-hashes (the one announced
  least recently is dropped) and ``max_peers`` peers each (the oldest dropped):
  memory stays bounded whatever others send. ``get`` returns at most ``n`` peers,
  newest first.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections import OrderedDict

from torrentfs.core.address import Addr

ROTATE_EVERY = 5 * 60.0
TOKEN_LEN = 8
PEER_TTL = 30 * 60.0
MAX_TORRENTS = 1000
MAX_PEERS = 200


class Tokens:
    def __init__(self, secret: bytes, now: float) -> None:
        self._secrets = [secret, secret]  # current, previous
        self._rotated = now

    def due(self, now: float) -> bool:
        return now - self._rotated >= ROTATE_EVERY

    def rotate(self, secret: bytes, now: float) -> None:
        self._secrets = [secret, self._secrets[0]]
        self._rotated = now

    @staticmethod
    def _make(secret: bytes, ip: str) -> bytes:
        return hashlib.sha1(secret + ipaddress.ip_address(ip).packed).digest()[:TOKEN_LEN]

    def token_for(self, ip: str) -> bytes:
        return self._make(self._secrets[0], ip)

    def valid(self, token: bytes, ip: str) -> bool:
        return any(token == self._make(s, ip) for s in self._secrets)


class PeerStore:
    def __init__(self, max_torrents: int = MAX_TORRENTS, max_peers: int = MAX_PEERS,
                 ttl: float = PEER_TTL) -> None:
        self.max_torrents, self.max_peers, self.ttl = max_torrents, max_peers, ttl
        # info-hash -> (peer -> time of its last announce), least recent first
        self._torrents: OrderedDict[bytes, OrderedDict[Addr, float]] = OrderedDict()

    def __len__(self) -> int:
        return sum(len(p) for p in self._torrents.values())

    def announce(self, info_hash: bytes, peer: Addr, now: float) -> None:
        peers = self._torrents.pop(info_hash, None)
        if peers is None:
            peers = OrderedDict()
            while len(self._torrents) >= self.max_torrents:
                self._torrents.popitem(last=False)
        self._torrents[info_hash] = peers
        peers.pop(peer, None)
        peers[peer] = now
        while len(peers) > self.max_peers:
            peers.popitem(last=False)

    def get(self, info_hash: bytes, now: float, n: int = 50) -> list[Addr]:
        peers = self._torrents.get(info_hash)
        if not peers:
            return []
        for addr in [a for a, t in peers.items() if now - t >= self.ttl]:
            del peers[addr]
        if not peers:
            del self._torrents[info_hash]
            return []
        return list(reversed(peers))[:n]

    def expire(self, now: float) -> None:
        for h in list(self._torrents):
            self.get(h, now, 0)
