"""Tests for torrentfs.core.address: the compact and shown forms of an address, and
the zone of a link-local one."""

from __future__ import annotations

import pytest

from torrentfs.core.address import (
    is_ipv6,
    pack_addr,
    show_addr,
    unpack_addr,
    unzoned_link_local,
    zoned,
)


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


def test_a_link_local_address_keeps_the_zone_it_was_heard_on():
    assert zoned("fe80::1", 3) == "fe80::1%3"
    assert zoned("fe80::1", 0) == "fe80::1"           # no scope id reported
    assert zoned("fe80::1%eth0", 3) == "fe80::1%eth0"  # already zoned
    assert zoned("10.0.0.1", 0) == "10.0.0.1"
    # The compact form has no room for the zone: it is left out.
    assert pack_addr(("fe80::1%3", 6881)) == pack_addr(("fe80::1", 6881))


def test_only_a_link_local_address_without_zone_names_no_link():
    assert unzoned_link_local("fe80::1")
    assert not unzoned_link_local("fe80::1%3")
    assert not unzoned_link_local("2001:db8::1")
    assert not unzoned_link_local("169.254.1.1")   # IPv4 link-local needs no zone
    assert not unzoned_link_local("not an address")
