"""Magnet links: parsing (exact fields, every malformed shape a clear MagnetError,
any string at all gives one or the other), making, and the torrent a magnet's
fetched metadata becomes."""

from __future__ import annotations

import base64
import hashlib
import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentfs.core import magnet
from torrentfs.core.magnet import Magnet, MagnetError
from torrentfs.core.metainfo import parse as parse_torrent
from torrentfs.disk.create import create_torrent

H = bytes(range(20))
HEX = H.hex()


def test_full_magnet():
    m = magnet.parse(f"magnet:?xt=urn:btih:{HEX}&dn=My+Film%20(2024)"
                     "&tr=http%3A%2F%2Ft1.example%3A6969%2Fannounce&tr=udp://t2:80"
                     "&tr=http%3A%2F%2Ft1.example%3A6969%2Fannounce"
                     "&x.pe=10.0.0.1:6881&x.pe=[2001:db8::1]:51413&x.pe=host.example:1"
                     "&ws=http://ignored&xl=123")
    assert m == Magnet(H, "My Film (2024)", ("http://t1.example:6969/announce", "udp://t2:80"),
                       (("10.0.0.1", 6881), ("2001:db8::1", 51413), ("host.example", 1)))


def test_base32_and_uppercase_hex_and_case_of_scheme():
    b32 = base64.b32encode(H).decode()
    assert magnet.parse(f"magnet:?xt=urn:btih:{b32}").info_hash == H
    assert magnet.parse(f"magnet:?xt=urn:btih:{b32.lower()}").info_hash == H
    assert magnet.parse(f"MAGNET:?XT=URN:BTIH:{HEX.upper()}").info_hash == H


def test_numbered_trackers_and_repeated_same_hash():
    m = magnet.parse(f"magnet:?xt=urn:btih:{HEX}&tr.1=http://a/&tr.2=http://b/&xt=urn:btih:{HEX}")
    assert m.trackers == ("http://a/", "http://b/")
    assert m.name is None and m.peers == ()


@pytest.mark.parametrize("uri, needle", [
    ("", "not a magnet link"),
    ("http://example.com/x.torrent", "not a magnet link"),
    ("magnet:", "no '?'"),
    ("magnet:xt=urn:btih:" + HEX, "no '?'"),
    ("magnet:?dn=x", "no info-hash"),
    ("magnet:?xt=urn:sha1:" + HEX, "no info-hash"),
    ("magnet:?xt=urn:btmh:1220" + "ab" * 31, "expected 1220 and 64 hex digits"),
    ("magnet:?xt=urn:btmh:1114" + "ab" * 32, "expected 1220 and 64 hex digits"),
    ("magnet:?xt=urn:btmh:1220" + "zz" * 32, "not hex"),
    ("magnet:?xt=urn:btmh:1220" + "ab" * 32 + "&xt=urn:btmh:1220" + "cd" * 32,
     "two different v2 info-hashes"),
    ("magnet:?xt=urn:foo:1220" + "ab" * 32, "no info-hash"),
    ("magnet:?xt=urn:btih:" + HEX[:-1], "got 39"),
    ("magnet:?xt=urn:btih:" + "zz" * 20, "not hex"),
    ("magnet:?xt=urn:btih:" + "1" * 32, "not base32"),
    (f"magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{'00' * 20}", "two different"),
    (f"magnet:?xt=urn:btih:{HEX}&tr=not-a-url", "bad tracker"),
    (f"magnet:?xt=urn:btih:{HEX}&x.pe=1.2.3.4", "bad peer address"),
    (f"magnet:?xt=urn:btih:{HEX}&x.pe=1.2.3.4:0", "port out of range"),
    (f"magnet:?xt=urn:btih:{HEX}&x.pe=1.2.3.4:70000", "port out of range"),
    (f"magnet:?xt=urn:btih:{HEX}&x.pe=[zz::1]:5", "bad IPv6"),
    (f"magnet:?xt=urn:btih:{HEX}&x.pe=bad_host!:5", "bad host name"),
    (f"magnet:?xt=urn:btih:{HEX}&novalue", "no '='"),
    (f"magnet:?xt=urn:btih:{HEX}&dn=%FF%FE", "not UTF-8"),
    ("magnet:?xt=urn:btih:" + HEX + "&x" * 70000, "too long"),
])
def test_malformed(uri, needle):
    with pytest.raises(MagnetError) as e:
        magnet.parse(uri)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_too_many_trackers():
    uri = f"magnet:?xt=urn:btih:{HEX}" + "".join(f"&tr=http://t{i}/" for i in range(501))
    with pytest.raises(MagnetError, match="more than 500 trackers"):
        magnet.parse(uri)


