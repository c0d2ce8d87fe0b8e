"""BEP 55 holepunch inside a running torrent: the trio side of ``core.holepunch``.

``PeerExtensions`` owns one ``Holepunch`` when uTP is on, offers ``ut_holepunch``
(id 4, as libtorrent) in its extension handshake and hands it the messages:

* As a relay: a peer's ``rendezvous(target)`` for a peer we are connected to that
  speaks ut_holepunch gets ``connect`` sent to both, each with the other's
  endpoint (its listen address: where we dialed it, or its address with the port
  of its extension handshake); else an ``error`` (``core.holepunch.Relay``, rate
  limited per asking peer).
* As a party: a ``connect(addr)`` makes us dial ``addr`` over uTP at once (the other
  side dials us at the same time, which opens both NATs), encrypted as the policy
  says, and run the session like any outgoing one (bounded: ``Punches``).
* As an initiator: when the connector cannot dial a candidate (``unreachable``), a
  ``rendezvous`` for it goes to the peer whose PEX told us of it with the holepunch
  flag, else to any connected peer that speaks ut_holepunch (it answers an error
  if it does not know the target), at most once a minute per target.
* An ``error`` is logged. A malformed message is logged and ignored.

Incoming uTP connections need nothing here: the socket accepts them anyway.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import trio

from torrentfs.core import holepunch as hp
from torrentfs.core import wire
from torrentfs.core.address import Addr, show_addr

log = logging.getLogger("torrentfs.holepunch")

HOLEPUNCH_ID = 4          # the id we ask peers to use (libtorrent's)
PUNCH_TIMEOUT = 8.0       # a holepunch connect not answered by then fails
MAX_VIA = 2000            # targets whose PEX source is remembered


class Holepunch:
    def __init__(self, torrent, ext) -> None:
        self.torrent = torrent
        self.ext = ext            # the PeerExtensions: peers' handshakes, endpoints
        self.relay = hp.Relay()
        self.punches = hp.Punches()
        self.via: OrderedDict[Addr, object] = OrderedDict()  # target -> session
        self.relayed = 0          # rendezvous we answered with two connects
        self.connects = 0         # holepunch connects we made

    # -- what peers say --------------------------------------------------------------

    def supports(self, s) -> bool:
        state = self.ext.peers.get(s)
        return bool(state and state.hs.ids.get(hp.UT_HOLEPUNCH)) and not s.closed

    def learned(self, addr: Addr, s, flags: int) -> None:
        """PEX from ``s`` told of ``addr`` with ``flags``."""
        from torrentfs.core.pex import FLAG_HOLEPUNCH
        if flags & FLAG_HOLEPUNCH and self.supports(s):
            self.via.pop(addr, None)
            while len(self.via) >= MAX_VIA:
                self.via.popitem(last=False)
            self.via[addr] = s

    def on_message(self, s, payload: bytes) -> None:
        try:
            m = hp.decode(payload)
        except hp.HolepunchError as e:
            log.info("%r: %s", s, e)
            return
        now = trio.current_time()
        if m.type == hp.RENDEZVOUS:
            self._relay(s, m.addr, now)
        elif m.type == hp.CONNECT:
            self._connect(s, m.addr, now)
        else:   # routine (a peer asked at random does not know the target): debug
            log.debug("holepunch through %r to %s failed: %s", s, show_addr(m.addr),
                      hp.ERRORS.get(m.error, f"error {m.error}"))

    # -- relay -----------------------------------------------------------------------

    def _relay(self, s, target: Addr, now: float) -> None:
        known = self.ext.endpoints()          # endpoint -> session
        sender = next((a for a, peer in known.items() if peer is s), s.addr)
        peers = {a: self.supports(peer) for a, peer in known.items()}
        peers.setdefault(sender, True)
        out = self.relay.rendezvous(sender, target, peers, None, now)
        by_addr = {**known, sender: s}
        for addr, msg in out:
            self._send(by_addr[addr], msg)
        if len(out) == 2:
            self.relayed += 1
            log.debug("holepunch: put %s and %s in touch", show_addr(sender),
                      show_addr(target))

    # -- party -----------------------------------------------------------------------

    def _connect(self, relay, addr: Addr, now: float) -> None:
        t = self.torrent
        c = t.connector
        if addr in t.sessions or addr in c.connecting:
            # The other side's dial (sent the same connect) may beat ours to it.
            log.info("holepunch: %r asks us to connect to %s: connected already",
                     relay, show_addr(addr))
            return
        if (c.utp is None or not c.room(len(c.connecting))
                or not self.punches.should_connect(now)):
            return
        nursery = getattr(t, "_nursery", None)
        if nursery is None:
            return
        c.add(addr, utp=True)
        c.connecting.add(addr)
        log.info("holepunch: %r asks us to connect to %s: dialing uTP", relay, show_addr(addr))
        nursery.start_soon(self._punch, addr)

    async def _punch(self, addr: Addr) -> None:
        t = self.torrent
        c = t.connector
        c.add(addr, utp=True)   # (known already, unless forgotten meanwhile)
        cand = c.candidates[addr]
        policy = t.options.encryption
        try:
            try:
                stream = await c.utp.connect(addr, timeout=PUNCH_TIMEOUT)
            except OSError as e:
                log.info("holepunch: uTP to %s failed: %s", show_addr(addr), e)
                return
            if addr in t.sessions:   # it reached us first
                await stream.aclose()
                return
            if policy == "require" or (policy == "prefer" and cand.encrypt):
                stream = await c._encrypt(stream, addr, cand)
                if stream is None:
                    return
        finally:
            c.connecting.discard(addr)
        self.connects += 1
        log.info("holepunch: connected to %s over uTP", show_addr(addr))
        await c.attach(stream, addr, transport="utp")

    # -- initiator -------------------------------------------------------------------

    def unreachable(self, addr: Addr) -> None:
        """The connector could not dial ``addr``: ask a relay to put us in touch."""
        t = self.torrent
        if t.connector.utp is None or addr in t.sessions:
            return
        relay = self.via.get(addr)
        told = relay is not None and self.supports(relay)   # its PEX flagged addr
        if not told:
            relay = next((s for s in list(t.sessions.values())
                          if s.addr != addr and self.supports(s)), None)
        if relay is None or not self.punches.should_ask(addr, trio.current_time()):
            return
        self._send(relay, hp.Message(hp.RENDEZVOUS, addr))
        log.log(logging.INFO if told else logging.DEBUG,
                "holepunch: asked %r to put us in touch with %s", relay, show_addr(addr))

    def _send(self, s, msg: hp.Message) -> None:
        state = self.ext.peers.get(s)
        their = state.hs.ids.get(hp.UT_HOLEPUNCH) if state else None
        if their and not s.closed:
            s.send(wire.Extended(their, hp.encode(msg)))
