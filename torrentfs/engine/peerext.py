"""The extension protocol inside a running torrent (BEP 10): our extension
handshake, serving our metadata (BEP 9) and peer exchange (BEP 11).

``Torrent`` calls four hooks: ``greet`` once a peer's handshake is accepted,
``on_extended`` for each extended message, ``peer_closed``, and ``tick`` once a
second.  Everything else here is the peers' business:

* Every peer that speaks BEP 10 gets our handshake: ``ut_metadata`` with our
  ``metadata_size`` (so a magnet leecher can fetch the info dictionary from us),
  ``ut_pex`` unless PEX is off (``--no-pex``, or a private torrent, BEP 27), and
  our listen port, the peer's address as we see it (``yourip``) and our IPv6
  address (``ipv6``, BEP 7) when we have a global one.
* A peer that tells its IPv6 address (``ipv6``) and listen port while connected
  over IPv4 has that address added as a candidate (and the other way round with
  ``ipv4``): the connector dials it if it has room.
* A metadata request is answered with the piece or a reject; anything else a
  peer sends on ut_metadata is ignored (we ask nothing of it).
* PEX: each peer that speaks ut_pex hears, at most once a minute, the peers we
  are connected to (their listen addresses: where we connected to, or the port
  an incoming peer gave in its handshake), at most 50 added and 50 dropped per
  message.  What peers tell us goes to ``Torrent.add_peer``, at most one message
  per peer per 10 s and while the torrent knows fewer than ``MAX_CANDIDATES``.
  Peers whose session is RC4-encrypted are flagged as preferring encryption
  (0x01), and a peer so flagged to us is dialed encrypted first.
* BEP 55 holepunch (``ut_holepunch``, with uTP on): engine/holepunch.py relays,
  answers ``connect`` and asks relays for peers we cannot dial; peers that speak it
  are flagged 0x08 in our PEX.
* A malformed extension handshake closes the peer; a malformed ut_pex,
  ut_metadata or ut_holepunch message is logged and ignored (one bad field is no reason to lose
  a peer that serves data).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import trio

from torrentfs import __version__
from torrentfs.core import metadata, pex, wire
from torrentfs.core.extension import (
    OUR_IDS,
    UT_METADATA,
    UT_PEX,
    ExtensionError,
    ExtHandshake,
    encode_handshake,
    parse_handshake,
)
from torrentfs.core.holepunch import UT_HOLEPUNCH
from torrentfs.engine.holepunch import HOLEPUNCH_ID, Holepunch
from torrentfs.engine.upload import MAX_UPLOAD_QUEUE
from torrentfs.net.listen import global_ipv6

log = logging.getLogger("torrentfs.ext")

MAX_CANDIDATES = 2000
REQQ = MAX_UPLOAD_QUEUE  # requests we queue per peer (BEP 10 'reqq')


@dataclass
class _PeerExt:
    hs: ExtHandshake
    pex: pex.PexPeer = field(default_factory=pex.PexPeer)


class PeerExtensions:
    """The BEP 10 side of one ``Torrent`` (see the module docstring)."""

    def __init__(self, torrent, *, pex_enabled: bool = True) -> None:
        self.torrent = torrent
        self.pex_enabled = pex_enabled
        self.ids = {name: i for name, i in OUR_IDS.items()
                    if pex_enabled or name != UT_PEX}
        self.holepunch: Holepunch | None = None
        if torrent.options.utp:
            self.holepunch = Holepunch(torrent, self)
            self.ids[UT_HOLEPUNCH] = HOLEPUNCH_ID
            torrent.connector.on_unreachable = self.holepunch.unreachable
        self._by_id = {i: name for name, i in self.ids.items()}
        self.peers: dict[object, _PeerExt] = {}
        self.learned = 0  # addresses that PEX gave us

    def greet(self, s) -> None:
        if not s.conn.extended:
            return
        info = self.torrent.meta.info_bytes
        s.send(wire.Extended(0, encode_handshake(
            self.ids, metadata_size=len(info), port=self.torrent.port or None,
            client=f"torrentfs {__version__}", reqq=REQQ, yourip=s.addr[0],
            ipv6=global_ipv6())))

    def peer_closed(self, s) -> None:
        self.peers.pop(s, None)

    def on_extended(self, s, msg: wire.Extended) -> None:
        if msg.ext_id == 0:
            try:
                hs = parse_handshake(msg.payload)
            except ExtensionError as e:
                s.close(f"bad extension handshake: {e}")
                return
            self.peers[s] = _PeerExt(hs)
            s.reqq = hs.reqq or 0  # our pipeline to it stays within (engine/requests)
            log.debug("%r speaks %s (%s)", s, ", ".join(sorted(hs.ids)) or "no extensions",
                      hs.client or "unknown client")
            other = hs.ipv4 if ":" in s.addr[0] else hs.ipv6
            if other and hs.listen_port and other != s.addr[0]:
                self.torrent.add_peer((other, hs.listen_port))
            return
        state = self.peers.get(s)
        name = self._by_id.get(msg.ext_id)
        if state is None or name is None:
            return  # before its handshake, or an id we never assigned: ignore
        if name == UT_METADATA:
            self._on_metadata(s, state, msg.payload)
        elif name == UT_PEX:
            self._on_pex(s, state, msg.payload)
        elif name == UT_HOLEPUNCH and self.holepunch is not None:
            self.holepunch.on_message(s, msg.payload)

    def _on_metadata(self, s, state: _PeerExt, payload: bytes) -> None:
        try:
            m = metadata.decode(payload)
        except metadata.MetadataError as e:
            log.info("%r: %s", s, e)
            return
        their_id = state.hs.ids.get(UT_METADATA)
        if isinstance(m, metadata.Request) and their_id:
            answer = metadata.serve(self.torrent.meta.info_bytes, m)
            s.send(wire.Extended(their_id, metadata.encode(answer)))

    def _on_pex(self, s, state: _PeerExt, payload: bytes) -> None:
        t = self.torrent
        if not state.pex.accept(trio.current_time()):
            return
        try:
            m = pex.decode(payload)
        except pex.PexError as e:
            log.info("%r: %s", s, e)
            return
        log.debug("%r: pex %d added, %d dropped", s, len(m.added), len(m.dropped))
        new = 0
        for addr, flags in m.added:
            if len(t.candidates) >= MAX_CANDIDATES:
                break
            if addr not in t.candidates and addr not in t.sessions:
                t.add_peer(addr)
                if addr not in t.candidates:
                    continue  # not taken: an fe80:: address without its zone
                new += 1
                if flags & pex.FLAG_ENCRYPTION:
                    t.candidates[addr].encrypt = True  # it prefers MSE: dial it so
                if flags & pex.FLAG_UTP:
                    t.candidates[addr].utp = True
            if self.holepunch is not None:
                self.holepunch.learned(addr, s, flags)
        self.learned += new
        if new:
            log.info("pex: %d new peers from %r (%s)", new, s,
                     ", ".join(f"{h}:{p}" for (h, p), _ in m.added[:5]))

    def _known(self) -> dict[tuple[str, int], tuple[object, int]]:
        """Listen address -> (session, flags) of every peer we are connected to."""
        out: dict[tuple[str, int], tuple[object, int]] = {}
        for s in list(self.torrent.sessions.values()):
            if not s.registered or s.closed:
                continue
            if s.outgoing:
                addr, flags = s.addr, pex.FLAG_REACHABLE
            else:
                state = self.peers.get(s)
                port = state.hs.listen_port if state else None
                if not port:
                    continue
                addr, flags = (s.addr[0], port), 0
            if self.torrent.picker.is_seed(s):
                flags |= pex.FLAG_SEED
            if getattr(s.stream, "encrypted", False):
                flags |= pex.FLAG_ENCRYPTION
            if s.transport == "utp":
                flags |= pex.FLAG_UTP
            state = self.peers.get(s)
            if state is not None and state.hs.ids.get(UT_HOLEPUNCH):
                flags |= pex.FLAG_HOLEPUNCH
            out[addr] = (s, flags)
        return out

    def endpoints(self) -> dict[tuple[str, int], object]:
        """Listen address -> session of every peer we are connected to."""
        return {a: s for a, (s, _) in self._known().items()}

    def tick(self, now: float) -> None:
        if not self.pex_enabled:
            return
        known = seen = None
        for s, state in list(self.peers.items()):
            their_id = state.hs.ids.get(UT_PEX)
            if not their_id or s.closed or not state.pex.due(now):
                continue
            if known is None:
                known = self._known()
                seen = frozenset((a, f) for a, (_, f) in known.items())
            if state.pex.quiet_for == seen:  # nothing new for it since it had nothing:
                continue  # no dict of every peer for each peer, every second
            current = {a: f for a, (peer, f) in known.items() if peer is not s}
            payload = state.pex.update(current, now)
            if payload is not None:
                s.send(wire.Extended(their_id, payload))
            state.pex.quiet_for = seen if payload is None else None
