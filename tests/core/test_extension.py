"""BEP 10: the bounded bencode reader and the extension handshake, with hostile
input (no sockets)."""

from __future__ import annotations

import bencodepy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentfs.core.extension import (
    OUR_IDS,
    ExtensionError,
    bdecode,
    bdecode_prefix,
    encode_handshake,
    parse_handshake,
)


def test_prefix_stops_where_the_value_ends():
    assert bdecode_prefix(b"d1:ai1ee" + b"RAW\x00") == ({b"a": 1}, 8)
    assert bdecode_prefix(b"li-3e0:e") == ([-3, b""], 8)


@pytest.mark.parametrize("data", [
    b"", b"i", b"ie", b"i-0e", b"i03e", b"i1", b"-1:a", b"01:a", b"5:abc", b"l", b"d",
    b"d1:a", b"di1ei2ee", b"x", b"i1.5e", b"l" * 40 + b"e" * 40, b"9999999999999999999999:",
])
def test_malformed_bencode(data):
    with pytest.raises(ExtensionError):
        bdecode(data)


def test_trailing_bytes_are_an_error_for_a_whole_value():
    with pytest.raises(ExtensionError, match="after the value"):
        bdecode(b"i1ee")


values = st.recursive(
    st.integers(-2**63, 2**63) | st.binary(max_size=20),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.binary(max_size=5), kids,
                                                              max_size=4),
    max_leaves=20)


@settings(deadline=None)  # no wall-clock deadline: the machine is shared
@given(values)
def test_agrees_with_bencodepy(value):
    data = bencodepy.encode(value)
    assert bdecode(data) == value


@settings(deadline=None)  # no wall-clock deadline: the machine is shared
@given(st.binary(max_size=200))
def test_any_bytes_decode_or_raise_extension_error(data):
    try:
        bdecode_prefix(data)
    except ExtensionError:
        pass


def test_handshake_round_trip():
    payload = encode_handshake(OUR_IDS, metadata_size=12345, port=6881, client="tfs 0.1",
                               reqq=250)
    hs = parse_handshake(payload)
    assert hs.ids == OUR_IDS and hs.metadata_size == 12345 and hs.listen_port == 6881
    assert hs.client == "tfs 0.1" and hs.reqq == 250 and hs.supports("ut_pex")


def test_handshake_tolerates_ill_typed_fields():
    payload = bencodepy.encode({b"m": {b"ut_pex": 0, b"ut_metadata": 300, b"lt_x": b"3",
                                       b"\xff": 4, b"ok": 7},
                                b"p": 70000, b"metadata_size": b"big", b"v": 5, b"reqq": -1})
    hs = parse_handshake(payload)
    assert hs.ids == {"ok": 7}  # 0 means disabled; out of range and ill-typed ignored
    assert hs.metadata_size is None and hs.listen_port is None
    assert hs.client is None and hs.reqq is None
    assert parse_handshake(b"d1:mi5ee").ids == {}


@pytest.mark.parametrize("payload", [b"", b"le", b"i1e", b"d1:m", b"not bencode"])
def test_handshake_that_is_not_a_dictionary(payload):
    with pytest.raises(ExtensionError):
        parse_handshake(payload)


def test_handshake_addresses_bep7():
    from torrentfs.core.extension import bdecode, encode_handshake, parse_handshake
    raw = encode_handshake({"ut_pex": 1}, yourip="10.0.0.7", ipv6="2001:db8::5")
    d = bdecode(raw)
    assert d[b"yourip"] == bytes([10, 0, 0, 7]) and len(d[b"ipv6"]) == 16
    hs = parse_handshake(raw)
    assert hs.yourip == "10.0.0.7" and hs.ipv6 == "2001:db8::5" and hs.ipv4 is None
    # not an address, or IPv4 given as ipv6: left out; wrong lengths read as None
    d = bdecode(encode_handshake({}, yourip="host.example", ipv6="10.0.0.1"))
    assert b"yourip" not in d and b"ipv6" not in d
    from torrentfs.core.extension import bencode
    hs = parse_handshake(bencode({b"m": {}, b"ipv6": b"short", b"ipv4": 5, b"yourip": b"123"}))
    assert hs.ipv6 is None and hs.ipv4 is None and hs.yourip is None
