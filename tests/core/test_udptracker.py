"""Tests for torrentfs.udptracker: BEP 15 datagrams built and answers checked, with
requests decoded here independently of the builders; hostile answers give
TrackerError and nothing else. No sockets."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentfs.core.announce import DEFAULT_INTERVAL, AnnounceRequest, TrackerError
from torrentfs.core.udptracker import (
    ANNOUNCE,
    CONNECT,
    ERROR,
    PROTOCOL_ID,
    SCRAPE,
    Announced,
    Connected,
    ConnectionIds,
    Scraped,
    ScrapeStats,
    announce_request,
    connect_request,
    key_number,
    read_answer,
    retry_timeout,
    scrape_request,
)

INFO_HASH = bytes(range(20))
PEER_ID = b"-TF0100-" + b"\x00\xff" * 6


def req(**kw) -> AnnounceRequest:
    args = dict(info_hash=INFO_HASH, peer_id=PEER_ID, port=51413)
    args.update(kw)
    return AnnounceRequest(**args)


def answer(action: int, tid: int, body: bytes = b"") -> bytes:
    return struct.pack(">II", action, tid) + body


# -- requests ------------------------------------------------------------------------


def test_connect_request_layout():
    data = connect_request(0xDEADBEEF)
    assert data == bytes.fromhex("0000041727101980") + b"\x00\x00\x00\x00" + b"\xde\xad\xbe\xef"
    assert struct.unpack(">QII", data) == (PROTOCOL_ID, CONNECT, 0xDEADBEEF)


@pytest.mark.parametrize("event, code", [("", 0), ("completed", 1), ("started", 2),
                                         ("stopped", 3)])
def test_announce_request_layout(event, code):
    r = req(event=event, uploaded=1 << 40, downloaded=7, left=(1 << 33) + 5, key="0a0b0c0d",
            numwant=50)
    data = announce_request(0x1122334455667788, 42, r)
    assert len(data) == 98
    conn, action, tid = struct.unpack_from(">QII", data)
    assert (conn, action, tid) == (0x1122334455667788, ANNOUNCE, 42)
    assert data[16:36] == INFO_HASH and data[36:56] == PEER_ID
    downloaded, left, uploaded, ev, ip, key, numwant, port = struct.unpack_from(
        ">QQQIIIiH", data, 56)
    assert (downloaded, left, uploaded) == (7, (1 << 33) + 5, 1 << 40)
    assert (ev, ip, key, numwant, port) == (code, 0, 0x0A0B0C0D, 50, 51413)


def test_announce_request_default_numwant_and_text_key():
    data = announce_request(1, 2, req(numwant=-5, key="not hex!"))
    _, _, key, numwant, _ = struct.unpack_from(">IIIiH", data, 80)
    assert numwant == -1
    assert key == key_number("not hex!") != 0


def test_announce_request_rejects_bad_lengths():
    with pytest.raises(ValueError):
        announce_request(1, 2, req(info_hash=b"short"))


def test_scrape_request_layout():
    hashes = [bytes([i]) * 20 for i in range(3)]
    data = scrape_request(9, 10, hashes)
    assert struct.unpack_from(">QII", data) == (9, SCRAPE, 10)
    assert data[16:] == b"".join(hashes)
    with pytest.raises(ValueError):
        scrape_request(9, 10, [])
    with pytest.raises(ValueError):
        scrape_request(9, 10, [b"x" * 20] * 75)


def test_retry_timeouts_double_up_to_n_8():
    assert [retry_timeout(n) for n in range(10)] == [15 * 2 ** min(n, 8) for n in range(10)]
    assert retry_timeout(2, base=0.5) == 2.0


# -- answers -------------------------------------------------------------------------


def test_connect_answer():
    a = read_answer(answer(CONNECT, 7, struct.pack(">Q", 0xABCDEF0123456789)), 7, CONNECT)
    assert a == Connected(7, 0xABCDEF0123456789)


def test_other_transaction_or_short_datagram_is_not_ours():
    assert read_answer(answer(CONNECT, 8, bytes(8)), 7, CONNECT) is None
    assert read_answer(b"\x00\x00\x00", 7, CONNECT) is None
    assert read_answer(b"", 7, CONNECT) is None
    # Even an error with another transaction id is someone else's.
    assert read_answer(answer(ERROR, 8, b"go away"), 7, CONNECT) is None


def test_error_answer_raises_its_message_on_one_line():
    with pytest.raises(TrackerError, match="tracker refused: unregistered torrent"):
        read_answer(answer(ERROR, 7, b"unregistered\r\n torrent\x00"), 7, ANNOUNCE)
    with pytest.raises(TrackerError) as e:
        read_answer(answer(ERROR, 7, b"\xff\xfe" * 2000), 7, CONNECT)
    assert "\n" not in str(e.value) and len(str(e.value)) < 300
    with pytest.raises(TrackerError, match="no reason given"):
        read_answer(answer(ERROR, 7), 7, CONNECT)


def test_wrong_action_raises():
    with pytest.raises(TrackerError, match="'connect' to a 'announce'"):
        read_answer(answer(CONNECT, 7, bytes(8)), 7, ANNOUNCE)
    with pytest.raises(TrackerError, match="99"):
        read_answer(answer(99, 7, bytes(8)), 7, CONNECT)


def test_short_connect_answer_raises():
    with pytest.raises(TrackerError, match="16 expected"):
        read_answer(answer(CONNECT, 7, bytes(7)), 7, CONNECT)


def test_announce_answer_v4():
    peers = bytes([10, 0, 0, 1, 0x1A, 0xE1]) + bytes([10, 0, 0, 2, 0, 0]) + bytes(
        [10, 0, 0, 1, 0x1A, 0xE1])
    a = read_answer(answer(ANNOUNCE, 7, struct.pack(">iii", 900, 3, 4) + peers), 7, ANNOUNCE)
    assert isinstance(a, Announced)
    r = a.response
    assert (r.interval, r.incomplete, r.complete) == (900, 3, 4)
    assert r.peers == (("10.0.0.1", 6881),)  # port 0 dropped, duplicate removed


def test_announce_answer_v6():
    peer = bytes.fromhex("20010db8000000000000000000000001") + struct.pack(">H", 51413)
    body = struct.pack(">iii", 60, 0, 1) + peer
    a = read_answer(answer(ANNOUNCE, 7, body), 7, ANNOUNCE, ipv6=True)
    assert a.response.peers == (("2001:db8::1", 51413),)
    # The same bytes over IPv4 are three 6-byte entries (two with port 0): the
    # caller must say the family.
    v4 = read_answer(answer(ANNOUNCE, 7, body), 7, ANNOUNCE).response.peers
    assert v4 == (("0.0.0.1", 51413),)


def test_announce_answer_bad_sizes_and_intervals():
    with pytest.raises(TrackerError, match="at least 20"):
        read_answer(answer(ANNOUNCE, 7, bytes(11)), 7, ANNOUNCE)
    with pytest.raises(TrackerError, match="multiple of 6"):
        read_answer(answer(ANNOUNCE, 7, bytes(12 + 7)), 7, ANNOUNCE)
    with pytest.raises(TrackerError, match="multiple of 18"):
        read_answer(answer(ANNOUNCE, 7, bytes(12 + 6)), 7, ANNOUNCE, ipv6=True)
    r = read_answer(answer(ANNOUNCE, 7, struct.pack(">iii", -5, -1, -1)), 7, ANNOUNCE).response
    assert r.interval == DEFAULT_INTERVAL and r.complete is None and r.incomplete is None


def test_scrape_answer():
    body = struct.pack(">III", 5, 10, 2) + struct.pack(">III", 0, 0, 1)
    a = read_answer(answer(SCRAPE, 7, body), 7, SCRAPE, scraped=2)
    assert a == Scraped(7, (ScrapeStats(5, 10, 2), ScrapeStats(0, 0, 1)))
    with pytest.raises(TrackerError):
        read_answer(answer(SCRAPE, 7, body), 7, SCRAPE, scraped=3)
    with pytest.raises(TrackerError):
        read_answer(answer(SCRAPE, 7, body + b"x"), 7, SCRAPE, scraped=2)


@settings(max_examples=500)
@given(st.binary(max_size=200), st.sampled_from([CONNECT, ANNOUNCE, SCRAPE]), st.booleans(),
       st.integers(0, 3))
def test_any_bytes_give_an_answer_none_or_tracker_error(data, action, ipv6, scraped):
    try:
        read_answer(data, 7, action, ipv6=ipv6, scraped=scraped)
    except TrackerError as e:
        assert "\n" not in str(e)


@settings(max_examples=300)
@given(st.sampled_from([CONNECT, ANNOUNCE, SCRAPE, ERROR, 4, 0xFFFFFFFF]),
       st.binary(max_size=120), st.booleans())
def test_any_answer_with_our_transaction_id(action, body, ipv6):
    """With the transaction id right, the answer is parsed or refused, never ignored."""
    for want in (CONNECT, ANNOUNCE, SCRAPE):
        try:
            got = read_answer(answer(action, 7, body), 7, want, ipv6=ipv6)
        except TrackerError:
            continue
        assert got is not None and action == want


# -- connection ids ------------------------------------------------------------------


def test_connection_id_lives_one_minute():
    ids = ConnectionIds()
    assert ids.get("t", 0.0) is None
    ids.put("t", 5, 100.0)
    assert ids.get("t", 159.9) == 5
    assert ids.get("u", 120.0) is None
    assert ids.get("t", 160.0) is None
    assert ids.get("t", 100.0) is None  # expired entries are dropped
    ids.put("t", 6, 200.0)
    ids.forget("t")
    assert ids.get("t", 200.0) is None
