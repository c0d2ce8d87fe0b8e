"""KRPC messages (BEP 5): round trips, the exact bytes of the BEP's examples, strict
validation, and hostile input (hypothesis): any datagram gives a message or KrpcError."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentfs.core.dht import krpc
from torrentfs.core.dht.krpc import (
    AnnouncePeer,
    Error,
    FindNode,
    GetPeers,
    KrpcError,
    NodeInfo,
    Ping,
    Response,
    UnknownQuery,
    bencode,
    decode,
    encode,
)

A = b"abcdefghij0123456789"
B = b"mnopqrstuvwxyz123456"


def test_bep5_ping_example_bytes():
    q = b"d1:ad2:id20:abcdefghij0123456789e1:q4:ping1:t2:aa1:y1:qe"
    assert decode(q) == Ping(b"aa", A)
    assert encode(Ping(b"aa", A)) == q
    r = b"d1:rd2:id20:mnopqrstuvwxyz123456e1:t2:aa1:y1:re"
    assert decode(r) == Response(b"aa", B)
    assert encode(Response(b"aa", B)) == r


def test_bep5_examples():
    assert decode(b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz123456e"
                  b"1:q9:find_node1:t2:aa1:y1:qe") == FindNode(b"aa", A, B)
    assert decode(b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456e"
                  b"1:q9:get_peers1:t2:aa1:y1:qe") == GetPeers(b"aa", A, B)
    assert decode(b"d1:ad2:id20:abcdefghij012345678912:implied_porti1e9:info_hash20:"
                  b"mnopqrstuvwxyz1234564:porti6881e5:token8:aoeusnthe1:q13:announce_peer"
                  b"1:t2:aa1:y1:qe") == AnnouncePeer(b"aa", A, B, 6881, b"aoeusnth", True)
    r = decode(b"d1:rd2:id20:abcdefghij01234567895:token8:aoeusnth6:valuesl6:axje.u6:idhtnm"
               b"ee1:t2:aa1:y1:re")
    assert r.token == b"aoeusnth"
    assert r.values == (("97.120.106.101", 11893), ("105.100.104.116", 28269))
    e = decode(b"d1:eli201e23:A Generic Error Ocurrede1:t2:aa1:y1:ee")
    assert e == Error(b"aa", 201, "A Generic Error Ocurred")


def test_round_trips():
    nodes = (NodeInfo(A, ("1.2.3.4", 6881)), NodeInfo(B, ("10.0.0.1", 1)))
    nodes6 = (NodeInfo(B, ("2001:db8::1", 51413)),)
    msgs = [Ping(b"\x00\x01", A, read_only=True), FindNode(b"x", A, B), GetPeers(b"", B, A),
            AnnouncePeer(b"t", A, B, 65535, b"tok"), UnknownQuery(b"t", A, b"sample_infohashes"),
            Response(b"t", A, nodes, nodes6, (("5.6.7.8", 80), ("::1", 1)), b"tk", ("9.9.9.9", 9)),
            Error(b"t", 204, "Method Unknown")]
    for m in msgs:
        ip = m.ip if isinstance(m, Response) else None
        assert decode(encode(m, ip=ip, version=b"TF01")) == m


def test_compact_nodes():
    raw = krpc.pack_nodes([NodeInfo(A, ("127.0.0.2", 6881))])
    assert raw == A + bytes([127, 0, 0, 2]) + (6881).to_bytes(2, "big")
    assert krpc.unpack_nodes(raw) == (NodeInfo(A, ("127.0.0.2", 6881)),)
    assert krpc.unpack_nodes(A + bytes(6)) == ()  # port 0: unreachable, dropped
    with pytest.raises(KrpcError):
        krpc.unpack_nodes(raw[:-1])


def q(args: bytes, method: bytes = b"get_peers", extra: bytes = b"") -> bytes:
    return b"d1:ad" + args + b"e1:q" + b"%d:" % len(method) + method + extra + b"1:t2:aa1:y1:qe"


@pytest.mark.parametrize("data, why", [
    (b"", "truncated"),
    (b"le", "not a dictionary"),
    (b"d1:t2:aa1:y1:qe", "without method"),
    (b"d1:y1:qe", "transaction id"),
    (b"d1:ti5e1:y1:qe", "transaction id"),
    (b"d1:t33:" + b"x" * 33 + b"1:y1:qe", "transaction id"),
    (b"d1:t2:aa1:y1:ze", "unknown message type"),
    (q(b"2:id19:" + A[:19]), "node id"),
    (q(b"2:id20:" + A + b"9:info_hash21:" + B + b"x"), "info-hash"),
    (q(b"2:id20:" + A), "info-hash"),
    (q(b"2:id20:" + A, b"find_node"), "target"),
    (q(b"2:id20:" + A + b"9:info_hash20:" + B + b"4:porti0e5:token1:x", b"announce_peer"), "port"),
    (q(b"2:id20:" + A + b"9:info_hash20:" + B + b"4:porti65536e5:token1:x", b"announce_peer"),
     "port"),
    (q(b"2:id20:" + A + b"9:info_hash20:" + B + b"4:porti1e5:token0:", b"announce_peer"), "token"),
    (q(b"2:id20:" + A + b"9:info_hash20:" + B + b"4:porti1e", b"announce_peer"), "token"),
    (b"d1:rd2:id20:" + A + b"5:nodes25:" + bytes(25) + b"e1:t2:aa1:y1:re", "multiple of 26"),
    (b"d1:rd2:id20:" + A + b"6:valuesl5:abcdeee1:t2:aa1:y1:re", "compact address"),
    (b"d1:rd2:id20:" + A + b"6:valuesi1ee1:t2:aa1:y1:re", "values"),
    (b"d1:rd2:id20:" + A + b"5:token0:e1:t2:aa1:y1:re", "token"),
    (b"d1:eli201ee1:t2:aa1:y1:ee", "malformed error"),
    (b"d1:t2:aa1:t2:bb1:y1:qe", "repeated"),
    (b"d1:t2:aa1:y1:qei0e", "trailing"),
    (b"d1:t2:aa1:y1:q1:xi-0ee", "integer"),
    (b"d1:t2:aa1:y1:q1:xi01ee", "integer"),
    (b"d1:t2:aa1:y1:q1:x5:abce", "past the end"),
    (b"d1:t2:aa1:y1:q1:x" + b"l" * 20 + b"e" * 20 + b"e", "deeply"),
    (b"d1:t2:aa" + b"x" * krpc.MAX_DATAGRAM + b"e", "too large"),
])
def test_rejects(data, why):
    with pytest.raises(KrpcError, match=why):
        decode(data)


def test_error_keeps_tid_of_a_bad_query():
    with pytest.raises(KrpcError) as e:
        decode(q(b"2:id3:abc"))
    assert e.value.tid == b"aa"


def test_implied_port_may_omit_a_real_port():
    m = decode(q(b"2:id20:" + A + b"12:implied_porti1e9:info_hash20:" + B
                 + b"4:porti0e5:token1:x", b"announce_peer"))
    assert m.implied_port and m.port == 0


def test_unknown_method_and_extra_keys():
    m = decode(q(b"2:id20:" + A + b"6:targetl1:xe", b"get", b"1:v4:LT\x01\x02"))
    assert m == UnknownQuery(b"aa", A, b"get")
    assert decode(q(b"2:id20:" + A, b"ping", b"2:roi1e")).read_only


def test_unsorted_keys_accepted():
    assert decode(b"d1:y1:q1:t2:aa1:q4:ping1:ad2:id20:" + A + b"ee") == Ping(b"aa", A)


# -- hostile input -----------------------------------------------------------------------

bvalues = st.recursive(
    st.integers(-2**70, 2**70) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.binary(max_size=12), inner,
                                                                 max_size=4),
    max_leaves=20)
keys = st.sampled_from([b"t", b"y", b"q", b"a", b"r", b"e", b"id", b"target", b"info_hash",
                        b"port", b"token", b"nodes", b"values", b"implied_port", b"ip"])
fields = st.sampled_from([b"q", b"r", b"e", b"ping", b"find_node", b"get_peers",
                          b"announce_peer", A, bytes(26), bytes(6), b"aa"]) | st.integers(-1, 70000)
shaped = st.recursive(fields, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(keys, inner, max_size=6), max_leaves=25)


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_any_bytes_give_a_message_or_krpc_error(data):
    try:
        m = decode(data)
    except KrpcError:
        return
    assert isinstance(m, krpc.Message)


@settings(max_examples=400)
@given(bvalues | st.dictionaries(keys, shaped, max_size=6))
def test_any_bencoded_value_gives_a_message_or_krpc_error(value):
    data = bencode(value)
    try:
        m = decode(data)
    except KrpcError:
        return
    assert isinstance(m, krpc.Message)
    # What decodes encodes again to something that decodes the same.
    assert decode(encode(m)) == m


@settings(max_examples=300)
@given(st.binary(min_size=20, max_size=20), st.binary(min_size=20, max_size=20),
       st.binary(max_size=8), st.integers(1, 65535), st.binary(min_size=1, max_size=64),
       st.integers(0, 60))
def test_announce_round_trip_and_truncations(node, ih, tid, port, token, cut):
    data = encode(AnnouncePeer(tid, node, ih, port, token))
    assert decode(data) == AnnouncePeer(tid, node, ih, port, token)
    with pytest.raises(KrpcError):
        decode(data[:max(0, len(data) - 1 - cut)])


def test_bep32_want_round_trips_and_exact_bytes():
    both = frozenset({"n4", "n6"})
    for m in (FindNode(b"t", A, B, want=both), GetPeers(b"t", A, B, want=frozenset({"n6"})),
              FindNode(b"t", A, B, want=frozenset({"n4"}), read_only=True)):
        assert decode(encode(m)) == m
    assert encode(FindNode(b"aa", A, B, want=both)) == (
        b"d1:ad2:id20:abcdefghij01234567896:target20:mnopqrstuvwxyz1234564:wantl2:n42:n6ee"
        b"1:q9:find_node1:t2:aa1:y1:qe")
    # no want: no key (what BEP 5 nodes send)
    assert b"want" not in encode(GetPeers(b"aa", A, B))


@pytest.mark.parametrize("want, expected", [
    (b"4:wantl2:n6e", {"n6"}),
    (b"4:wantl2:n62:n42:n6e", {"n4", "n6"}),                 # repeated: still one each
    (b"4:wantl2:n52:xxi4ee", set()),                         # unknown entries ignored
    (b"4:want2:n4", set()),                                  # not a list: ignored
    (b"4:wantd2:n4i1ee", set()),                             # not a list: ignored
    (b"4:wantl" + b"2:xx" * 8 + b"2:n6e", set()),            # only MAX_WANT entries looked at
    (b"4:wantle", set()),
])
def test_bep32_want_hostile_values(want, expected):
    q = (b"d1:ad2:id20:abcdefghij01234567899:info_hash20:mnopqrstuvwxyz123456" + want
         + b"e1:q9:get_peers1:t2:aa1:y1:qe")
    msg = decode(q)
    assert isinstance(msg, GetPeers) and msg.want == frozenset(expected)
