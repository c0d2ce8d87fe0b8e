"""Uploader.hash_message: BEP 52 hash requests answered from a v2 torrent's piece
layers (proved to the file's root), rejected for a v1 torrent or block hashes, and
hashes nobody asked for dropping the peer."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from torrentfs.core import merkle, wire
from torrentfs.core.metainfo import parse
from torrentfs.core.piecelayers import uncle_count
from torrentfs.core.ratelimit import TokenBucket
from torrentfs.engine.upload import Uploader

DATA = Path(__file__).resolve().parent.parent / "data" / "v2"


class Session:
    def __init__(self):
        self.sent, self.closed = [], None

    def send(self, msg):
        self.sent.append(msg)

    def close(self, reason):
        self.closed = reason


def uploader(name: str) -> Uploader:
    meta = parse((DATA / name).read_bytes())
    return Uploader(SimpleNamespace(meta=meta), TokenBucket(0))


def test_piece_layer_request_answered_with_a_proof_to_the_root():
    up = uploader("multi-v2.torrent")
    v2 = up.torrent.meta.v2
    (root,) = v2.piece_layers  # a.bin: 4 pieces of 32 KiB, base layer 1
    s = Session()
    up.hash_message(s, wire.HashRequest(root, 1, 0, 2, 1))
    (ans,) = s.sent
    assert isinstance(ans, wire.Hashes)
    hashes = [ans.hashes[i:i + 32] for i in range(0, len(ans.hashes), 32)]
    assert len(hashes) == 2 + uncle_count(2, 1)
    assert b"".join(hashes[:2]) == v2.piece_layers[root][:64]
    assert merkle.verify_proof(merkle.sha256(hashes[0] + hashes[1]), 0, hashes[2:], root)


def test_requests_we_cannot_answer_are_rejected():
    up = uploader("multi-v2.torrent")
    (root,) = up.torrent.meta.v2.piece_layers
    s = Session()
    for req in (wire.HashRequest(root, 0, 0, 2, 0), wire.HashRequest(bytes(32), 1, 0, 2, 0)):
        up.hash_message(s, req)
    assert [type(m) for m in s.sent] == [wire.HashReject, wire.HashReject]
    assert s.closed is None
    v1 = Uploader(SimpleNamespace(meta=SimpleNamespace(v2=None)), TokenBucket(0))
    v1.hash_message(s, wire.HashRequest(root, 1, 0, 2, 0))
    assert isinstance(s.sent[-1], wire.HashReject)


def test_unsolicited_hashes_drop_the_peer_and_a_stray_reject_does_not():
    up = uploader("multi-v2.torrent")
    s = Session()
    up.hash_message(s, wire.HashReject(bytes(32), 1, 0, 2, 0))
    assert s.closed is None
    up.hash_message(s, wire.Hashes(bytes(32), 1, 0, 2, 0, bytes(64)))
    assert s.closed == "sent hashes we never asked for"