def test_not_a_string():
    with pytest.raises(MagnetError, match="expected text"):
        magnet.parse(b"magnet:?xt=urn:btih:" + HEX.encode())  # type: ignore[arg-type]


@settings(deadline=None)  # no wall-clock deadline: the machine is shared
@given(st.text(max_size=300))
def test_any_text_is_a_magnet_or_a_magnet_error(text):
    for candidate in (text, "magnet:?" + text, f"magnet:?xt=urn:btih:{HEX}&" + text):
        try:
            m = magnet.parse(candidate)
        except MagnetError as e:
            assert str(e) and "\n" not in str(e)
        else:
            assert isinstance(m, Magnet) and len(m.info_hash) == 20


hosts = st.one_of(
    st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str),
    st.from_regex(r"[a-z][a-z0-9]{0,10}(\.[a-z]{2,5}){0,2}", fullmatch=True))


@settings(deadline=None)  # no wall-clock deadline: the machine is shared
@given(st.binary(min_size=20, max_size=20), st.one_of(st.none(), st.text(max_size=40)),
       st.lists(st.from_regex(r"(http|udp)://[a-z0-9.:/?=&%+-]{1,30}", fullmatch=True),
                max_size=4, unique=True),
       st.lists(st.tuples(hosts, st.integers(1, 65535)), max_size=4, unique=True))
def test_make_then_parse_gives_the_same(info_hash, name, trackers, peers):
    peers = [(str(ipaddress.ip_address(h)) if ":" in h else h, p) for h, p in peers]
    uri = magnet.make(info_hash, name, trackers, peers)
    assert magnet.parse(uri) == Magnet(info_hash, name, tuple(trackers), tuple(dict.fromkeys(peers)))


def test_metainfo_magnet_and_back(tmp_path):
    f = tmp_path / "x y.bin"
    f.write_bytes(b"z" * 100_000)
    meta = parse_torrent(create_torrent(f, trackers=["http://a/announce", "udp://b:1"]))
    m = magnet.parse(magnet.link(meta))
    assert (m.info_hash, m.name, m.trackers) == (meta.info_hash, "x y.bin", meta.trackers)
    rebuilt = m.metainfo(meta.info_bytes)
    assert rebuilt.info_hash == meta.info_hash
    assert rebuilt.files == meta.files and rebuilt.piece_hashes == meta.piece_hashes
    assert rebuilt.announce_list == (("http://a/announce",), ("udp://b:1",))


def test_metainfo_refuses_wrong_or_unusable_metadata(tmp_path):
    f = tmp_path / "a.bin"
    f.write_bytes(b"a" * 1000)
    meta = parse_torrent(create_torrent(f))
    with pytest.raises(MagnetError, match="does not match"):
        Magnet(bytes(20)).metainfo(meta.info_bytes)
    bad = b"d4:name3:../e"  # hashes right for a magnet made of it, but is no torrent
    with pytest.raises(MagnetError, match="not a usable torrent"):
        Magnet(hashlib.sha1(bad).digest()).metainfo(bad)


def test_v2_only_link_goes_by_its_v2_hash_cut_to_20_bytes():
    """BEP 52 (it used to be refused): a urn:btmh link alone is a v2 torrent's swarm."""
    v2 = bytes(range(32))
    m = magnet.parse("magnet:?xt=urn:btmh:1220" + v2.hex() + "&dn=x")
    assert m.info_hash_v2 == v2 and m.info_hash == v2[:20] and m.v2_only
    assert magnet.parse(m.uri()) == m
    assert "urn:btih" not in m.uri()


def test_link_with_both_hashes_joins_the_v1_swarm():
    v2 = bytes(range(32))
    m = magnet.parse(f"magnet:?xt=urn:btmh:1220{v2.hex()}&xt=urn:btih:{HEX}")
    assert m.info_hash == bytes.fromhex(HEX) and m.info_hash_v2 == v2 and not m.v2_only
    assert magnet.parse(m.uri()) == m


def test_v2_metadata_is_checked_against_the_v2_hash():
    from pathlib import Path
    torrent = (Path(__file__).resolve().parent.parent / "data" / "v2" / "single-hybrid.torrent")
    meta = parse_torrent(torrent.read_bytes())
    good = magnet.parse(magnet.link(meta))
    assert "urn:btih:" in magnet.link(meta) and "urn:btmh:1220" in magnet.link(meta)
    assert good.metainfo(meta.info_bytes).info_hash_v2 == meta.info_hash_v2
    forged = magnet.parse(f"magnet:?xt=urn:btih:{meta.info_hash.hex()}&xt=urn:btmh:1220{'00' * 32}")
    with pytest.raises(MagnetError, match="v2 info-hash"):
        forged.metainfo(meta.info_bytes)
