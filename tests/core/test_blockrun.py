"""core/blockrun and wire.PeerConnection.take_blocks: the whole blocks next in a
receive buffer in one call, each judged as ``next_event`` judges a block (issue 13)."""

from __future__ import annotations

import os
import random
import struct

import pytest

from torrentfs.core import blockrun, messages, wire

NUM = 8
INFO_HASH = bytes(range(20))


def block(index: int, begin: int, data: bytes) -> bytes:
    """A PIECE message's bytes, as a peer may send them (no check of ours)."""
    return struct.pack(">IBII", 9 + len(data), 7, index, begin) + data


def test_take_returns_every_whole_block_and_stops_before_the_rest():
    a, b, c = os.urandom(100), os.urandom(16384), os.urandom(1)
    buf = block(1, 0, a) + block(2, 16384, b) + block(7, 5, c)
    have = messages.encode(wire.Have(3), NUM)
    cut = block(4, 0, b)[:-1]
    for tail in (b"", have, cut, have + block(5, 0, a)):
        blocks, pos = blockrun.take(buf + tail, 0, NUM, 9 + wire.MAX_BLOCK_LENGTH)
        assert [(i, g, bytes(d)) for i, g, d in blocks] == [(1, 0, a), (2, 16384, b),
                                                            (7, 5, c)]
        assert pos == len(buf)
        assert all(d.readonly for _, _, d in blocks)


def test_take_starts_at_pos_and_leaves_what_next_event_would_refuse():
    a = os.urandom(64)
    good = block(0, 0, a)
    for bad in (block(NUM, 0, a),                      # index out of range
                block(0, 0, b""),                      # no payload
                block(0, 0, os.urandom(wire.MAX_BLOCK_LENGTH + 1))):  # too long
        buf = b"junk" + good + bad + good
        blocks, pos = blockrun.take(buf, 4, NUM, 9 + wire.MAX_BLOCK_LENGTH)
        assert [(i, g, bytes(d)) for i, g, d in blocks] == [(0, 0, a)]
        assert pos == 4 + len(good)
    # an unbounded index while the torrent's size is unknown; a lower max_length
    blocks, _ = blockrun.take(block(NUM, 0, a), 0, None, 9 + wire.MAX_BLOCK_LENGTH)
    assert len(blocks) == 1
    assert blockrun.take(good, 0, NUM, 9 + 63) == ([], 0)
    assert blockrun.take(good[:12], 0, NUM, 1 << 20) == ([], 0)


def running(max_message: int = wire.DEFAULT_MAX_MESSAGE) -> wire.PeerConnection:
    conn = wire.PeerConnection(INFO_HASH, b"A" * 20, num_pieces=NUM, max_message=max_message)
    remote = wire.PeerConnection(INFO_HASH, b"B" * 20, num_pieces=NUM)
    conn.receive_data(remote.handshake() + messages.encode(wire.HaveAll(), NUM))
    assert isinstance(conn.next_event(), wire.Handshake)
    assert isinstance(conn.next_event(), wire.HaveAll)
    return conn


def test_take_blocks_is_empty_before_the_connection_runs():
    conn = wire.PeerConnection(INFO_HASH, b"A" * 20, num_pieces=NUM)
    conn.receive_data(block(0, 0, b"x"))
    assert conn.take_blocks() == []


@pytest.mark.parametrize("seed", range(20))
def test_blocks_by_runs_are_the_blocks_one_by_one_whatever_the_receives(seed):
    """The same bytes, cut into the same receives, give the same events whether the
    blocks after each Piece are taken as a run or one ``next_event`` at a time; the
    views stay valid (the buffer is not reused under them)."""
    rng = random.Random(seed)
    msgs: list[wire.Message] = []
    for _ in range(60):
        if rng.random() < 0.8:
            msgs.append(wire.Piece(rng.randrange(NUM), rng.randrange(64) << 14,
                                   os.urandom(rng.choice([1, 100, 16384]))))
        else:
            msgs.append(rng.choice([wire.Have(rng.randrange(NUM)), wire.KeepAlive(),
                                    wire.Unchoke(), wire.Request(1, 0, 16384)]))
    data = b"".join(messages.encode(m, NUM) for m in msgs)
    cuts = sorted(rng.sample(range(1, len(data)), 15))
    chunks = [data[i:j] for i, j in zip([0, *cuts], [*cuts, len(data)])]

    def events(runs: bool) -> list:
        conn, out, kept = running(), [], []
        for chunk in chunks:
            conn.receive_data(chunk)
            while (event := conn.next_event()) is not wire.NEED_DATA:
                if type(event) is wire.Piece and runs:
                    more = conn.take_blocks()
                    kept.extend(d for _, _, d in more)
                    out.append(event)
                    out.extend(wire.Piece(i, g, d) for i, g, d in more)
                else:
                    out.append(event)
        return [wire.Piece(m.index, m.begin, bytes(m.data)) if type(m) is wire.Piece
                else m for m in out]

    assert events(runs=True) == events(runs=False) == msgs
