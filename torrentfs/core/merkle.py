"""BEP 52 merkle trees: SHA-256 over 16 KiB blocks, one tree per file. Pure.

The shape of a file's tree (BEP 52, "File tree" and "piece layers"):

* The leaves are the SHA-256 of each 16 KiB block of the file (the last block may
  be short: it is hashed as it is, never padded with bytes).
* The leaf layer is padded with zero hashes (32 zero bytes) to a power of two
  leaves; each upper node is the SHA-256 of its two children concatenated. A
  padding node above the leaves is therefore the root of an all-zero subtree
  (``pad_hash(height)``), not 32 zero bytes.
* The root is the file's ``pieces root``. An empty file has no tree and no root.
* The *piece layer* is the layer whose nodes each cover one piece
  (``piece_length / 16 KiB`` leaves). A file longer than one piece lists its
  piece layer in the torrent's ``piece layers`` (only the real pieces, not the
  padding nodes); a file of one piece or less has none: its root is its only
  piece hash, and that root is taken over the file's blocks padded to a power of
  two, NOT to a whole piece.

Heights count from the leaves: height 0 is the leaf layer, height ``h`` nodes cover
``2**h`` blocks. Indexes within a layer count from 0 at the file's start.

Proofs are uncle hashes, from the bottom up: to check node ``i`` at height ``h`` you
need its sibling at every height from ``h`` to just below the root.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Iterable, Sequence

__all__ = ["BLOCK_SIZE", "HASH_SIZE", "ZERO", "sha256", "pad_hash", "leaf_hashes",
           "next_pow2", "log2", "merkle_root", "tree_layers", "node", "proof", "root_from_proof",
           "verify_proof", "piece_layer", "root_from_piece_layer", "piece_hash",
           "file_root", "blocks_per_piece", "num_blocks"]

BLOCK_SIZE = 16384
HASH_SIZE = 32
ZERO = bytes(HASH_SIZE)


def sha256(data) -> bytes:
    return hashlib.sha256(data).digest()


def next_pow2(n: int) -> int:
    """The smallest power of two >= ``n`` (1 for n <= 1)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def log2(n: int) -> int:
    """log2 of a power of two; ValueError for anything else."""
    if n <= 0 or n & (n - 1):
        raise ValueError(f"{n} is not a power of two")
    return n.bit_length() - 1


@lru_cache(maxsize=64)
def pad_hash(height: int) -> bytes:
    """The root of a subtree of ``2**height`` zero leaves (ZERO at height 0)."""
    if height < 0:
        raise ValueError("negative height")
    h = ZERO
    for _ in range(height):
        h = sha256(h + h)
    return h


