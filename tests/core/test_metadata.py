"""BEP 9 ut_metadata: the message codec, serving, and the fetcher's state machine
(several peers, rejects, hostile sizes and pieces, hash failure), with no sockets."""

from __future__ import annotations

import hashlib

import bencodepy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from torrentfs.core import metadata
from torrentfs.core.metadata import (
    PIECE_SIZE,
    Complete,
    Data,
    HashFailed,
    MetadataError,
    MetadataFetcher,
    Reject,
    Request,
)

INFO = bencodepy.encode({b"name": b"x", b"pad": b"p" * (2 * PIECE_SIZE + 100)})  # 3 pieces
HASH = hashlib.sha1(INFO).digest()


def piece(i: int, info: bytes = INFO) -> Data:
    return Data(i, len(info), info[i * PIECE_SIZE:(i + 1) * PIECE_SIZE])


def test_codec_round_trip():
    for msg in (Request(3), Reject(0), piece(2)):
        assert metadata.decode(metadata.encode(msg)) == msg


def test_data_is_the_dictionary_then_raw_bytes():
    raw = metadata.encode(piece(0))
    head = bencodepy.encode({b"msg_type": 1, b"piece": 0, b"total_size": len(INFO)})
    assert raw == head + INFO[:PIECE_SIZE]


@pytest.mark.parametrize("payload, needle", [
    (b"garbage", "bad bencode"),
    (b"li1ee", "not a dictionary"),
    (bencodepy.encode({b"piece": 0}), "msg_type"),
    (bencodepy.encode({b"msg_type": 0, b"piece": -1}), "bad piece"),
    (bencodepy.encode({b"msg_type": 0, b"piece": 10**9}), "bad piece"),
    (bencodepy.encode({b"msg_type": 0}), "bad piece"),
    (bencodepy.encode({b"msg_type": 1, b"piece": 0}), "total_size"),
    (bencodepy.encode({b"msg_type": 1, b"piece": 0, b"total_size": 0}), "total_size"),
    (bencodepy.encode({b"msg_type": 1, b"piece": 0, b"total_size": 1 << 30}), "total_size"),
    (bencodepy.encode({b"msg_type": 0, b"piece": 0}) + b"x", "stray"),
])
def test_malformed_messages(payload, needle):
    with pytest.raises(MetadataError, match=needle):
        metadata.decode(payload)


def test_unknown_msg_type_is_ignored():
    assert metadata.decode(bencodepy.encode({b"msg_type": 7, b"piece": 0})) is None


@settings(deadline=None)  # no wall-clock deadline: the machine is shared
@given(st.binary(max_size=200))
def test_any_payload_decodes_or_raises_metadata_error(data):
    try:
        metadata.decode(data)
    except MetadataError:
        pass


def test_serve():
    assert metadata.serve(INFO, Request(0)) == piece(0)
    assert metadata.serve(INFO, Request(2)) == piece(2)
    assert len(metadata.serve(INFO, Request(2)).data) == len(INFO) - 2 * PIECE_SIZE
    assert metadata.serve(INFO, Request(3)) == Reject(3)
    assert metadata.serve(None, Request(0)) == Reject(0)


def drain(f: MetadataFetcher, peer) -> list[int]:
    out = []
    while (i := f.next_request(peer)) is not None:
        out.append(i)
    return out


def test_fetch_from_two_peers_spreads_pieces_and_completes():
    f = MetadataFetcher(HASH, per_peer=2)
    f.peer_joined("a", len(INFO))
    f.peer_joined("b", len(INFO))
    assert drain(f, "a") == [0, 1]
    assert drain(f, "b") == [2]          # no piece asked of two peers while others wait
    assert f.received("b", piece(2)) is None
    assert f.received("a", piece(0)) is None
    assert f.received_pieces == 2 and f.total_pieces == 3
    done = f.received("a", piece(1))
    assert done == Complete(INFO)


def test_reject_moves_the_piece_to_another_peer_and_never_back():
    f = MetadataFetcher(HASH, per_peer=4)
    f.peer_joined("a", len(INFO))
    assert drain(f, "a") == [0, 1, 2]
    f.received("a", Reject(1))
    assert drain(f, "a") == []           # it said no: not asked again
    f.peer_joined("b", len(INFO))
    assert drain(f, "b") == [1]
    assert f.useful("a")
    f.received("a", Reject(0))
    f.received("a", Reject(2))
    assert not f.useful("a")


def test_peer_left_frees_its_pieces():
    f = MetadataFetcher(HASH)
    f.peer_joined("a", len(INFO))
    drain(f, "a")
    f.peer_left("a")
    f.peer_joined("b", len(INFO))
    assert drain(f, "b") == [0, 1, 2]


def test_endgame_asks_an_idle_peer_for_a_piece_in_flight():
    f = MetadataFetcher(HASH, per_peer=4)
    f.peer_joined("a", len(INFO))
    f.peer_joined("b", len(INFO))
    drain(f, "a")
    assert drain(f, "b") == [0]
    f.received("b", piece(0))
    f.received("a", piece(0))            # the duplicate: ignored
    f.received("a", piece(1))
    assert isinstance(f.received("a", piece(2)), Complete)


