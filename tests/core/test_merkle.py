"""core.merkle: BEP 52 trees, checked against roots and piece layers that
python3-libtorrent 2.0 made (create_torrent with its v2-only flag) for the same bytes."""

from __future__ import annotations

import hashlib

import pytest

from torrentfs.core import merkle
from torrentfs.core.merkle import BLOCK_SIZE, ZERO, sha256


def data(n: int, seed: int) -> bytes:
    return bytes((i * 7 + seed) % 251 for i in range(n))


# (file length, piece length, seed, pieces root, sha256 of the piece layer, pieces in it)
KNOWN = [
    (1, 16384, 1, "4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a", "", 0),
    (16384, 16384, 4, "a2d5df9471ecb6947560e8ac16531483b67d35508c00c2a047f9fc78ed11b29c", "", 0),
    (16385, 16384, 5, "629aa9f15f42e7a553ba0cbba39acdc52f6df5e5127d83fefa908b039dc6c622",
     "629aa9f15f42e7a553ba0cbba39acdc52f6df5e5127d83fefa908b039dc6c622", 2),
    (49152, 65536, 12, "89cbb57e01916d8ebabc8d5ce90da7f0344c2d534ac9aaae72d9d064ca5bce71", "", 0),
    (100000, 32768, 4, "c1221361438373bf8e512a8af2673ad5debbbec74da037e002e4d0b1e8a1109a",
     "1cefb4b05d1e0dce0c3b4db46f3463edb36d78ec91568d71a0230c292cdd8efa", 4),
    (1048577, 65536, 10, "5e42c62f65f5eca11d951f0a2caa67c9053cbbc784ed2027c79da91e04be784e",
     "534c9c0b9d9d3b7bfc028a7a43dba2f8b57e50554cc677370757946942ae77aa", 17),
    (81920, 16384, 7, "a93e1004dd5f4b81c8ac729fa9b90ec0ba750e1eb3b72606d57f9095ed976fd6",
     "8f19f6069a39599a3fd56b150c5f54785d379cf18d96dbb033b885d290edf08d", 5),
    (300000, 262144, 12, "499dab40cb945d8d081d8937f67f5b9e48dc2cf260b5d62b0d1d92852febfb10",
     "499dab40cb945d8d081d8937f67f5b9e48dc2cf260b5d62b0d1d92852febfb10", 2),
]


@pytest.mark.parametrize("length,piece_length,seed,root,layer_sha,pieces", KNOWN)
def test_roots_and_piece_layers_match_libtorrent(length, piece_length, seed, root, layer_sha,
                                                 pieces):
    body = data(length, seed)
    got_root, layer = merkle.file_root(body, piece_length)
    assert got_root.hex() == root
    assert len(layer) == pieces
    if pieces:
        assert hashlib.sha256(b"".join(layer)).hexdigest() == layer_sha
        assert merkle.root_from_piece_layer(layer, piece_length) == got_root
        # Every piece's own hash is its piece-layer node.
        for i, node in enumerate(layer):
            chunk = body[i * piece_length:(i + 1) * piece_length]
            assert merkle.piece_hash(chunk, length, piece_length) == node
    else:
        # A file of one piece: the piece hash is the root itself.
        assert merkle.piece_hash(body, length, piece_length) == got_root


def test_empty_file_has_no_root():
    assert merkle.file_root(b"", 16384) == (None, [])
    assert merkle.leaf_hashes(b"") == []
    with pytest.raises(ValueError):
        merkle.tree_layers([])


def test_one_block_file_root_is_its_block_hash():
    body = b"x" * 100
    assert merkle.file_root(body, 16384)[0] == sha256(body)
    assert merkle.file_root(b"y" * BLOCK_SIZE, 1 << 20)[0] == sha256(b"y" * BLOCK_SIZE)


def test_short_last_block_is_hashed_as_is_not_padded():
    body = b"a" * BLOCK_SIZE + b"b" * 10
    leaves = merkle.leaf_hashes(body)
    assert leaves == [sha256(b"a" * BLOCK_SIZE), sha256(b"b" * 10)]
    assert merkle.file_root(body)[0] == sha256(leaves[0] + leaves[1])


def test_padding_above_the_leaves_is_the_root_of_zero_subtrees():
    assert merkle.pad_hash(0) == ZERO
    assert merkle.pad_hash(1) == sha256(ZERO + ZERO)
    assert merkle.pad_hash(2) == sha256(merkle.pad_hash(1) * 2)
    leaves = [sha256(bytes([i])) for i in range(3)]
    want = sha256(sha256(leaves[0] + leaves[1]) + sha256(leaves[2] + ZERO))
    assert merkle.merkle_root(leaves) == want
    # Five leaves pad to eight: the right half's right quarter is a zero subtree.
    five = [sha256(bytes([i])) for i in range(5)]
    left = merkle.merkle_root(five[:4])
    right = sha256(sha256(five[4] + ZERO) + merkle.pad_hash(1))
    assert merkle.merkle_root(five) == sha256(left + right)