def num_blocks(length: int) -> int:
    """How many 16 KiB blocks (leaves) a file of ``length`` bytes has."""
    return -(-length // BLOCK_SIZE)


def blocks_per_piece(piece_length: int) -> int:
    """Leaves under one piece-layer node. v2 piece lengths are powers of two of at
    least 16 KiB (ValueError otherwise)."""
    if piece_length < BLOCK_SIZE:
        raise ValueError(f"piece length {piece_length} is under 16 KiB")
    log2(piece_length)
    return piece_length // BLOCK_SIZE


def leaf_hashes(data) -> list[bytes]:
    """SHA-256 of each 16 KiB block of ``data`` (the last may be short); [] if empty."""
    view = memoryview(data).cast("B")
    return [sha256(view[i:i + BLOCK_SIZE]) for i in range(0, view.nbytes, BLOCK_SIZE)]


def _parent_layer(layer: Sequence[bytes], pad: bytes) -> list[bytes]:
    if len(layer) % 2:
        layer = [*layer, pad]
    return [sha256(layer[i] + layer[i + 1]) for i in range(0, len(layer), 2)]


def merkle_root(hashes: Sequence[bytes], width: int | None = None, height: int = 0) -> bytes:
    """The root over ``hashes`` (nodes at ``height``), padded to ``width`` nodes
    (a power of two >= len(hashes); default the smallest one) with ``pad_hash(height)``."""
    if width is None:
        width = next_pow2(len(hashes))
    if len(hashes) > width or width & (width - 1):
        raise ValueError(f"width {width} cannot hold {len(hashes)} hashes")
    if not hashes:
        return pad_hash(height + log2(width))
    layer = list(hashes)
    levels = log2(width)
    for level in range(levels):
        layer = _parent_layer(layer, pad_hash(height + level))
    return layer[0]


def tree_layers(leaves: Sequence[bytes], base: int = 0) -> list[list[bytes]]:
    """Every layer of the tree over ``leaves`` (nodes at height ``base``: 0 for block
    hashes, log2(blocks per piece) for a piece layer), bottom (unpadded) to top
    (``[root]``). ``layers[h]`` holds only the nodes with at least one real leaf."""
    if not leaves:
        raise ValueError("an empty file has no tree")
    layers = [list(leaves)]
    depth = log2(next_pow2(len(leaves)))
    for level in range(depth):
        layers.append(_parent_layer(layers[-1], pad_hash(base + level)))
    return layers


def node(layers: Sequence[Sequence[bytes]], level: int, index: int, base: int = 0) -> bytes:
    """Node ``index`` of ``layers[level]``, or the padding hash past its real nodes."""
    layer = layers[level]
    return layer[index] if index < len(layer) else pad_hash(base + level)


def proof(layers: Sequence[Sequence[bytes]], height: int, index: int,
          top: int | None = None, base: int = 0) -> list[bytes]:
    """The uncle hashes proving node ``index`` of ``layers[height]`` up to the node of
    ``layers[top]`` (default the root): its sibling at each level ``height..top-1``.
    ``base`` is the height of ``layers[0]`` (see ``tree_layers``)."""
    top = len(layers) - 1 if top is None else top
    out = []
    for h in range(height, top):
        out.append(node(layers, h, index ^ 1, base))
        index >>= 1
    return out


def root_from_proof(node: bytes, index: int, uncles: Iterable[bytes]) -> bytes:
    """Climb from ``node`` (the ``index``-th of its layer) through ``uncles``."""
    for uncle in uncles:
        node = sha256(uncle + node) if index & 1 else sha256(node + uncle)
        index >>= 1
    return node


def verify_proof(node: bytes, index: int, uncles: Sequence[bytes], root: bytes) -> bool:
    """True when ``node`` with ``uncles`` climbs to ``root``. The index must fit under
    it: 0 <= index < 2**len(uncles)."""
    if not 0 <= index < 1 << len(uncles):
        return False
    if any(len(u) != HASH_SIZE for u in uncles) or len(node) != HASH_SIZE:
        return False
    return root_from_proof(node, index, uncles) == root


def piece_layer(leaves: Sequence[bytes], piece_length: int) -> list[bytes]:
    """The piece layer over a file's leaves: one hash per (real) piece, the last
    piece's leaves padded with zero hashes to a whole piece."""
    per = blocks_per_piece(piece_length)
    return [merkle_root(leaves[i:i + per], per) for i in range(0, len(leaves), per)]


def root_from_piece_layer(layer: Sequence[bytes], piece_length: int) -> bytes:
    """The file root a (complete) piece layer climbs to: the layer padded to a power
    of two with roots of all-zero pieces."""
    return merkle_root(layer, height=log2(blocks_per_piece(piece_length)))


def piece_hash(data, file_length: int, piece_length: int) -> bytes:
    """The hash a piece's data (only the file's own bytes in it, no padding) must have:
    its piece-layer node for a file longer than one piece, else the file's root."""
    leaves = leaf_hashes(data)
    if file_length > piece_length:
        return merkle_root(leaves, blocks_per_piece(piece_length))
    return merkle_root(leaves)


def file_root(data, piece_length: int | None = None) -> tuple[bytes | None, list[bytes]]:
    """``(pieces root, piece layer)`` of a whole file's bytes: (None, []) for an empty
    file; the piece layer is [] for a file of at most one piece (or no piece_length)."""
    leaves = leaf_hashes(data)
    if not leaves:
        return None, []
    root = merkle_root(leaves)
    if piece_length is None or len(memoryview(data).cast("B")) <= piece_length:
        return root, []
    return root, piece_layer(leaves, piece_length)
