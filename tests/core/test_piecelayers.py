"""core.piecelayers: a HashServer answering from piece layers, a LayerFetch taking
those answers, and everything a hostile peer could send instead (unsolicited hashes,
wrong counts, bad proofs, rejects, leaving)."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import pytest

from torrentfs.core import merkle
from torrentfs.core.messages import Hashes, HashReject, HashRequest
from torrentfs.core.piecelayers import RUN, HashServer, LayerFetch, uncle_count

PL = 4 * merkle.BLOCK_SIZE  # base layer 2


def layer_of(pieces: int, seed: int = 0) -> list[bytes]:
    return [merkle.sha256(b"%d-%d" % (seed, i)) for i in range(pieces)]


def torrent(*sizes: int):
    """A fake V2Info with one piece layer per file of ``sizes`` pieces."""
    layers, needs = {}, []
    for seed, pieces in enumerate(sizes):
        layer = layer_of(pieces, seed)
        root = merkle.root_from_piece_layer(layer, PL)
        layers[root] = b"".join(layer)
        needs.append((root, pieces * PL - 7))
    return SimpleNamespace(piece_length=PL, piece_layers=layers), needs


def run_fetch(fetch: LayerFetch, server: HashServer, peer="p") -> None:
    while (req := fetch.next_request(peer)) is not None or fetch.outstanding(peer):
        if req is None:
            break
        answer = server.answer(req)
        assert isinstance(answer, Hashes), (req, answer)
        assert fetch.received(peer, answer)


@pytest.mark.parametrize("sizes", [(2,), (3,), (5, 8), (RUN,), (RUN + 1,), (3 * RUN + 77, 2)])
def test_fetch_gets_every_layer_from_a_server(sizes):
    v2, needs = torrent(*sizes)
    fetch = LayerFetch(PL, needs)
    server = HashServer(v2)
    for _ in range(10):
        run_fetch(fetch, server)
    assert fetch.done
    assert fetch.layers() == v2.piece_layers


def test_requests_are_runs_of_512_with_uncles_to_the_root():
    _, needs = torrent(RUN + 1)
    fetch = LayerFetch(PL, needs)
    reqs = [fetch.next_request("p", limit=9) for _ in range(2)]
    assert [(r.base_layer, r.index, r.length, r.proof_layers) for r in reqs] == [
        (2, 0, RUN, 9), (2, RUN, 1, 9)]  # depth 10 above the piece layer
    assert uncle_count(RUN, 9) == 1 and uncle_count(1, 9) == 10
    assert fetch.next_request("p") is None  # nothing left to hand out


def test_answer_layout_matches_bep52():
    v2, needs = torrent(5)
    (root, _), = needs
    layer = layer_of(5)
    ans = HashServer(v2).answer(HashRequest(root, 2, 4, 2, 2))
    hashes = [ans.hashes[i:i + 32] for i in range(0, len(ans.hashes), 32)]
    # Nodes 4 and 5 (5 is padding: the root of an all-zero piece), then the uncles
    # above their pair: level 1 (nodes 6-7, padding) ... up to below the root.
    assert hashes[0] == layer[4] and hashes[1] == merkle.pad_hash(2)
    assert len(hashes) == 2 + uncle_count(2, 2) == 4
    assert merkle.verify_proof(merkle.sha256(hashes[0] + hashes[1]), 2, hashes[2:], root)


def test_server_rejects_what_it_cannot_answer():
    v2, needs = torrent(5)
    (root, _), = needs
    server = HashServer(v2)
    for req in [HashRequest(bytes(32), 2, 0, 2, 0),      # unknown root
                HashRequest(root, 0, 0, 2, 0),           # block hashes: we have none
                HashRequest(root, 3, 0, 2, 0),           # not the piece layer
                HashRequest(root, 2, 8, 8, 0),           # past the tree
                HashRequest(root, 2, 0, 2, 5)]:          # more proof than the tree has
        assert server.answer(req) == HashReject(req.pieces_root, req.base_layer, req.index,
                                                req.length, req.proof_layers)


def test_unsolicited_and_repeated_hashes_are_refused():
    v2, needs = torrent(3)
    fetch, server = LayerFetch(PL, needs), HashServer(v2)
    req = fetch.next_request("a")
    good = server.answer(req)
    assert not fetch.received("b", good)  # asked of a, not b
    assert fetch.received("a", good)
    assert not fetch.received("a", good)  # already answered
    assert fetch.done


@pytest.mark.parametrize("corrupt", [
    lambda h: replace(h, hashes=bytes([h.hashes[0] ^ 1]) + h.hashes[1:]),   # a base hash
    lambda h: replace(h, hashes=h.hashes[:-32] + merkle.sha256(b"x")),      # an uncle
    lambda h: replace(h, hashes=h.hashes[:-32]),                            # one short
    lambda h: replace(h, hashes=h.hashes + merkle.ZERO),                    # one extra
])
def test_bad_proofs_are_refused_and_the_run_asked_again(corrupt):
    v2, needs = torrent(RUN + 3)
    fetch, server = LayerFetch(PL, needs), HashServer(v2)
    req = fetch.next_request("evil")
    assert not fetch.received("evil", corrupt(server.answer(req)))
    assert not fetch.done
    run_fetch(fetch, server, "honest")
    run_fetch(fetch, server, "honest")
    assert fetch.done and fetch.layers() == v2.piece_layers


def test_rejects_and_departures_move_runs_to_other_peers():
    v2, needs = torrent(RUN + 3)
    fetch, server = LayerFetch(PL, needs), HashServer(v2)
    r1 = fetch.next_request("a")
    r2 = fetch.next_request("a")
    assert fetch.rejected("a", HashReject(r1.pieces_root, r1.base_layer, r1.index, r1.length,
                                          r1.proof_layers))
    assert not fetch.rejected("a", HashReject(bytes(32), 2, 0, 2, 0))  # never asked
    assert fetch.next_request("a") is None      # a refused the only pending run
    assert fetch.stuck(["a"])                   # every pending run refused by a
    assert not fetch.stuck(["a", "b"])
    fetch.peer_left("a")
    assert fetch.stuck(["a"]) is False          # r2 is pending again, a never refused it
    run_fetch(fetch, server, "b")
    assert fetch.done and fetch.layers() == v2.piece_layers
    assert r2 is not None
