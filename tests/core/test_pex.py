"""BEP 11 peer exchange messages and our per-peer PEX state (pure, hostile input)."""

from __future__ import annotations

import bencodepy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentfs.core import pex
from torrentfs.core.pex import PexError, PexMessage, PexPeer


def test_round_trip_ipv4_and_ipv6_with_flags():
    added = [(("10.0.0.1", 6881), pex.FLAG_SEED), (("2001:db8::7", 51413), pex.FLAG_REACHABLE)]
    dropped = [("192.168.1.2", 80), ("::1", 9)]
    m = pex.decode(pex.encode(added, dropped))
    assert m == PexMessage(tuple(added), tuple(dropped))


def test_compact_layout():
    raw = bencodepy.decode(pex.encode([(("1.2.3.4", 258), 0x12)]))
    assert raw[b"added"] == bytes([1, 2, 3, 4, 1, 2]) and raw[b"added.f"] == b"\x12"
    assert raw[b"added6"] == b"" and raw[b"dropped"] == b""


def test_host_names_and_bad_ports_are_not_sent():
    assert pex.decode(pex.encode([(("example.com", 1), 0), (("1.2.3.4", 0), 0)])) == PexMessage()


def test_ipv6_link_local_addresses_are_neither_sent_nor_taken():
    # Without its zone (which the compact form cannot carry) TCP cannot reach one.
    added = [(("fe80::1", 6881), pex.FLAG_UTP), (("fe80::2%eth0", 6881), 0),
             (("169.254.1.1", 6881), 0), (("2001:db8::7", 6881), 0)]
    assert pex.decode(pex.encode(added)) == PexMessage(
        ((("169.254.1.1", 6881), 0), (("2001:db8::7", 6881), 0)))
    raw = bytes.fromhex("fe80" + "00" * 13 + "01") + b"\x1a\xe1"
    assert pex.decode(bencodepy.encode({b"added6": raw, b"added6.f": b"\x04"})) == PexMessage()


def test_hostile_entries_are_skipped_and_bounded():
    blob = b"".join(bytes([10, 0, i >> 8 & 255, i & 255]) + b"\x1a\xe1" for i in range(300))
    blob += bytes([0, 0, 0, 0, 0, 1]) + bytes([224, 0, 0, 1, 0, 1]) + bytes([1, 1, 1, 1, 0, 0])
    m = pex.decode(bencodepy.encode({b"added": blob, b"added.f": b"\x02"}))
    assert len(m.added) == pex.MAX_ACCEPT
    assert m.added[0] == (("10.0.0.0", 6881), 2) and m.added[1][1] == 0  # short flags: 0
    tail = pex.decode(bencodepy.encode({b"added": blob[-18:]}))
    assert tail.added == ()  # unspecified, multicast, port 0


@pytest.mark.parametrize("payload, needle", [
    (b"junk", "bad bencode"),
    (b"le", "not a dictionary"),
    (bencodepy.encode({b"added": b"12345"}), "not a multiple of 6"),
    (bencodepy.encode({b"added6": b"1" * 17}), "not a multiple of 18"),
    (bencodepy.encode({b"dropped": 5}), "not a byte string"),
])
def test_malformed(payload, needle):
    with pytest.raises(PexError, match=needle):
        pex.decode(payload)


@settings(deadline=None)  # no wall-clock deadline: the machine is shared
@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_pex_error(data):
    try:
        m = pex.decode(data)
    except PexError:
        return
    assert len(m.added) <= 2 * pex.MAX_ACCEPT


def test_peer_state_sends_diffs_at_most_once_a_minute():
    p = PexPeer()
    a, b, c = ("1.1.1.1", 1), ("2.2.2.2", 2), ("3.3.3.3", 3)
    first = p.update({a: 0, b: pex.FLAG_SEED}, now=100.0)
    assert pex.decode(first).added == ((a, 0), (b, pex.FLAG_SEED))
    assert p.update({a: 0, c: 0}, now=120.0) is None           # too soon
    diff = pex.decode(p.update({a: 0, c: 0}, now=160.0))
    assert diff.added == ((c, 0),) and diff.dropped == (b,)
    assert p.update({a: 0, c: 0}, now=300.0) is None           # nothing changed


def test_peer_state_bounds_each_message():
    p = PexPeer()
    many = {(f"10.0.{i // 256}.{i % 256}", 1000): 0 for i in range(120)}
    sent = []
    now = 0.0
    while (msg := p.update(many, now)) is not None:
        sent.append(pex.decode(msg))
        now += pex.INTERVAL
    assert [len(m.added) for m in sent] == [50, 50, 20]
    msg = pex.decode(p.update({}, now))
    assert len(msg.dropped) == pex.MAX_DROPPED


def test_receiving_is_rate_limited():
    p = PexPeer()
    assert p.accept(0.0)
    assert not p.accept(5.0)
    assert p.accept(11.0)
