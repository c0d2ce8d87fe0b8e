"""Tests for torrentfs.announce: announce URLs and tracker responses (BEP 3/7/23)."""

from __future__ import annotations

import struct
from urllib.parse import parse_qsl, unquote_to_bytes, urlsplit

import bencodepy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentfs.core.announce import (
    DEFAULT_INTERVAL,
    MIN_INTERVAL,
    AnnounceRequest,
    AnnounceResponse,
    TrackerError,
    announce_url,
    next_announce_in,
    parse_response,
)

INFO_HASH = bytes(range(0, 256, 13))[:20]  # 00 0d 1a ... binary, not text
assert len(INFO_HASH) == 20
PEER_ID = b"-TF0100-" + b"\x00\xff ~%&=+?#/a"


def req(**kw) -> AnnounceRequest:
    args = dict(info_hash=INFO_HASH, peer_id=PEER_ID, port=6881)
    args.update(kw)
    return AnnounceRequest(**args)


def query_of(url: str) -> list[tuple[str, str]]:
    """The raw (still percent-encoded) key/value pairs of a URL's query."""
    return [tuple(part.split("=", 1)) for part in urlsplit(url).query.split("&")]


def raw_params(url: str) -> dict[str, bytes]:
    return {k: unquote_to_bytes(v) for k, v in query_of(url)}


def body(d: dict) -> bytes:
    return bencodepy.encode(d)


def compact4(*peers: tuple[str, int]) -> bytes:
    return b"".join(bytes(map(int, ip.split("."))) + struct.pack(">H", port) for ip, port in peers)


# -- announce_url ------------------------------------------------------------------


def test_binary_info_hash_encoded_byte_by_byte():
    url = announce_url("http://t.example/announce", req())
    params = dict(query_of(url))
    encoded = params["info_hash"]
    # each byte is either an unreserved character or %XX
    i, decoded = 0, bytearray()
    while i < len(encoded):
        if encoded[i] == "%":
            decoded.append(int(encoded[i + 1:i + 3], 16))
            i += 3
        else:
            assert encoded[i].isalnum() or encoded[i] in "-._~"
            decoded.append(ord(encoded[i]))
            i += 1
    assert bytes(decoded) == INFO_HASH
    assert encoded.startswith("%00%0D") or encoded.startswith("%00%0d")


def test_every_byte_value_round_trips():
    for start in range(0, 256, 20):
        ih = bytes((start + k) % 256 for k in range(20))
        url = announce_url("http://t/a", req(info_hash=ih, peer_id=ih[::-1]))
        p = raw_params(url)
        assert p["info_hash"] == ih
        assert p["peer_id"] == ih[::-1]
        # nothing in the encoded value may break the query apart
        assert len(query_of(url)) == len(parse_qsl(urlsplit(url).query, keep_blank_values=True))


def test_reserved_characters_in_peer_id_are_encoded():
    url = announce_url("http://t/a", req())
    raw = dict(query_of(url))["peer_id"]
    for ch in " &=+?#/":
        assert ch not in raw
    assert raw_params(url)["peer_id"] == PEER_ID


def test_fields_and_defaults():
    url = announce_url("http://t.example:6969/announce",
                       req(uploaded=1, downloaded=22, left=333, numwant=7))
    assert url.startswith("http://t.example:6969/announce?")
    p = dict(query_of(url))
    assert p["port"] == "6881"
    assert p["uploaded"] == "1" and p["downloaded"] == "22" and p["left"] == "333"
    assert p["compact"] == "1"
    assert p["no_peer_id"] == "1"
    assert p["numwant"] == "7"
    assert "event" not in p  # empty event: omitted
    assert "key" not in p and "trackerid" not in p


@pytest.mark.parametrize("event", ["started", "completed", "stopped"])
def test_event_included(event):
    p = dict(query_of(announce_url("http://t/a", req(event=event))))
    assert p["event"] == event


def test_key_and_tracker_id():
    url = announce_url("http://t/a", req(key="ab cd", tracker_id=b"\x01id&"))
    p = raw_params(url)
    assert p["key"] == b"ab cd"
    assert p["trackerid"] == b"\x01id&"


def test_base_url_with_query_string_kept():
    url = announce_url("http://t.example/announce.php?passkey=s3cret&x=1", req())
    assert url.startswith("http://t.example/announce.php?passkey=s3cret&x=1&info_hash=")
    assert url.count("?") == 1
    p = raw_params(url)
    assert p["passkey"] == b"s3cret" and p["x"] == b"1"
    assert p["info_hash"] == INFO_HASH


