"""core.blockverify: a v2 piece's leaves asked of a peer, proved to the piece hash,
then each 16 KiB block judged alone; and what a hostile peer could send instead
(unsolicited hashes, wrong counts, leaves that do not climb to the piece hash,
rejects, leaving), on uneven last pieces, one-block and one-piece files."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from torrentfs.core import merkle
from torrentfs.core.blockverify import BlockVerifier, HashError
from torrentfs.core.messages import Hashes, HashReject
from torrentfs.core.metainfo import parse
from torrentfs.disk.create import create_torrent

B = merkle.BLOCK_SIZE
PL = 4 * B  # 4 blocks a piece


@pytest.fixture
def made(tmp_path):
    """A v2 torrent of files of uneven sizes (several pieces with a short last one,
    one piece of 3 blocks, one block, a short block, empty), and their bytes."""
    rng = random.Random(14)
    sizes = {"a.bin": 9 * B + 100, "b.bin": 3 * B - 5, "c.bin": B, "d.bin": 700, "e.bin": 0}
    data = {}
    folder = tmp_path / "t"
    folder.mkdir()
    for name, size in sizes.items():
        data[name] = rng.randbytes(size)
        (folder / name).write_bytes(data[name])
    meta = parse(create_torrent(folder, piece_length=PL, version="v2"))
    return meta, data


def leaves_answer(meta, data, req) -> Hashes:
    """What an honest peer answers: the leaves (zero past the file's end)."""
    name = next(f.path[-1] for f, r in zip(meta.files, meta.v2.roots) if r == req.pieces_root)
    leaves = merkle.leaf_hashes(data[name])
    run = [leaves[i] if i < len(leaves) else merkle.ZERO
           for i in range(req.index, req.index + req.length)]
    return Hashes(req.pieces_root, req.base_layer, req.index, req.length, req.proof_layers,
                  b"".join(run))


def piece_bytes(meta, data, index: int) -> bytes:
    f, n, size = meta.v2.piece_file(index)
    chunk = data[meta.files[f].path[-1]][n * PL:n * PL + size]
    return chunk + bytes(PL - len(chunk))  # padding after the file, as in the stream


def pieces_of(meta, name: str) -> list[int]:
    v2 = meta.v2
    return [i for i in range(v2.num_pieces)
            if meta.files[v2.piece_file(i)[0]].path[-1] == name]


def test_every_block_of_every_piece_is_judged_alone(made):
    meta, data = made
    bv = BlockVerifier(meta.v2)
    for index in range(meta.v2.num_pieces):
        plan = bv.plan(index)
        name = meta.files[meta.v2.piece_file(index)[0]].path[-1]
        if len(data[name]) <= B:  # one block: the file's root is its leaf
            assert plan.width == 1 and bv.has_leaves(index) and bv.ask("p", index, 0) is None
        else:
            req = bv.ask("p", index, 0.0)
            assert (req.base_layer, req.proof_layers, req.length) == (0, 0, plan.width)
            assert bv.received("p", leaves_answer(meta, data, req)) == index
        piece = piece_bytes(meta, data, index)
        for begin in range(0, PL, B):
            block = piece[begin:begin + B]
            assert bv.check(index, begin, block) is True, (index, begin)
            if begin < plan.file_bytes:
                bad = bytes([block[0] ^ 1]) + block[1:]
                assert bv.check(index, begin, bad) is False


def test_the_one_piece_file_asks_its_leaves_rounded_to_a_power_of_two(made):
    meta, data = made
    (index,) = pieces_of(meta, "b.bin")
    bv = BlockVerifier(meta.v2)
    req = bv.ask("p", index, 0.0)
    assert (req.index, req.length) == (0, 4)  # 3 blocks -> 4 leaves, root = pieces root
    assert bv.plan(index).expected == meta.v2.roots[meta.v2.piece_file(index)[0]]


def test_uneven_last_piece_keeps_its_padding_leaves_and_zero_tail(made):
    meta, data = made
    last = pieces_of(meta, "a.bin")[-1]  # 1 block + 100 bytes of the file's 9 blocks
    bv = BlockVerifier(meta.v2)
    req = bv.ask("p", last, 0.0)
    assert (req.index, req.length) == (8, 4)
    bv.received("p", leaves_answer(meta, data, req))
    piece = piece_bytes(meta, data, last)
    assert bv.check(last, B, piece[B:2 * B]) is True       # 100 bytes, then padding
    assert bv.check(last, B, piece[B:B + 100]) is True      # the file's bytes alone
    assert bv.check(last, B, piece[B:B + 99]) is False      # one short
    dirty = piece[B:B + 100] + b"\x01" + bytes(B - 101)
    assert bv.check(last, B, dirty) is False                # padding must be zeros
    assert bv.check(last, 2 * B, bytes(B)) is True          # padding block: zeros only
    assert bv.check(last, 2 * B, b"\x01" + bytes(B - 1)) is False


def test_no_leaves_no_verdict_and_bad_offsets_fail(made):
    meta, data = made
    bv = BlockVerifier(meta.v2)
    assert bv.check(0, 0, bytes(B)) is None
    req = bv.ask("p", 0, 0.0)
    bv.received("p", leaves_answer(meta, data, req))
    block = data["a.bin"][:B]
    assert bv.check(0, 1, block) is False
    assert bv.check(0, -B, block) is False
    assert bv.check(0, 0, block + b"x") is False  # longer than a block


def test_unsolicited_and_answered_twice_are_refused(made):
    meta, data = made
    bv = BlockVerifier(meta.v2)
    req = bv.plan(0).request()
    with pytest.raises(HashError, match="never asked"):
        bv.received("p", leaves_answer(meta, data, req))
    bv.ask("p", 0, 0.0)
    with pytest.raises(HashError, match="never asked"):  # asked of another peer
        bv.received("q", leaves_answer(meta, data, req))
    bv.received("p", leaves_answer(meta, data, req))
    with pytest.raises(HashError, match="never asked"):
        bv.received("p", leaves_answer(meta, data, req))
    assert bv.ask("p", 0, 1.0) is None  # known: nothing to ask


@pytest.mark.parametrize("mangle", [
    lambda h: h[:-32],                               # one hash short
    lambda h: h + bytes(32),                         # one too many
    lambda h: h[:-1],                                # not whole hashes
    lambda h: bytes([h[0] ^ 1]) + h[1:],             # a leaf flipped
    lambda h: h[32:64] + h[:32] + h[64:],            # two leaves swapped
    lambda h: bytes(len(h)),                         # all zero
])
def test_leaves_that_do_not_prove_are_refused_and_asked_again(made, mangle):
    meta, data = made
    bv = BlockVerifier(meta.v2)
    req = bv.ask("p", 1, 0.0)
    good = leaves_answer(meta, data, req)
    with pytest.raises(HashError):
        bv.received("p", replace(good, hashes=mangle(good.hashes)))
    assert not bv.has_leaves(1) and not bv.asking(1)
    assert bv.check(1, 0, data["a.bin"][PL:PL + B]) is None  # nothing trusted
    req2 = bv.ask("q", 1, 1.0)
    assert bv.received("q", leaves_answer(meta, data, req2)) == 1


def test_reject_and_leaving_give_the_piece_back(made):
    meta, data = made
    bv = BlockVerifier(meta.v2)
    req = bv.ask("p", 0, 0.0)
    assert bv.ask("p", 0, 0.5) is None  # once per peer
    assert bv.rejected("q", HashReject(*vars_of(req))) is None  # not asked of q
    assert bv.rejected("p", HashReject(*vars_of(req))) == 0
    assert bv.refused_by(0) == {"p"} and not bv.asking(0)
    bv.ask("q", 1, 0.0)
    bv.ask("q", 2, 0.0)
    assert sorted(bv.peer_left("q")) == [1, 2]
    assert not bv.asking(1)
    with pytest.raises(HashError):
        bv.received("q", leaves_answer(meta, data, bv.plan(1).request()))


def test_expire_frees_late_requests_but_a_late_answer_is_taken(made):
    meta, data = made
    bv = BlockVerifier(meta.v2)
    req = bv.ask("p", 0, 0.0)
    assert bv.expire(4.0, 5.0) == []
    assert bv.expire(5.0, 5.0) == [("p", 0)]
    assert not bv.asking(0)
    assert bv.received("p", leaves_answer(meta, data, req)) == 0


def test_leaves_kept_are_bounded(made):
    meta, data = made
    bv = BlockVerifier(meta.v2, max_pieces=2)
    for index in (0, 1, 2):
        bv.received("p", leaves_answer(meta, data, bv.ask("p", index, 0.0)))
    assert [bv.has_leaves(i) for i in (0, 1, 2)] == [False, True, True]
    bv.forget(1)
    assert not bv.has_leaves(1)


def vars_of(req):
    return (req.pieces_root, req.base_layer, req.index, req.length, req.proof_layers)



def test_pieces_of_one_block_and_files_without_a_piece_hash_are_not_judged_alone(made):
    from types import SimpleNamespace
    meta, data = made
    one_block_pieces = SimpleNamespace(piece_length=B, num_pieces=3)
    assert BlockVerifier(one_block_pieces).plan(0) is None
    v2 = meta.v2
    no_layer = SimpleNamespace(piece_length=PL, num_pieces=v2.num_pieces, roots=v2.roots,
                               lengths=v2.lengths, piece_file=v2.piece_file,
                               expected=lambda index: None)  # a hybrid without the layer
    bv = BlockVerifier(no_layer)
    assert bv.plan(0) is None and bv.ask("p", 0, 0.0) is None
    assert bv.check(0, 0, data["a.bin"][:B]) is None
    assert BlockVerifier(v2).plan(v2.num_pieces) is None  # past the end
