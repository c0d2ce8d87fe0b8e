"""BEP 52 hash request / hashes / hash reject (ids 21, 22, 23): the codec through two
PeerConnections back to back, and hostile bytes refused with a clear reason."""

from __future__ import annotations

import struct

import pytest

from tests.core.test_wire import after_handshake, drain, make_pair, raw, transfer, u32s
from torrentfs.core.handshake import RESERVED_V2, make_reserved
from torrentfs.core.wire import (
    Hashes,
    HashReject,
    HashRequest,
    Interested,
    LocalProtocolError,
    RemoteProtocolError,
)

ROOT = bytes(range(32))
H = b"h" * 32


@pytest.mark.parametrize("msg", [
    HashRequest(ROOT, 2, 0, 512, 9),
    HashRequest(ROOT, 0, 6, 2, 0),
    HashRequest(ROOT, 0, 0, 1, 0),
    HashReject(ROOT, 2, 512, 512, 10),
    Hashes(ROOT, 2, 0, 2, 0, H * 2),
    Hashes(ROOT, 2, 4, 4, 5, H * 7),
])
def test_round_trip(msg):
    a, b = make_pair()
    assert transfer(a, b, msg) == [msg]


def test_hash_messages_may_come_before_the_bitfield():
    """They do not use up the first-message slot (a magnet fetch sends no bitfield)."""
    from torrentfs.core.wire import HaveAll
    a, b = make_pair()
    assert transfer(a, b, HashRequest(ROOT, 2, 0, 2, 0), HaveAll()) == [
        HashRequest(ROOT, 2, 0, 2, 0), HaveAll()]


def test_v2_reserved_bit_only_when_asked():
    assert not make_reserved()[RESERVED_V2[0]] & RESERVED_V2[1]
    assert make_reserved(v2=True)[RESERVED_V2[0]] & RESERVED_V2[1]
    a, b = make_pair({"v2": True})
    assert a.our_handshake.reserved[7] & 0x10 and not b.our_handshake.reserved[7] & 0x10


def head(root=ROOT, base=2, index=0, length=2, proof=0) -> bytes:
    return root + u32s(base, index, length, proof)


@pytest.mark.parametrize("wire_bytes,reason", [
    (raw(21, head()[:-1]), "hash request payload is 47 bytes, expected 48"),
    (raw(21, head() + b"x"), "hash request payload is 49 bytes, expected 48"),
    (raw(23, head()[:40]), "hash reject payload is 40 bytes"),
    (raw(22, head()[:47]), "hashes payload is 47 bytes, expected 48 or more"),
    (raw(22, head() + H + b"x"), "33 bytes of hashes for length 2"),
    (raw(22, head()), "0 bytes of hashes for length 2"),         # fewer than asked
    (raw(22, head() + H), "32 bytes of hashes for length 2"),
    (raw(22, head(length=2) + H * 100), "3200 bytes of hashes"),  # absurd proof
    (raw(21, head(length=3)), "length 3 is not a power of two"),
    (raw(21, head(length=0)), "length 0 is not a power of two"),
    (raw(21, head(length=16384)), "length 16384 is not a power of two in 1..8192"),
    (raw(21, head(index=3, length=2)), "index 3 is not a multiple of length 2"),
    (raw(21, head(base=64)), "base layer 64 or proof layers 0 not under 64"),
    (raw(21, head(proof=2**31)), "not under 64"),
])
def test_hostile_bytes_are_refused(wire_bytes, reason):
    conn = after_handshake()
    conn.receive_data(wire_bytes)
    with pytest.raises(RemoteProtocolError, match=reason):
        drain(conn)


@pytest.mark.parametrize("msg,reason", [
    (HashRequest(b"short", 2, 0, 2, 0), "pieces root is not 32 bytes"),
    (HashRequest(ROOT, -1, 0, 2, 0), "non-negative"),
    (HashRequest(ROOT, 2, 0, 6, 0), "not a power of two"),
    (HashReject(ROOT, 2, 1, 2, 0), "not a multiple"),
    (Hashes(ROOT, 2, 0, 2, 0, H), "32 bytes of hashes for length 2"),
    (Hashes(ROOT, 2, 0, 2, 0, H * 2 + b"x"), "65 bytes"),
])
def test_we_never_send_a_malformed_one(msg, reason):
    a, _ = make_pair()
    with pytest.raises(LocalProtocolError, match=reason):
        a.send(msg)