@pytest.mark.parametrize("base", ["http://t/announce?", "http://t/announce?passkey=1&"])
def test_base_url_ending_in_separator(base):
    url = announce_url(base, req())
    assert "??" not in url and "&&" not in url and "?&" not in url
    assert raw_params(url)["info_hash"] == INFO_HASH


def test_https_base():
    url = announce_url("https://t.example/ann", req())
    assert urlsplit(url).scheme == "https"
    assert urlsplit(url).path == "/ann"


# -- parse_response ----------------------------------------------------------------


def test_compact_v4_peers():
    r = parse_response(body({b"interval": 900,
                             b"peers": compact4(("10.0.0.1", 6881), ("192.168.1.255", 65535))}))
    assert r.interval == 900
    assert r.peers == (("10.0.0.1", 6881), ("192.168.1.255", 65535))


def test_compact_peers_with_port_zero_skipped():
    r = parse_response(body({b"peers": compact4(("1.2.3.4", 0), ("1.2.3.5", 1))}))
    assert r.peers == (("1.2.3.5", 1),)


def test_compact_peers_bad_length():
    with pytest.raises(TrackerError):
        parse_response(body({b"peers": b"\x01\x02\x03\x04\x05"}))
    with pytest.raises(TrackerError):
        parse_response(body({b"peers6": bytes(17)}))


def test_peers6():
    addr = bytes.fromhex("20010db8000000000000000000000001")
    r = parse_response(body({b"peers": b"", b"peers6": addr + struct.pack(">H", 51413)}))
    assert r.peers == (("2001:db8::1", 51413),)


def test_v4_and_v6_together_and_duplicates_removed():
    v6 = bytes.fromhex("fe800000000000000000000000000001") + struct.pack(">H", 1)
    r = parse_response(body({
        b"peers": compact4(("1.1.1.1", 1), ("2.2.2.2", 2), ("1.1.1.1", 1)),
        b"peers6": v6 + v6,
    }))
    assert r.peers == (("1.1.1.1", 1), ("2.2.2.2", 2), ("fe80::1", 1))


def test_dict_peers():
    r = parse_response(body({b"peers": [
        {b"ip": b"10.1.2.3", b"port": 6881, b"peer id": b"x" * 20},
        {b"ip": b"::1", b"port": 7000},
        {b"ip": b"tracker.example", b"port": 1},  # hostname: not resolved, skipped
        {b"ip": b"10.0.0.9", b"port": 0},  # bad port
        {b"ip": b"10.0.0.9", b"port": 65536},  # bad port
        {b"ip": b"10.0.0.9"},  # no port
        {b"port": 1},  # no ip
        {b"ip": 5, b"port": 1},  # ip not a string
        {b"ip": b"10.0.0.9", b"port": b"1"},  # port not an integer
        {b"ip": b"\xff\xfe", b"port": 1},  # not ASCII
        b"not a dict",
        7,
    ]}))
    assert r.peers == (("10.1.2.3", 6881), ("::1", 7000))


def test_no_peers_at_all():
    r = parse_response(body({b"interval": 60}))
    assert r.peers == ()
    assert r == AnnounceResponse(interval=60)


def test_peers_of_the_wrong_type_ignored():
    r = parse_response(body({b"peers": 5, b"peers6": [b"x"]}))
    assert r.peers == ()


def test_failure_reason_raises():
    with pytest.raises(TrackerError, match="torrent not registered"):
        parse_response(body({b"failure reason": b"torrent not registered"}))


def test_failure_reason_wins_over_peers_and_is_one_line():
    with pytest.raises(TrackerError) as e:
        parse_response(body({b"failure reason": b"bad\n  passkey\r\n" + b"x" * 1000,
                             b"peers": compact4(("1.2.3.4", 1))}))
    msg = str(e.value)
    assert "\n" not in msg and "\r" not in msg
    assert "bad passkey" in msg
    assert len(msg) < 400


def test_tracker_text_has_no_control_characters():
    """A tracker's words go into our log: no escape sequence may reach a terminal."""
    with pytest.raises(TrackerError) as e:
        parse_response(body({b"failure reason": b"red \x1b[31mALERT\x07\x00 \xc2\x9b"}))
    assert str(e.value) == "tracker refused: red _[31mALERT__ _"
    r = parse_response(body({b"warning message": b"\x1b]0;title\x07"}))
    assert r.warning == "_]0;title_"