@pytest.mark.parametrize("size", [0, -1, metadata.MAX_METADATA_SIZE + 1, "12"])
def test_bad_metadata_size(size):
    with pytest.raises(MetadataError):
        MetadataFetcher(HASH).peer_joined("a", size)


def test_hostile_data_is_refused():
    f = MetadataFetcher(HASH, per_peer=1)
    f.peer_joined("a", len(INFO))
    with pytest.raises(MetadataError, match="not asked"):
        f.received("a", piece(1))          # never asked
    with pytest.raises(MetadataError, match="not asked"):
        f.received("stranger", piece(0))
    assert drain(f, "a") == [0]
    with pytest.raises(MetadataError, match="total_size"):
        f.received("a", Data(0, len(INFO) + 1, INFO[:PIECE_SIZE]))
    f.next_request("a")
    with pytest.raises(MetadataError, match="expected 16384"):
        f.received("a", Data(0, len(INFO), INFO[:100]))


def test_hash_failure_drops_the_contributors_and_starts_over():
    f = MetadataFetcher(HASH, per_peer=4)
    f.peer_joined("liar", len(INFO))
    f.peer_joined("honest", len(INFO))
    assert drain(f, "liar") == [0, 1, 2]
    f.received("liar", Data(0, len(INFO), b"\0" * PIECE_SIZE))
    f.received("liar", piece(1))
    outcome = f.received("liar", piece(2))
    assert outcome == HashFailed(("liar",))
    assert f.received_pieces == 0 and f.next_request("liar") is None
    assert drain(f, "honest") == [0, 1, 2]
    for i in range(3):
        outcome = f.received("honest", piece(i))
    assert outcome == Complete(INFO)


def test_a_peer_with_another_size_waits_until_the_first_size_fails():
    f = MetadataFetcher(HASH)
    f.peer_joined("liar", len(INFO) + 5)  # first: its size is the download's
    f.peer_joined("honest", len(INFO))
    assert f.size == len(INFO) + 5 and drain(f, "honest") == []
    assert f.sources() == 1
    fake = INFO + b"xxxxx"
    for i in drain(f, "liar"):
        outcome = f.received("liar", piece(i, fake))
    assert outcome == HashFailed(("liar",))
    assert f.size == len(INFO)
    for i in drain(f, "honest"):
        outcome = f.received("honest", piece(i))
    assert outcome == Complete(INFO)


def test_metadata_that_hashes_right_but_is_no_dictionary_is_refused():
    info = b"i1e"
    f = MetadataFetcher(hashlib.sha1(info).digest())
    f.peer_joined("a", 3)
    drain(f, "a")
    assert isinstance(f.received("a", Data(0, 3, info)), HashFailed)


def test_a_failure_nobody_can_be_blamed_for_turns_to_one_peer_per_attempt():
    f = MetadataFetcher(HASH, per_peer=2)
    f.peer_joined("liar", len(INFO))
    f.peer_joined("honest", len(INFO))
    assert drain(f, "liar") == [0, 1] and drain(f, "honest") == [2]
    f.received("liar", Data(0, len(INFO), b"\0" * PIECE_SIZE))
    f.received("liar", piece(1))
    assert f.received("honest", piece(2)) == HashFailed(())
    # Now one source per attempt: the liar goes first and is caught alone.
    assert drain(f, "liar") == [0, 1] and drain(f, "honest") == []
    f.received("liar", Data(0, len(INFO), b"\0" * PIECE_SIZE))
    f.received("liar", piece(1))
    assert drain(f, "liar") == [2]
    assert f.received("liar", piece(2)) == HashFailed(("liar",))
    outcome = None
    for _ in range(3):
        for i in drain(f, "honest"):
            outcome = f.received("honest", piece(i))
    assert outcome == Complete(INFO)


def test_a_single_source_that_leaves_takes_its_pieces():
    f = MetadataFetcher(HASH, per_peer=1)
    f._single = True
    f.peer_joined("a", len(INFO))
    f.peer_joined("b", len(INFO))
    assert drain(f, "a") == [0] and drain(f, "b") == []
    f.received("a", piece(0))
    f.peer_left("a")
    assert f.received_pieces == 0 and drain(f, "b") == [0]


def test_answers_to_requests_from_before_a_restart_are_ignored():
    f = MetadataFetcher(HASH, per_peer=4)
    f.peer_joined("liar", len(INFO))
    f.peer_joined("slow", len(INFO))
    drain(f, "liar")
    assert drain(f, "slow") == [0]  # endgame
    for i in range(3):
        outcome = f.received("liar", Data(i, len(INFO), piece(i).data[::-1]))
    assert outcome == HashFailed(("liar",))
    assert f.received("slow", piece(0)) is None   # asked before the restart: dropped
    assert f.received_pieces == 0
    with pytest.raises(MetadataError):
        f.received("slow", piece(0))              # but only once
