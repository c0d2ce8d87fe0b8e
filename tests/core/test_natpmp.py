"""core/natpmp.py: NAT-PMP requests and answers (RFC 6886), the default gateway."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentfs.core import natpmp


def test_requests():
    assert natpmp.external_address_request() == b"\0\0"
    assert natpmp.map_request(natpmp.TCP, 6881, 6881, 7200) == \
        bytes([0, 2, 0, 0]) + struct.pack(">HHI", 6881, 6881, 7200)
    assert natpmp.map_request(natpmp.UDP, 1, 0, 0)[1] == 1
    with pytest.raises(ValueError):
        natpmp.map_request(3, 1, 1, 1)


def test_answers():
    ext = natpmp.parse_response(struct.pack(">BBHI", 0, 128, 0, 99) + bytes([5, 6, 7, 8]))
    assert ext == natpmp.ExternalAddress("5.6.7.8", 99)
    m = natpmp.parse_response(struct.pack(">BBHIHHI", 0, 130, 0, 5, 6881, 16881, 3600))
    assert m == natpmp.Mapping(natpmp.TCP, 6881, 16881, 3600, 5)
    with pytest.raises(natpmp.NatPmpError, match="refused"):
        natpmp.parse_response(struct.pack(">BBHIHHI", 0, 130, 2, 5, 1, 1, 1))
    for bad in (b"", b"\0\x80\0\0\0\0\0\0", struct.pack(">BBHI", 1, 128, 0, 0) + bytes(4),
                struct.pack(">BBHI", 0, 1, 0, 0) + bytes(4),
                struct.pack(">BBHI", 0, 129, 0, 0) + bytes(4)):
        with pytest.raises(natpmp.NatPmpError):
            natpmp.parse_response(bad)


@given(st.binary(max_size=40))
def test_any_bytes_parse_or_fail_cleanly(data):
    try:
        natpmp.parse_response(data)
    except natpmp.NatPmpError:
        pass


def test_default_gateway():
    text = ("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"
            "eth0\t0002A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"
            "eth0\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\n")
    assert natpmp.default_gateway(text) == "192.168.2.1"
    assert natpmp.default_gateway(text.splitlines()[0]) is None
    assert natpmp.default_gateway("h\nbad line\n") is None
