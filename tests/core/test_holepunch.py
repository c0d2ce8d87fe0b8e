"""core/holepunch.py (BEP 55): the ut_holepunch message's exact bytes, hostile
payloads (hypothesis: a message or HolepunchError, nothing else), the relay's
answers and its rate limit, and the bounds on the punches we start."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentfs.core import holepunch as hp
from torrentfs.core.holepunch import CONNECT, ERROR, RENDEZVOUS, Message


def test_exact_bytes_and_round_trips():
    assert hp.encode(Message(RENDEZVOUS, ("1.2.3.4", 6881))) == \
        bytes([0, 0, 1, 2, 3, 4]) + struct.pack(">HI", 6881, 0)
    assert hp.encode(Message(ERROR, ("::1", 1), hp.NOT_CONNECTED)) == \
        bytes([2, 1]) + bytes(15) + b"\x01" + struct.pack(">HI", 1, 2)
    for m in (Message(CONNECT, ("10.0.0.1", 65535)), Message(RENDEZVOUS, ("2001:db8::5", 9)),
              Message(ERROR, ("5.6.7.8", 80), hp.NO_SELF)):
        assert hp.decode(hp.encode(m)) == m


def test_decode_takes_libtorrents_shorter_form_and_ignores_extra_bytes():
    # libtorrent writes err_code only in error messages
    assert hp.decode(bytes([1, 0, 9, 9, 9, 9, 0, 80])) == Message(CONNECT, ("9.9.9.9", 80))
    assert hp.decode(bytes([0, 0, 9, 9, 9, 9, 0, 80]) + bytes(4) + b"junk") == \
        Message(RENDEZVOUS, ("9.9.9.9", 80))
    # an err_code in a non-error message means nothing
    assert hp.decode(bytes([1, 0, 9, 9, 9, 9, 0, 80, 0, 0, 0, 7])).error == 0
    # an IPv4-mapped IPv6 address is the IPv4 one
    assert hp.decode(bytes([1, 1]) + bytes(10) + b"\xff\xff" + bytes([1, 2, 3, 4])
                     + b"\x00\x50").addr == ("1.2.3.4", 80)


@pytest.mark.parametrize("payload, why", [
    (b"", "0 bytes"), (b"\x00", "1 bytes"),
    (bytes([3, 0, 1, 2, 3, 4, 0, 1]), "type 3"),
    (bytes([0, 2, 1, 2, 3, 4, 0, 1]), "address type 2"),
    (bytes([0, 0, 1, 2, 3, 4, 0]), "short"),
    (bytes([0, 1]) + bytes(16), "short"),
    (bytes([2, 0, 1, 2, 3, 4, 0, 1, 0, 0, 0]), "short"),   # error without its code
    (bytes([1, 0, 1, 2, 3, 4, 0, 0]), "port 0"),
])
def test_malformed(payload, why):
    with pytest.raises(hp.HolepunchError, match=why):
        hp.decode(payload)


@given(st.binary(max_size=40))
def test_any_bytes_give_a_message_or_holepunch_error(payload):
    try:
        m = hp.decode(payload)
    except hp.HolepunchError:
        return
    assert m.type in (RENDEZVOUS, CONNECT, ERROR) and 0 < m.addr[1] < 65536
    assert hp.decode(hp.encode(m)) == m


A, B, C, ME = ("10.0.0.1", 1000), ("10.0.0.2", 2000), ("10.0.0.3", 3000), ("10.0.0.9", 9)


def test_relay_answers():
    r = hp.Relay()
    peers = {A: True, B: True, C: False}
    assert r.rendezvous(A, B, peers, ME, 0.0) == [(B, Message(CONNECT, A)),
                                                  (A, Message(CONNECT, B))]
    assert r.rendezvous(A, C, peers, ME, 0.0) == [(A, Message(ERROR, C, hp.NO_SUPPORT))]
    assert r.rendezvous(A, ("10.0.0.4", 4), peers, ME, 0.0) == \
        [(A, Message(ERROR, ("10.0.0.4", 4), hp.NOT_CONNECTED))]
    assert r.rendezvous(A, ME, peers, ME, 0.0) == [(A, Message(ERROR, ME, hp.NO_SELF))]
    assert r.rendezvous(B, B, peers, ME, 0.0) == [(B, Message(ERROR, B, hp.NO_SUCH_PEER))]


def test_relay_rate_limits_each_asking_peer():
    r = hp.Relay()
    peers = {A: True, B: True}
    sent = [r.rendezvous(A, B, peers, ME, 0.0) for _ in range(100)]
    assert sum(1 for s in sent if s) == hp.RENDEZVOUS_BURST and r.refused == 95
    assert r.rendezvous(B, A, peers, ME, 0.0)            # another peer is not held back
    assert r.rendezvous(A, B, peers, ME, 10.0)           # and A gets more later


def test_punches_are_bounded():
    p = hp.Punches()
    assert p.should_ask(A, 0.0) and not p.should_ask(A, 1.0)
    assert p.should_ask(A, hp.RETRY_AFTER + 1)
    for i in range(1000):
        p.should_ask((f"10.1.{i // 250}.{i % 250}", 1), 2.0)
    assert len(p._asked) == hp.MAX_PENDING
    got = [p.should_connect(5.0) for _ in range(50)]
    assert sum(got) == hp.CONNECT_BURST
    assert p.should_connect(10.0)
