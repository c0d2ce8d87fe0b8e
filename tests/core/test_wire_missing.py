"""``PeerConnection.missing``: once next_event() says NEED_DATA, how many more
bytes complete the message begun (what net/lowat.py lets the kernel wait for)."""

from __future__ import annotations

from tests.core.test_wire import drain, make_pair, new_conn
from torrentfs.core.wire import Have, Piece


def test_missing_counts_down_a_block_arriving_in_segments():
    a, b = make_pair()
    wire_bytes = a.send(Piece(3, 0, bytes(16384)))
    assert len(wire_bytes) == 4 + 9 + 16384
    assert drain(b) == [] and b.missing == 0  # at a boundary: any byte will do
    b.receive_data(wire_bytes[:2])
    assert drain(b) == [] and b.missing == 0  # its length is not known yet
    b.receive_data(wire_bytes[2:1448])
    assert drain(b) == [] and b.missing == len(wire_bytes) - 1448
    b.receive_data(wire_bytes[1448:-1])
    assert drain(b) == [] and b.missing == 1
    b.receive_data(wire_bytes[-1:] + a.send(Have(2))[:3])
    (piece,) = drain(b)
    assert isinstance(piece, Piece) and b.missing == 0
    b.receive_data(a.send(Have(2))[3:])
    assert drain(b) == [Have(2)] and b.missing == 0


def test_nothing_is_missing_before_the_handshake_is_read():
    a, b = new_conn(), new_conn()
    b.receive_data(a.handshake()[:30])
    assert drain(b) == [] and b.missing == 0
