"""BEP 52 hash requests: answering them from a torrent's piece layers (seeding), and
getting the piece layers of a magnet link's torrent from peers. Pure.

The messages (``messages.HashRequest`` / ``Hashes`` / ``HashReject``) name a file by
its ``pieces root``, a layer of its merkle tree (``base_layer``: 0 is the 16 KiB
blocks, ``log2(piece_length / 16 KiB)`` the piece layer), a run of ``length`` nodes
of it from ``index`` (a power of two, index a multiple of it), and ``proof_layers``.
A ``Hashes`` answer carries those nodes (padding nodes past the file's end included,
as the padding hash of that layer), then the uncle hashes proving the subtree they
form: from that subtree's own level up, ``proof_layers - log2(length) + 1`` of them
(none when that is not positive). This is how libtorrent 2.0 reads and writes them.

What we hold is the piece layer of every file longer than a piece (the torrent's
``piece layers``), so :class:`HashServer` answers requests at the piece layer and
rejects the rest (block hashes: libtorrent asks for those only to find the bad block
of a piece that failed, and a reject is what it expects from a peer without them).

:class:`LayerFetch` asks peers for the piece layers a v2 torrent made from a magnet
link lacks, in runs of at most 512 hashes (libtorrent's unit) with the uncles up to
the file's root, and takes an answer only if it was asked of that peer, has the
right number of hashes and proves to the root. A run the peer rejects, or whose
peer leaves, is asked of another peer. The whole layer is checked once more against
the root when the torrent is parsed.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Hashable

from torrentfs.core import merkle
from torrentfs.core.messages import Hashes, HashReject, HashRequest

__all__ = ["HashServer", "LayerFetch", "uncle_count", "piece_layer_base", "RUN"]

#: Piece-layer hashes asked for in one request (libtorrent asks and answers so).
RUN = 512
#: Files whose upper tree layers a server keeps built (LRU).
CACHED_TREES = 8

H = merkle.HASH_SIZE


def piece_layer_base(piece_length: int) -> int:
    """The ``base_layer`` of the piece layer."""
    return merkle.log2(merkle.blocks_per_piece(piece_length))


def uncle_count(length: int, proof_layers: int) -> int:
    """How many uncle hashes follow the ``length`` base hashes of an answer."""
    return max(0, proof_layers - merkle.log2(length) + 1)


def _split(data: bytes) -> list[bytes]:
    return [data[i:i + H] for i in range(0, len(data), H)]


class HashServer:
    """Answers hash requests from the piece layers of one v2 torrent (``V2Info``)."""

    def __init__(self, v2) -> None:
        self.v2 = v2
        self.base = piece_layer_base(v2.piece_length)
        self._trees: OrderedDict[bytes, list[list[bytes]]] = OrderedDict()

    def answer(self, req: HashRequest) -> Hashes | HashReject:
        """The ``Hashes`` for ``req``, or a ``HashReject`` when we cannot give them
        (an unknown root, a layer other than the piece layer, a run past the tree)."""
        reject = HashReject(req.pieces_root, req.base_layer, req.index, req.length,
                            req.proof_layers)
        layers = self._tree(req.pieces_root) if req.base_layer == self.base else None
        if layers is None:
            return reject
        depth = len(layers) - 1
        h = merkle.log2(req.length)
        uncles = uncle_count(req.length, req.proof_layers)
        if req.index + req.length > 1 << depth or h + uncles > depth:
            return reject
        nodes = [merkle.node(layers, 0, i, self.base)
                 for i in range(req.index, req.index + req.length)]
        proof = merkle.proof(layers, h, req.index >> h, top=h + uncles, base=self.base)
        return Hashes(req.pieces_root, req.base_layer, req.index, req.length,
                      req.proof_layers, b"".join(nodes + proof))

    def _tree(self, root: bytes) -> list[list[bytes]] | None:
        tree = self._trees.get(root)
        if tree is not None:
            self._trees.move_to_end(root)
            return tree
        layer = self.v2.piece_layers.get(root)
        if layer is None:
            return None
        tree = merkle.tree_layers(_split(layer), self.base)
        self._trees[root] = tree
        while len(self._trees) > CACHED_TREES:
            self._trees.popitem(last=False)
        return tree


@dataclass
class _File:
    length: int
    pieces: int
    depth: int  # levels from the piece layer up to the root
    runs: dict[int, bytes] = field(default_factory=dict)  # index -> real hashes of the run


class LayerFetch:
    """The piece layers of ``needs`` (``[(pieces root, file length)]``) from peers.

    Peers are any hashable keys. ``next_request(peer)`` gives the next request to
    send that peer (None: nothing for it now), ``received(peer, hashes)`` takes an
    answer (False: unsolicited, malformed or not proving to the root: drop the
    peer), ``rejected(peer, reject)`` and ``peer_left(peer)`` put runs back.
    """

    def __init__(self, piece_length: int, needs: list[tuple[bytes, int]]) -> None:
        self.piece_length = piece_length
        self.base = piece_layer_base(piece_length)
        self.files: dict[bytes, _File] = {}
        self.pending: list[HashRequest] = []
        for root, length in needs:
            pieces = -(-length // piece_length)
            depth = merkle.log2(merkle.next_pow2(pieces))
            self.files[root] = _File(length, pieces, depth)
            for index in range(0, pieces, RUN):
                count = min(RUN, merkle.next_pow2(pieces - index))
                # Uncles from the run's subtree up to just below the root.
                self.pending.append(HashRequest(root, self.base, index, count, depth - 1))
        self.asked: dict[Hashable, set[HashRequest]] = {}
        self.refused: dict[HashRequest, set[Hashable]] = {}

    @property
    def done(self) -> bool:
        return not self.pending and not any(self.asked.values())

    def outstanding(self, peer: Hashable) -> int:
        return len(self.asked.get(peer, ()))

    def next_request(self, peer: Hashable, limit: int = 4) -> HashRequest | None:
        """A pending run this peer has not refused, if it has fewer than ``limit`` out."""
        if self.outstanding(peer) >= limit:
            return None
        for i, req in enumerate(self.pending):
            if peer not in self.refused.get(req, ()):
                del self.pending[i]
                self.asked.setdefault(peer, set()).add(req)
                return req
        return None

    def received(self, peer: Hashable, msg: Hashes) -> bool:
        req = HashRequest(msg.pieces_root, msg.base_layer, msg.index, msg.length,
                          msg.proof_layers)
        mine = self.asked.get(peer, set())
        if req not in mine:
            return False  # unsolicited (or answered twice)
        mine.discard(req)
        f = self.files[req.pieces_root]
        hashes = _split(msg.hashes)
        uncles = uncle_count(req.length, req.proof_layers)
        subtree = merkle.merkle_root(hashes[:req.length], req.length)
        if (len(msg.hashes) % H or len(hashes) != req.length + uncles
                or not merkle.verify_proof(subtree, req.index >> merkle.log2(req.length),
                                           hashes[req.length:], req.pieces_root)):
            self.pending.append(req)
            return False
        real = min(req.length, f.pieces - req.index)
        f.runs[req.index] = b"".join(hashes[:real])
        return True

    def rejected(self, peer: Hashable, msg: HashReject) -> bool:
        """Put a rejected run back for another peer; False if it was never asked."""
        req = HashRequest(msg.pieces_root, msg.base_layer, msg.index, msg.length,
                          msg.proof_layers)
        mine = self.asked.get(peer, set())
        if req not in mine:
            return False
        mine.discard(req)
        self.refused.setdefault(req, set()).add(peer)
        self.pending.append(req)
        return True

    def peer_left(self, peer: Hashable) -> None:
        self.pending.extend(self.asked.pop(peer, ()))

    def stuck(self, peers) -> bool:
        """True when every pending run was refused by every one of ``peers``."""
        return bool(self.pending) and all(
            set(peers) <= self.refused.get(req, set()) for req in self.pending)

    def layers(self) -> dict[bytes, bytes]:
        """Every file's complete piece layer (only once ``done``)."""
        return {root: b"".join(f.runs[i] for i in sorted(f.runs))
                for root, f in self.files.items()}
