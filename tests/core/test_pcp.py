"""core/pcp.py: PCP MAP requests and answers (RFC 6887): exact bytes, the nonce
tying an answer to its request, the NAT-PMP fallback signal, hostile answers."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentfs.core import pcp

NONCE = bytes(range(1, 13))
MAPPED = bytes(10) + b"\xff\xff"


def answer(result=0, lifetime=7200, nonce=NONCE, protocol=pcp.TCP, internal=6881,
           external=16881, address=MAPPED + bytes([5, 6, 7, 8]), op=129, version=2,
           extra=b""):
    return (struct.pack(">BBBBII12s", version, op, 0, result, lifetime, 77, bytes(12))
            + nonce + bytes([protocol, 0, 0, 0]) + struct.pack(">HH", internal, external)
            + address + extra)


def test_map_request_bytes():
    r = pcp.map_request(NONCE, pcp.TCP, 6881, "10.240.1.2", 7200)
    assert len(r) == 60
    assert r[:8] == bytes([2, 1, 0, 0]) + struct.pack(">I", 7200)
    assert r[8:24] == MAPPED + bytes([10, 240, 1, 2])
    assert r[24:36] == NONCE
    assert r[36:40] == bytes([6, 0, 0, 0])
    assert r[40:44] == struct.pack(">HH", 6881, 0)
    assert r[44:60] == MAPPED + bytes(4)          # no external address suggested
    d = pcp.map_request(NONCE, pcp.UDP, 1, "2001:db8::2", 0, 5)
    assert d[8:24] == bytes.fromhex("20010db8000000000000000000000002")
    assert d[36] == 17 and d[4:8] == bytes(4) and d[44:60] == bytes(16)


@pytest.mark.parametrize("args", [
    (b"short", pcp.TCP, 1, "1.2.3.4", 1), (NONCE, 3, 1, "1.2.3.4", 1),
    (NONCE, pcp.TCP, 0, "1.2.3.4", 1), (NONCE, pcp.TCP, 70000, "1.2.3.4", 1),
    (NONCE, pcp.TCP, 1, "1.2.3.4", -1), (NONCE, pcp.TCP, 1, "nohost", 1)])
def test_bad_requests_raise_value_error(args):
    with pytest.raises(ValueError):
        pcp.map_request(*args)


def test_answers():
    assert pcp.parse_response(answer(), NONCE) == pcp.MapAnswer(
        pcp.TCP, 6881, 16881, "5.6.7.8", 7200, 77)
    six = answer(protocol=pcp.UDP, address=bytes.fromhex("20010db8000000000000000000000009"))
    assert pcp.parse_response(six, NONCE).external_address == "2001:db8::9"
    # options after the payload are skipped
    assert pcp.parse_response(answer(extra=bytes(8)), NONCE).external_port == 16881


def test_refusals_and_other_requests():
    with pytest.raises(pcp.PcpError, match="not authorized"):
        pcp.parse_response(answer(result=2), NONCE)
    with pytest.raises(pcp.PcpError, match="result 99"):
        pcp.parse_response(answer(result=99), NONCE)
    with pytest.raises(pcp.PcpOther, match="nonce"):
        pcp.parse_response(answer(), bytes(12))
    with pytest.raises(pcp.PcpOther, match="opcode"):
        pcp.parse_response(answer(op=1), NONCE)          # a request, not an answer
    with pytest.raises(pcp.PcpError, match="protocol"):
        pcp.parse_response(answer(protocol=1), NONCE)


def test_a_natpmp_gateway_says_unsupported():
    # What a NAT-PMP-only gateway answers (RFC 6886 §3.5: version 0, result 1) ...
    with pytest.raises(pcp.PcpUnsupported):
        pcp.parse_response(struct.pack(">BBHI", 0, 128 + 1, 1, 5), NONCE)
    # ... and PCP's own "unsupported version", from a gateway of a later version
    with pytest.raises(pcp.PcpUnsupported):
        pcp.parse_response(answer(result=1), NONCE)
    with pytest.raises(pcp.PcpUnsupported):
        pcp.parse_response(answer(version=3), NONCE)


@pytest.mark.parametrize("data", [b"", b"\2", answer()[:59], answer() + b"\0",
                                  answer() + bytes(1044)])
def test_bad_lengths(data):
    with pytest.raises(pcp.PcpError):
        pcp.parse_response(data, NONCE)


@given(st.binary(max_size=120))
def test_any_bytes_parse_or_fail_cleanly(data):
    try:
        pcp.parse_response(data, NONCE)
    except pcp.PcpError:
        pass


@given(st.binary(min_size=60, max_size=60))
def test_any_answer_shaped_bytes_parse_or_fail_cleanly(data):
    try:
        a = pcp.parse_response(bytes([2, 129]) + data[2:24] + NONCE + data[36:], NONCE)
    except pcp.PcpError:
        return
    assert 0 <= a.external_port < 65536 and a.protocol in (pcp.TCP, pcp.UDP)