def test_uneven_last_piece_is_padded_to_a_whole_piece():
    piece_length = 4 * BLOCK_SIZE
    body = data(piece_length + BLOCK_SIZE + 5, 3)  # 1 full piece + 2 blocks
    leaves = merkle.leaf_hashes(body)
    layer = merkle.piece_layer(leaves, piece_length)
    assert len(layer) == 2
    assert layer[1] == merkle.merkle_root(leaves[4:], 4)
    assert layer[1] == sha256(sha256(leaves[4] + leaves[5]) + merkle.pad_hash(1))
    # A one-piece file is NOT padded to a piece: only to a power of two blocks.
    small = data(3 * BLOCK_SIZE, 1)
    assert merkle.piece_hash(small, len(small), piece_length) == merkle.merkle_root(
        merkle.leaf_hashes(small), 4)
    two = data(2 * BLOCK_SIZE, 1)
    assert merkle.piece_hash(two, len(two), piece_length) == merkle.merkle_root(
        merkle.leaf_hashes(two), 2)
    assert merkle.piece_hash(two, len(two), piece_length) != merkle.merkle_root(
        merkle.leaf_hashes(two), 4)


def test_piece_layer_pads_with_zero_piece_roots():
    piece_length = 2 * BLOCK_SIZE
    layer = [sha256(b"p0"), sha256(b"p1"), sha256(b"p2")]
    pad = merkle.pad_hash(1)
    want = sha256(sha256(layer[0] + layer[1]) + sha256(layer[2] + pad))
    assert merkle.root_from_piece_layer(layer, piece_length) == want


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 64])
def test_every_leaf_proves_to_the_root_and_nothing_else_does(n):
    leaves = [sha256(i.to_bytes(4, "big")) for i in range(n)]
    layers = merkle.tree_layers(leaves)
    root = merkle.merkle_root(leaves)
    assert layers[-1] == [root]
    for i, leaf in enumerate(leaves):
        uncles = merkle.proof(layers, 0, i)
        assert len(uncles) == merkle.log2(merkle.next_pow2(n))
        assert merkle.verify_proof(leaf, i, uncles, root)
        assert not merkle.verify_proof(sha256(b"forged"), i, uncles, root)
        if uncles:
            assert not merkle.verify_proof(leaf, i ^ 1, uncles, root)  # wrong position
            bad = list(uncles)
            bad[-1] = sha256(bad[-1])
            assert not merkle.verify_proof(leaf, i, bad, root)
            assert not merkle.verify_proof(leaf, i, uncles[:-1], root)
            assert not merkle.verify_proof(leaf, i, [*uncles, ZERO], root)
    # An index beyond what the proof can reach, or a hash of the wrong size, fails.
    assert not merkle.verify_proof(leaves[0], 1 << len(merkle.proof(layers, 0, 0)),
                                   merkle.proof(layers, 0, 0), root)
    assert not merkle.verify_proof(leaves[0][:31], 0, merkle.proof(layers, 0, 0), root)


def test_piece_layer_nodes_prove_to_the_root():
    piece_length = 4 * BLOCK_SIZE
    body = data(11 * BLOCK_SIZE + 7, 9)
    leaves = merkle.leaf_hashes(body)
    layers = merkle.tree_layers(leaves)
    root, layer = merkle.file_root(body, piece_length)
    assert layers[2] == layer
    for i, node in enumerate(layer):
        assert merkle.verify_proof(node, i, merkle.proof(layers, 2, i), root)
    # A block proves to its piece's node with the uncles below the piece layer.
    for b, leaf in enumerate(leaves):
        uncles = merkle.proof(layers, 0, b, top=2)
        assert len(uncles) == 2
        assert merkle.verify_proof(leaf, b % 4, uncles, layer[b // 4])


def test_piece_lengths_must_be_powers_of_two_of_at_least_a_block():
    for bad in (0, 8192, 3 * BLOCK_SIZE):
        with pytest.raises(ValueError):
            merkle.blocks_per_piece(bad)
    assert merkle.blocks_per_piece(1 << 24) == 1024


def test_widths():
    assert [merkle.next_pow2(n) for n in (0, 1, 2, 3, 4, 5, 1023, 1025)] == [
        1, 1, 2, 4, 4, 8, 1024, 2048]
    with pytest.raises(ValueError):
        merkle.merkle_root([ZERO] * 3, 2)
    assert merkle.merkle_root([], 4) == merkle.pad_hash(2)


def test_tree_over_a_piece_layer_pads_with_zero_piece_roots():
    """Layers built on a piece layer (base height 2: four blocks a piece) pad with the
    root of an all-zero piece, and climb to the file's root."""
    piece_length = 4 * BLOCK_SIZE
    body = data(9 * piece_length + 5, 2)
    root, layer = merkle.file_root(body, piece_length)
    layers = merkle.tree_layers(layer, base=2)
    assert layers[-1] == [root]
    assert merkle.node(layers, 0, 10, base=2) == merkle.pad_hash(2)
    for i, h in enumerate(layer):
        assert merkle.verify_proof(h, i, merkle.proof(layers, 0, i, base=2), root)
    # A subtree of 4 piece hashes proves with the uncles above it.
    sub = merkle.merkle_root(layer[4:8])
    assert merkle.verify_proof(sub, 1, merkle.proof(layers, 2, 1, base=2), root)