def test_failure_reason_not_text():
    with pytest.raises(TrackerError):
        parse_response(body({b"failure reason": 42}))
    with pytest.raises(TrackerError):
        parse_response(body({b"failure reason": b"\xff\xfe"}))


@pytest.mark.parametrize(
    "raw",
    [b"", b"<html>502 Bad Gateway</html>", b"d8:intervali60e", b"i42e", b"le", b"4:spam",
     b"d8:intervali60ee trailing", b"\x00\x01\x02"],
)
def test_garbage_raises_tracker_error(raw):
    with pytest.raises(TrackerError):
        parse_response(raw)


def test_garbage_message_is_one_line():
    with pytest.raises(TrackerError) as e:
        parse_response(b"<html>\n<body>\nsorry\n</body></html>")
    assert "\n" not in str(e.value)


def test_interval_and_min_interval():
    r = parse_response(body({b"interval": 120, b"min interval": 60}))
    assert r.interval == 120 and r.min_interval == 60
    r = parse_response(body({}))
    assert r.interval == DEFAULT_INTERVAL and r.min_interval is None


@pytest.mark.parametrize("bad", [0, -5, b"60", [60]])
def test_bad_interval_gives_default(bad):
    r = parse_response(body({b"interval": bad, b"min interval": bad}))
    assert r.interval == DEFAULT_INTERVAL
    assert r.min_interval is None


def test_other_fields():
    r = parse_response(body({b"complete": 5, b"incomplete": 3, b"tracker id": b"abc",
                             b"warning message": b"slow\ndown"}))
    assert (r.complete, r.incomplete, r.tracker_id) == (5, 3, b"abc")
    assert r.warning == "slow down"
    r = parse_response(body({b"complete": b"5", b"incomplete": [], b"tracker id": 5}))
    assert (r.complete, r.incomplete, r.tracker_id, r.warning) == (None, None, None, None)


@pytest.mark.parametrize(
    "interval, min_interval, expected",
    [
        (1800, None, 1800),
        (1, None, MIN_INTERVAL),  # floor
        (10, 5, MIN_INTERVAL),
        (100, 300, 300),  # a min interval above the interval is honoured
        (100, 50, 100),
        (MIN_INTERVAL, None, MIN_INTERVAL),
    ],
)
def test_next_announce_in(interval, min_interval, expected):
    assert next_announce_in(AnnounceResponse(interval=interval, min_interval=min_interval)) == expected


def test_next_announce_in_from_parsed_response():
    assert next_announce_in(parse_response(body({b"interval": 5}))) == MIN_INTERVAL
    assert next_announce_in(parse_response(body({b"interval": 0}))) == DEFAULT_INTERVAL


# -- any bytes ---------------------------------------------------------------------

bencodable = st.recursive(
    st.one_of(st.integers(-(2**70), 2**70), st.binary(max_size=40)),
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(st.sampled_from([b"interval", b"min interval", b"peers", b"peers6",
                                         b"failure reason", b"warning message", b"complete",
                                         b"incomplete", b"tracker id", b"ip", b"port", b"x"]),
                        children, max_size=6),
    ),
    max_leaves=20,
)


def _only_tracker_error(raw: bytes) -> None:
    try:
        r = parse_response(raw)
    except TrackerError as e:
        assert "\n" not in str(e)
        return
    assert isinstance(r, AnnounceResponse)
    assert isinstance(r.interval, int) and r.interval > 0
    for host, port in r.peers:
        assert isinstance(host, str) and 0 < port < 65536
    assert next_announce_in(r) >= MIN_INTERVAL


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_parse_arbitrary_bytes(raw):
    _only_tracker_error(raw)


@settings(max_examples=500, deadline=None)
@given(bencodable)
def test_parse_arbitrary_bencode(value):
    _only_tracker_error(bencodepy.encode(value))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.integers(0, 119), st.binary(min_size=1, max_size=3))
def test_parse_mutated_valid_response(suffix, cut, insert):
    valid = body({b"interval": 60, b"peers": compact4(("1.2.3.4", 5)) + suffix[:12]})
    cut %= len(valid)
    _only_tracker_error(valid[:cut] + insert + valid[cut:])
    _only_tracker_error(valid[:cut])


def test_ampersand_in_path_is_not_a_query():
    url = announce_url("http://t/a&b", req())
    assert url.startswith("http://t/a&b?info_hash=")
