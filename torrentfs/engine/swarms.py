"""Where one torrent finds its peers: its tracker announcer and its local service
discovery, for ``Torrent`` (``discovery``); and which swarms it is in
(``swarm_hashes``).

A hybrid torrent (BEP 52: v1 ``pieces`` and a v2 ``file tree``) has two swarms: the
peers of its v1 info-hash and those of its v2 info-hash cut to 20 bytes (a client
that knows the torrent only by its v2 hash, from a ``urn:btmh`` magnet, is in the
second only). It is announced under both to trackers, LSD and the DHT; incoming
handshakes may name either (``connector``), and we answer with the one named
(``wire.PeerConnection.handshake``); a peer found only under the v2 hash (a
tracker's or the DHT's answer for it) is dialed naming that hash (``adder``). A v2-only torrent has one swarm, its
truncated v2 hash (``meta.info_hash``).
"""

from __future__ import annotations

from torrentfs.net.lsd import LsdService
from torrentfs.net.tracker import Announcer


def other_hashes(meta) -> tuple[bytes, ...]:
    """The info-hashes of a torrent's other swarms: a hybrid's v2 one, cut to 20
    bytes; none for any other torrent."""
    v2 = getattr(meta, "v2", None)
    if v2 is None or not v2.hybrid or v2.info_hash[:20] == meta.info_hash:
        return ()
    return (v2.info_hash[:20],)


def swarm_hashes(meta) -> tuple[bytes, ...]:
    """Every info-hash a torrent's peers may name: ``meta.info_hash`` first."""
    return (meta.info_hash, *other_hashes(meta))


def adder(t):
    """``add(info_hash, peers)``: peers of torrent ``t`` found under one of its other
    swarms' hashes, dialed naming that hash (a client in a hybrid's v2 swarm only
    refuses its v1 hash)."""
    def add(info_hash: bytes, peers) -> None:
        for addr in peers:
            t.connector.add(addr, swarm=info_hash)
    return add


def discovery(t) -> tuple[Announcer, LsdService | None]:
    """The tracker announcer of torrent ``t`` (none if it does not announce) and
    its LSD service (never for a private torrent), each for every swarm."""
    meta, options = t.meta, t.options
    also = other_hashes(meta)
    announcer = Announcer(
        [list(tier) for tier in meta.announce_list] if options.announce else [],
        meta.info_hash, t.peer_id, lambda: t.port, t._announce_stats,
        t._on_tracker_peers, also=also, on_other_peers=adder(t))
    lsd = (LsdService(meta.info_hash, lambda: t.port, t.add_peer, also=also)
           if options.lsd and not meta.private else None)
    return announcer, lsd
