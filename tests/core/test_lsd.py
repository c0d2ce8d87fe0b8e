"""Tests for torrentfs.lsd: BT-SEARCH announcements built and parsed (BEP 14), our own
echo ignored by cookie, the announce schedule and the per-source limit; hostile
datagrams give LsdError and nothing else. No sockets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentfs.core.lsd import (
    MAX_DATAGRAM,
    PER_SOURCE,
    SOURCE_WINDOW,
    Announcement,
    LocalDiscovery,
    LsdError,
    build_announce,
    parse_announce,
)

IH = bytes.fromhex("0123456789abcdef0123456789abcdef01234567")
OTHER = bytes(20)


def test_build_is_the_bep14_text():
    data = build_announce([IH], 6881, "c00kie")
    assert data == (b"BT-SEARCH * HTTP/1.1\r\nHost: 239.192.152.143:6771\r\nPort: 6881\r\n"
                    b"Infohash: 0123456789abcdef0123456789abcdef01234567\r\n"
                    b"cookie: c00kie\r\n\r\n\r\n")
    assert b"Host: [ff15::efc0:988f]:6771\r\n" in build_announce([IH], 1, ipv6=True)
    with pytest.raises(ValueError):
        build_announce([IH], 0)
    with pytest.raises(ValueError):
        build_announce([IH] * 40, 1)  # over 1400 bytes
    with pytest.raises(ValueError):
        build_announce([b"short"], 1)


def test_parse_roundtrip_and_libtorrent_style():
    assert parse_announce(build_announce([IH, OTHER], 51413, "abc")) == Announcement(
        51413, (IH, OTHER), "abc")
    # libtorrent's own text: lower-case hex, a cookie in hex, bare \n tolerated too.
    lt = (b"BT-SEARCH * HTTP/1.1\nHost: 239.192.152.143:6771\nPort: 6881\n"
          b"Infohash: " + IH.hex().upper().encode() + b"\ncookie: 5e1a\n\n\n")
    assert parse_announce(lt) == Announcement(6881, (IH,), "5e1a")


@pytest.mark.parametrize("data, why", [
    (b"", "BT-SEARCH"),
    (b"GET / HTTP/1.1\r\nPort: 1\r\nInfohash: " + IH.hex().encode() + b"\r\n\r\n", "BT-SEARCH"),
    (b"BT-SEARCH * HTTP/1.1\r\nInfohash: " + IH.hex().encode() + b"\r\n\r\n", "Port"),
    (b"BT-SEARCH * HTTP/1.1\r\nPort: 0\r\nInfohash: " + IH.hex().encode() + b"\r\n", "port"),
    (b"BT-SEARCH * HTTP/1.1\r\nPort: 65536\r\nInfohash: " + IH.hex().encode(), "port"),
    (b"BT-SEARCH * HTTP/1.1\r\nPort: -1\r\nInfohash: " + IH.hex().encode(), "port"),
    (b"BT-SEARCH * HTTP/1.1\r\nPort: " + b"9" * 1300 + b"\r\n", "port"),
    (b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: abc\r\n", "Infohash"),
    (b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nInfohash: " + b"zz" * 20 + b"\r\n", "Infohash"),
    (b"BT-SEARCH * HTTP/1.1\r\nPort: 1\r\nno colon here\r\n", "':'"),
    (b"BT-SEARCH * HTTP/1.1\r\nPort: \xff\r\n", "ASCII"),
    (b"BT-SEARCH * HTTP/1.1\r\n" + b"X: y\r\n" * 50, "lines"),
    (b"BT-SEARCH * HTTP/1.1\r\n" + b"x" * MAX_DATAGRAM, "bytes"),
])
def test_malformed(data, why):
    with pytest.raises(LsdError, match=why):
        parse_announce(data)


@settings(max_examples=500)
@given(st.binary(max_size=1600))
def test_any_bytes_parse_or_raise_lsd_error(data):
    try:
        parse_announce(data)
    except LsdError:
        pass


@settings(max_examples=300)
@given(st.lists(st.sampled_from(["Port: 6881", "Port: x", "Infohash: " + IH.hex(),
                                 "Infohash: " + "g" * 40, "cookie: a", "Host: h", "",
                                 ":", "Port:", "Infohash:" + " " * 3]), max_size=12))
def test_any_header_mix_parses_or_raises(lines):
    data = "\r\n".join(["BT-SEARCH * HTTP/1.1", *lines, "", ""]).encode()
    try:
        ann = parse_announce(data)
    except LsdError:
        return
    assert 0 < ann.port < 65536 and ann.info_hashes == (IH,)


def test_schedule_announces_at_start_then_every_interval():
    d = LocalDiscovery(IH, "me", interval=300)
    assert d.announce_due(0.0) and d.next_announce(5.0) == 5.0
    d.announced(0.0)
    assert not d.announce_due(299.9)
    assert d.next_announce(10.0) == 300.0
    assert d.announce_due(300.0)


def test_heard_gives_the_source_with_the_announced_port():
    d = LocalDiscovery(IH, "me")
    assert d.heard(build_announce([OTHER, IH], 7000, "them"), "10.0.0.2", 0.0) == (
        "10.0.0.2", 7000)


def test_our_own_echo_and_other_torrents_are_ignored():
    d = LocalDiscovery(IH, "me")
    assert d.heard(build_announce([IH], 7000, "me"), "10.0.0.1", 0.0) is None
    assert d.heard(build_announce([OTHER], 7000, "them"), "10.0.0.2", 0.0) is None
    # No cookie at all: not ours.
    assert d.heard(build_announce([IH], 7000), "10.0.0.3", 0.0) == ("10.0.0.3", 7000)


def test_per_source_limit():
    d = LocalDiscovery(IH, "me")
    got = [d.heard(build_announce([IH], 1000 + i, "x"), "10.0.0.9", float(i))
           for i in range(PER_SOURCE + 3)]
    assert got == [("10.0.0.9", 1000 + i) for i in range(PER_SOURCE)] + [None] * 3
    # The same peer again is not news; another source is unaffected.
    assert d.heard(build_announce([IH], 1000, "x"), "10.0.0.9", 10.0) is None
    assert d.heard(build_announce([IH], 1000, "x"), "10.0.0.8", 10.0) == ("10.0.0.8", 1000)
    # After the window the source may be heard again.
    assert d.heard(build_announce([IH], 1000, "x"), "10.0.0.9",
                   SOURCE_WINDOW + 1) == ("10.0.0.9", 1000)


def test_sources_remembered_are_bounded():
    d = LocalDiscovery(IH, "me")
    for i in range(2000):
        d.heard(build_announce([IH], 1, "x"), f"10.{i // 256}.{i % 256}.1", 0.0)
    assert len(d._sources) <= 256


def test_a_hybrid_announces_and_hears_both_swarms():
    v2 = bytes(range(20))
    d = LocalDiscovery(IH, "me", also=(v2,))
    assert parse_announce(d.announcement(7000)).info_hashes == (IH, v2)
    assert d.heard(build_announce([v2], 7001, "them"), "10.0.0.2", 0.0) == ("10.0.0.2", 7001)
    assert d.heard(build_announce([IH], 7002, "them"), "10.0.0.3", 0.0) == ("10.0.0.3", 7002)
    assert d.heard(build_announce([OTHER], 7003, "them"), "10.0.0.4", 0.0) is None
