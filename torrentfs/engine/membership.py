"""Which peer sessions belong to one torrent: ``Membership`` (``torrent.membership``).

A session past its BitTorrent handshake is admitted (``on_handshake``) unless it is
ourselves (the address is then marked ``banned`` among the connector's candidates,
never dialed again), a banned peer, or a second connection to a peer already
connected (a twin; if that peer is the origin, the first connection is marked as the
origin's). An admitted session is registered: added to the picker, told which pieces
we have (BITFIELD, or HAVE ALL / HAVE NONE with the fast extension) and greeted by the
extensions. ``on_peer_closed`` undoes all of that and frees what the session held in
the satellites (requests, block-level reads, locality, uploads, extensions).

``ban`` refuses a peer's address (``banned_ips``) and peer id (``banned_ids``) for the
rest of the session and closes every connection that has either; a web seed is given
up instead. The connector does not dial a banned address (``torrent.banned_ips`` is
this same set).

The torrent (``torrent.Torrent``) keeps ``on_handshake`` and ``on_peer_closed``, its
``peer.Swarm`` callbacks, and ``ban``, and hands them to this object; of the torrent
it uses ``peer_id``, ``sessions``, ``have``, ``picker``, ``metrics``, ``connector``,
``requests``, ``reads``, ``nearby``, ``uploads``, ``ext`` and ``schedule``.
"""

from __future__ import annotations

import logging

from torrentfs.core import wire
from torrentfs.net.peer import PeerSession
from torrentfs.net.webseed import WebSeed

log = logging.getLogger("torrentfs.torrent")

TWIN_REASON = "already connected to this peer"  # a second session to one peer id


class Membership:
    """The torrent's admission of sessions, their registration, and bans (see the
    module docstring)."""

    def __init__(self, torrent) -> None:
        self.torrent = torrent
        # Peers that sent bad data are banned for the session, by address and peer id.
        self.banned_ips: set[str] = set()
        self.banned_ids: set[bytes] = set()

    def on_handshake(self, s: PeerSession) -> bool:
        """Admit and register a session past its handshake, or refuse it (False,
        with its ``close_reason`` said)."""
        t = self.torrent
        if s.peer_id == t.peer_id:
            s.close_reason = "connected to ourselves"
            if s.outgoing and s.addr in t.connector.candidates:
                t.connector.candidates[s.addr].banned = True
            return False
        if s.peer_id in self.banned_ids or s.addr[0] in self.banned_ips:
            s.close_reason = "banned peer"
            return False
        twins = [o for o in t.sessions.values()
                 if o is not s and o.peer_id == s.peer_id and not o.closed]
        if twins:
            s.close_reason = TWIN_REASON
            if t.metrics.source_of(s.addr, s.peer_id) == "origin":
                for o in twins:  # the origin, reached first at another of its addresses
                    o.source = "origin"
            return False
        t.picker.add_peer(s)
        s.registered = True
        s.source = t.metrics.source_of(s.addr, s.peer_id)  # whose bytes: origin or peer
        if s.fast and t.have.complete:
            s.send(wire.HaveAll())
        elif s.fast and not t.have.count:
            s.send(wire.HaveNone())
        elif t.have.count:
            s.send(wire.Bitfield(t.have.to_bytes()))
        t.ext.greet(s)
        log.info("connected to %r (%s)", s, "out" if s.outgoing else "in")
        return True

    def on_peer_closed(self, s: PeerSession) -> None:
        """A session ended: out of ``sessions`` and the picker, and whatever it held
        freed for the others."""
        t = self.torrent
        if t.sessions.get(s.addr) is s:
            del t.sessions[s.addr]
        if s.registered:
            t.picker.remove_peer(s)
            s.registered = False
        t.requests.forget(s)
        t.reads.blocks.peer_left(s)
        t.nearby.closed(s)
        t.uploads.closed(s)
        s.queued.clear()
        s.upload_fifo.clear()
        t.ext.peer_closed(s)
        t.connector.wake()
        t.schedule()

    def ban(self, s: PeerSession | WebSeed, why: str) -> None:
        """Refuse the peer's address and peer id for the rest of the session, and
        drop every connection that has either. A web seed is given up."""
        if isinstance(s, WebSeed):
            s.drop(why)
            return
        ip = s.addr[0]
        if ip in self.banned_ips and s.peer_id in self.banned_ids:
            return
        log.warning("banned %r (peer id %r): %s", s, s.peer_id, why)
        self.banned_ips.add(ip)
        if s.peer_id:
            self.banned_ids.add(s.peer_id)
        for other in list(self.torrent.sessions.values()):
            if other.addr[0] == ip or (s.peer_id and other.peer_id == s.peer_id):
                other.close(f"banned: {why}")
