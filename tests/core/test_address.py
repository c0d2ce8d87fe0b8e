"""Tests for torrentfs.core.address: the compact and shown forms of an address."""

from __future__ import annotations

import pytest

from torrentfs.core.address import is_ipv6, pack_addr, show_addr, unpack_addr


@pytest.mark.parametrize("addr, raw", [
    (("10.0.0.1", 6881), bytes([10, 0, 0, 1, 0x1A, 0xE1])),
    (("::1", 1), bytes(15) + b"\x01\x00\x01"),
])
def test_compact_round_trip(addr, raw):
    assert pack_addr(addr) == raw
    assert unpack_addr(raw) == addr


def test_pack_refuses_what_is_not_an_ip_literal():
    with pytest.raises(ValueError):
        pack_addr(("example.org", 80))


def test_show_brackets_ipv6_only():
    assert show_addr(("10.0.0.1", 80)) == "10.0.0.1:80"
    assert show_addr(("::1", 80)) == "[::1]:80"
    assert is_ipv6(("::1", 80)) and not is_ipv6(("10.0.0.1", 80))
