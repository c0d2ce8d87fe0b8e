"""Tests for torrentfs.core.handshake: the 68 handshake bytes and who reads them
(the connection's own handshake is tested through it in test_wire.py)."""

from __future__ import annotations

import pytest

from torrentfs.core import handshake, wire
from torrentfs.core.handshake import INFO_HASH_END, info_hash_of
from torrentfs.core.messages import RemoteProtocolError


def test_info_hash_of():
    h = bytes(range(20))
    hs = wire.PeerConnection(h, b"-XX0000-" + b"1" * 12, num_pieces=1).handshake()
    assert info_hash_of(hs[:INFO_HASH_END]) == h
    assert info_hash_of(hs) == h
    assert info_hash_of(hs[:INFO_HASH_END - 1]) is None
    assert info_hash_of(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"x" * 40) is None
    assert info_hash_of(b"\x13BitTorrent protocoX" + bytes(28)) is None


def test_encode_decode_round_trip():
    hs = handshake.Handshake(bytes(range(20)), b"-XX0000-" + b"1" * 12,
                             handshake.make_reserved(fast=False, dht=True))
    data = handshake.encode(hs)
    assert len(data) == handshake.HANDSHAKE_LENGTH == 68
    assert handshake.decode(data) == hs
    assert info_hash_of(data) == hs.info_hash


@pytest.mark.parametrize("cut", [0, 1, 5, 20, 27, 28, 47, 48, 68])
def test_check_accepts_every_prefix_of_a_good_handshake(cut):
    hs = handshake.Handshake(bytes(range(20)), b"p" * 20)
    handshake.check(handshake.encode(hs)[:cut], hs.info_hash)


def test_check_refuses_as_soon_as_the_bytes_show_it():
    good = handshake.encode(handshake.Handshake(bytes(range(20)), b"p" * 20))
    with pytest.raises(RemoteProtocolError, match="pstrlen 20"):
        handshake.check(b"\x14", bytes(range(20)))
    with pytest.raises(RemoteProtocolError, match="protocol string"):
        handshake.check(good[:3] + b"X", bytes(range(20)))
    with pytest.raises(RemoteProtocolError, match="info_hash is not ours"):
        handshake.check(good[:INFO_HASH_END], bytes(20))
    handshake.check(good[:INFO_HASH_END - 1], bytes(20))  # not all of it in yet