def test_valid_message_after_hash_messages_still_parses():
    conn = after_handshake()
    conn.receive_data(raw(21, head()) + raw(23, head()) + raw(2))
    assert drain(conn) == [HashRequest(ROOT, 2, 0, 2, 0), HashReject(ROOT, 2, 0, 2, 0),
                           Interested()]
    assert struct.calcsize(">32sIIII") == 48


def test_hybrid_peer_may_answer_with_the_v2_info_hash():
    """libtorrent answers a v2-capable peer of a hybrid with the v2 info-hash (cut to
    20 bytes): accepted when named as ``also_info_hash``, any other hash refused."""
    from torrentfs.core.wire import Handshake, PeerConnection
    v2_cut = bytes(range(100, 120))
    ours = PeerConnection(bytes(20), b"-TF0001-aaaaaaaaaaaa", num_pieces=4, v2=True,
                          also_info_hash=v2_cut)
    ours.handshake()
    theirs = PeerConnection(v2_cut, b"-LT2080-bbbbbbbbbbbb", num_pieces=4)
    ours.receive_data(theirs.handshake())
    (hs,) = drain(ours)
    assert isinstance(hs, Handshake) and hs.info_hash == v2_cut
    stranger = PeerConnection(bytes(20), b"-TF0001-aaaaaaaaaaaa", num_pieces=4,
                              also_info_hash=v2_cut)
    stranger.handshake()
    other = PeerConnection(bytes(range(1, 21)), b"-LT2080-bbbbbbbbbbbb", num_pieces=4)
    stranger.receive_data(other.handshake())
    with pytest.raises(RemoteProtocolError, match="info_hash is not ours"):
        drain(stranger)


@pytest.mark.parametrize("named", ["v1", "v2"])
def test_an_incoming_handshake_is_answered_with_the_info_hash_it_named(named):
    """A hybrid's two swarms: a peer that named the v2 info-hash (cut to 20 bytes,
    e.g. libtorrent started from a urn:btmh magnet) is answered with that hash,
    one that named the v1 hash with the v1 hash."""
    from torrentfs.core import handshake
    from torrentfs.core.wire import PeerConnection
    v1, v2_cut = bytes(range(20)), bytes(range(100, 120))
    ours = PeerConnection(v1, b"-TF0001-aaaaaaaaaaaa", num_pieces=4, v2=True,
                          also_info_hash=v2_cut)
    theirs = PeerConnection(v1 if named == "v1" else v2_cut, b"-LT2080-bbbbbbbbbbbb",
                            num_pieces=4)
    ours.receive_data(theirs.handshake())
    drain(ours)
    answer = handshake.decode(ours.handshake())
    assert answer.info_hash == (v1 if named == "v1" else v2_cut)
    assert answer.reserved == ours.our_handshake.reserved


def test_swarm_hashes_of_v1_v2_and_hybrid_torrents():
    from types import SimpleNamespace

    from torrentfs.engine.swarms import other_hashes, swarm_hashes
    v1 = SimpleNamespace(info_hash=b"a" * 20, v2=None)
    v2 = SimpleNamespace(info_hash=b"b" * 20,
                         v2=SimpleNamespace(info_hash=b"b" * 32, hybrid=False))
    hybrid = SimpleNamespace(info_hash=b"a" * 20,
                             v2=SimpleNamespace(info_hash=b"c" * 32, hybrid=True))
    assert swarm_hashes(v1) == (b"a" * 20,) and other_hashes(v2) == ()
    assert swarm_hashes(v2) == (b"b" * 20,)
    assert swarm_hashes(hybrid) == (b"a" * 20, b"c" * 20)
