"""BEP 55 holepunch: the ``ut_holepunch`` extension message, and the decisions of a
relay and of the two peers it puts in touch.

A peer (the initiator) that cannot reach a target directly asks a peer connected to
both (the relay) with ``rendezvous(target)``; the relay sends ``connect(initiator)``
to the target and ``connect(target)`` to the initiator, and both then connect to
each other at once over uTP, so that each side's NAT lets the other's packets in.
A relay that cannot help answers ``error(target, code)``.

The payload (after the extended message id)::

    msg_type   1 byte   0 rendezvous, 1 connect, 2 error
    addr_type  1 byte   0 IPv4, 1 IPv6
    addr       4 or 16 bytes
    port       2 bytes
    err_code   4 bytes  (error messages; 0 otherwise)

``encode`` always writes ``err_code`` (as BEP 55 lays the message out);
``decode`` also takes messages without it but for errors (libtorrent leaves it
out of the others), ignores bytes past it, and raises ``HolepunchError`` for
anything else malformed: unknown type or address type, short, port 0.

``Relay.rendezvous`` decides what a relay sends (rate limited per asking peer:
each rendezvous costs two messages); ``Punches`` bounds what we start: one
rendezvous per target per ``RETRY_AFTER``, at most ``MAX_PENDING`` waiting,
and ``connect``s acted on at most ``CONNECT_RATE`` a second.

Pure: no I/O; ``now`` is passed in.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import OrderedDict
from dataclasses import dataclass

from torrentfs.core.address import Addr
from torrentfs.core.ratelimit import TokenBucket

__all__ = ["UT_HOLEPUNCH", "RENDEZVOUS", "CONNECT", "ERROR", "NO_SUCH_PEER",
           "NOT_CONNECTED", "NO_SUPPORT", "NO_SELF", "ERRORS", "HolepunchError",
           "Message", "encode", "decode", "Relay", "Punches"]

UT_HOLEPUNCH = "ut_holepunch"
RENDEZVOUS, CONNECT, ERROR = 0, 1, 2
NO_SUCH_PEER, NOT_CONNECTED, NO_SUPPORT, NO_SELF = 1, 2, 3, 4
ERRORS = {NO_SUCH_PEER: "no such peer", NOT_CONNECTED: "not connected",
          NO_SUPPORT: "no support", NO_SELF: "no self"}

RENDEZVOUS_RATE, RENDEZVOUS_BURST = 1.0, 5.0   # per asking peer, as a relay
CONNECT_RATE, CONNECT_BURST = 2.0, 8.0         # connects we act on, all relays together
RETRY_AFTER = 60.0                             # one rendezvous per target this often
MAX_PENDING = 64                               # targets remembered (oldest forgotten)
MAX_RELAYS = 1024                              # asking peers whose rate is tracked


class HolepunchError(Exception):
    """A malformed ut_holepunch message."""


@dataclass(frozen=True)
class Message:
    type: int              # RENDEZVOUS, CONNECT or ERROR
    addr: Addr
    error: int = 0


def encode(m: Message) -> bytes:
    ip = ipaddress.ip_address(m.addr[0])
    return (bytes([m.type, 0 if ip.version == 4 else 1]) + ip.packed
            + struct.pack(">HI", m.addr[1], m.error))


def decode(payload: bytes) -> Message:
    if len(payload) < 2:
        raise HolepunchError(f"ut_holepunch message of {len(payload)} bytes")
    kind, addr_type = payload[0], payload[1]
    if kind not in (RENDEZVOUS, CONNECT, ERROR):
        raise HolepunchError(f"unknown ut_holepunch message type {kind}")
    if addr_type not in (0, 1):
        raise HolepunchError(f"unknown address type {addr_type}")
    size = 4 if addr_type == 0 else 16
    end = 2 + size + 2
    if len(payload) < end + (4 if kind == ERROR else 0):
        raise HolepunchError(f"short ut_holepunch message ({len(payload)} bytes)")
    raw = payload[2:2 + size]
    ip = ipaddress.IPv4Address(raw) if size == 4 else ipaddress.IPv6Address(raw)
    port = struct.unpack_from(">H", payload, 2 + size)[0]
    if port == 0:
        raise HolepunchError("port 0")
    error = struct.unpack_from(">I", payload, end)[0] if len(payload) >= end + 4 else 0
    if kind != ERROR:
        error = 0
    host = str(ip.ipv4_mapped) if size == 16 and ip.ipv4_mapped else str(ip)
    return Message(kind, (host, port), error)


class Relay:
    """What we answer, as a relay, to peers' rendezvous messages."""

    def __init__(self) -> None:
        self._limits: OrderedDict[Addr, TokenBucket] = OrderedDict()
        self.refused = 0   # rendezvous over the rate limit, dropped

    def rendezvous(self, sender: Addr, target: Addr, peers: dict[Addr, bool],
                   own: Addr | None, now: float) -> list[tuple[Addr, Message]]:
        """The messages to send (each to the peer at its address) on ``sender``'s
        rendezvous for ``target``: ``peers`` maps the endpoint of each peer we are
        connected to (``sender`` among them) to whether it speaks ut_holepunch;
        ``own`` is our own endpoint. None at all if ``sender`` asks too often."""
        bucket = self._limits.pop(sender, None)
        if bucket is None:
            bucket = TokenBucket(RENDEZVOUS_RATE, RENDEZVOUS_BURST)
            while len(self._limits) >= MAX_RELAYS:
                self._limits.popitem(last=False)
        self._limits[sender] = bucket
        if bucket.available(now) < 1:
            self.refused += 1
            return []
        bucket.take(1, now)
        if target == own:
            return [(sender, Message(ERROR, target, NO_SELF))]
        if target == sender:
            return [(sender, Message(ERROR, target, NO_SUCH_PEER))]
        if target not in peers:
            return [(sender, Message(ERROR, target, NOT_CONNECTED))]
        if not peers[target]:
            return [(sender, Message(ERROR, target, NO_SUPPORT))]
        return [(target, Message(CONNECT, sender)), (sender, Message(CONNECT, target))]


class Punches:
    """The holepunches we start (rendezvous sent) and take part in (connect
    received), bounded (see the module docstring)."""

    def __init__(self) -> None:
        self._asked: OrderedDict[Addr, float] = OrderedDict()   # target -> when
        self._connects = TokenBucket(CONNECT_RATE, CONNECT_BURST)

    def should_ask(self, target: Addr, now: float) -> bool:
        """Whether to send a rendezvous for ``target`` now (and remember it)."""
        when = self._asked.get(target)
        if when is not None and now - when < RETRY_AFTER:
            return False
        self._asked.pop(target, None)
        while len(self._asked) >= MAX_PENDING:
            self._asked.popitem(last=False)
        self._asked[target] = now
        return True

    def should_connect(self, now: float) -> bool:
        """Whether to act on a connect message now (a relay may send many)."""
        if self._connects.available(now) < 1:
            return False
        self._connects.take(1, now)
        return True
