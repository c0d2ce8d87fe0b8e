"""BEP 52 verification of single 16 KiB blocks, so a read in a v2 torrent waits only
for the blocks it covers, not for its whole piece. Pure.

A v2 piece's hash is the root of the merkle subtree over its blocks (``merkle``):
its node in the file's piece layer, or, for a file of one piece or less, the file's
``pieces root``. To judge one block alone we need its leaf (the SHA-256 it must
have), proved to that piece hash. We ask a peer for all the leaves of the piece in
one hash request: base layer 0, from the piece's first leaf, as many as the piece
has leaves (a power of two: ``blocks_per_piece``, or for a file of one piece the
file's leaves rounded up to a power of two), and no proof layers. The answer's
hashes are the whole subtree's bottom layer (padding leaves past the file's end
included, as zero hashes), so their merkle root must be the piece hash we already
trust; nothing else is needed, and from then on each block of that piece is
checked on its own with one SHA-256. libtorrent 2.0 answers such requests (for a
16 MiB piece: 1,024 hashes, 32 KiB) from any file it seeds.

A file of one block needs no request: its root is that block's leaf. Pieces not
judged block by block: those of torrents whose pieces are one block long, and a
hybrid's pieces whose file has no piece layer (only their SHA-1 judges them).

:class:`BlockVerifier` keeps which requests went to which peer, takes an answer only
if it was asked of that peer and proves to the piece hash (``HashError`` otherwise:
the shell drops that peer), lets a reject or a peer leaving give the piece back to
ask elsewhere, and checks blocks against the leaves it holds (at most
``MAX_PIECES`` pieces' worth, least recently used out first).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Hashable

from torrentfs.core import merkle
from torrentfs.core.messages import Hashes, HashReject, HashRequest

__all__ = ["BlockVerifier", "HashError", "Plan", "MAX_PIECES"]

#: Pieces whose leaves are kept (LRU): 32 KiB each for 16 MiB pieces.
MAX_PIECES = 256

H = merkle.HASH_SIZE
BLOCK = merkle.BLOCK_SIZE


class HashError(Exception):
    """A peer's hashes answer is unsolicited, malformed, or does not prove to the
    piece hash; ``str()`` says which (a close reason)."""


@dataclass(frozen=True)
class Plan:
    """How piece ``index``'s blocks are judged alone."""

    index: int
    root: bytes          # the file's pieces root (the request names it)
    first_leaf: int      # the piece's first leaf in the file's leaf layer
    width: int           # leaves asked for (a power of two)
    expected: bytes      # the root those leaves must climb to
    file_bytes: int      # bytes of the file in the piece (the rest is padding)

    def request(self) -> HashRequest:
        return HashRequest(self.root, 0, self.first_leaf, self.width, 0)


class BlockVerifier:
    """Per-block verification for one v2 torrent (``metainfo_v2.V2Info``); peers are
    any hashable keys (see the module docstring)."""

    def __init__(self, v2, max_pieces: int = MAX_PIECES) -> None:
        self.v2 = v2
        self.max_pieces = max_pieces
        self._plans: dict[int, Plan | None] = {}
        self._leaves: OrderedDict[int, list[bytes]] = OrderedDict()
        # Requests out: peer -> {request: piece index}; and piece -> peers asked.
        self._asked: dict[Hashable, dict[HashRequest, int]] = {}
        self._asking: dict[int, dict[Hashable, float]] = {}
        self._refused: dict[int, set[Hashable]] = {}

    # -- what a piece needs -----------------------------------------------------------

    def plan(self, index: int) -> Plan | None:
        """How piece ``index``'s blocks are judged alone; None when they are not
        (a piece of one block, a file without a known piece hash, padding only)."""
        if index in self._plans:
            return self._plans[index]
        plan = None
        v2 = self.v2
        if 0 <= index < v2.num_pieces and v2.piece_length > BLOCK:
            f, n, size = v2.piece_file(index)
            expected = v2.expected(index)
            root = v2.roots[f]
            length = v2.lengths[f]
            if expected is not None and root is not None:
                if length > v2.piece_length:
                    width = merkle.blocks_per_piece(v2.piece_length)
                else:
                    width = merkle.next_pow2(merkle.num_blocks(length))
                plan = Plan(index, root, n * merkle.blocks_per_piece(v2.piece_length),
                            width, expected, size)
        self._plans[index] = plan
        return plan

    def has_leaves(self, index: int) -> bool:
        return self._known(index) is not None

    def _known(self, index: int) -> list[bytes] | None:
        leaves = self._leaves.get(index)
        if leaves is None:
            plan = self.plan(index)
            if plan is not None and plan.width == 1:  # a one-block file: its root
                leaves = [plan.expected]
        return leaves

    def asking(self, index: int) -> dict[Hashable, float]:
        """The peers asked for piece ``index``'s leaves and not answered yet (and
        when they were asked)."""
        return self._asking.get(index, {})

    def refused_by(self, index: int) -> set[Hashable]:
        return self._refused.get(index, set())

    # -- asking peers -----------------------------------------------------------------

    def ask(self, peer: Hashable, index: int, now: float) -> HashRequest | None:
        """The request to send ``peer`` for piece ``index``'s leaves, recorded as
        asked; None if there is nothing to ask (no plan, leaves known, or already
        asked of that peer)."""
        plan = self.plan(index)
        if plan is None or self.has_leaves(index):
            return None
        req = plan.request()
        mine = self._asked.setdefault(peer, {})
        if req in mine:
            return None
        mine[req] = index
        self._asking.setdefault(index, {})[peer] = now
        return req

    def received(self, peer: Hashable, msg: Hashes) -> int:
        """Take an answer: returns the piece whose leaves are now known. Raises
        ``HashError`` when it was not asked of this peer, or is malformed, or does
        not climb to the piece hash (the piece is then free to ask elsewhere)."""
        req = HashRequest(msg.pieces_root, msg.base_layer, msg.index, msg.length,
                          msg.proof_layers)
        index = self._asked.get(peer, {}).pop(req, None)
        if index is None:
            raise HashError("sent hashes we never asked for")
        self._done_asking(index, peer)
        plan = self.plan(index)
        data = msg.hashes
        if len(data) != plan.width * H:
            raise HashError(f"sent {len(data)} bytes of hashes for {plan.width} leaves")
        leaves = [bytes(data[i:i + H]) for i in range(0, len(data), H)]
        if merkle.merkle_root(leaves, plan.width) != plan.expected:
            raise HashError(f"sent block hashes of piece {index} that do not match it")
        if index not in self._leaves:
            self._leaves[index] = leaves
            while len(self._leaves) > self.max_pieces:
                self._leaves.popitem(last=False)
        return index

    def rejected(self, peer: Hashable, msg: HashReject) -> int | None:
        """The peer refused a request: the piece it was for (to ask another peer),
        or None if we never asked it that."""
        req = HashRequest(msg.pieces_root, msg.base_layer, msg.index, msg.length,
                          msg.proof_layers)
        index = self._asked.get(peer, {}).pop(req, None)
        if index is None:
            return None
        self._done_asking(index, peer)
        self._refused.setdefault(index, set()).add(peer)
        return index

    def peer_left(self, peer: Hashable) -> list[int]:
        """Forget a peer: the pieces it was asked for (to ask another peer)."""
        pieces = list(self._asked.pop(peer, {}).values())
        for index in pieces:
            self._done_asking(index, peer)
        for refused in self._refused.values():
            refused.discard(peer)
        return pieces

    def expire(self, now: float, timeout: float) -> list[tuple[Hashable, int]]:
        """Requests unanswered for ``timeout`` seconds, as ``(peer, piece)``: no
        longer counted as out (an answer that still comes is taken)."""
        late = [(peer, index) for index, peers in self._asking.items()
                for peer, since in peers.items() if now - since >= timeout]
        for peer, index in late:
            self._asking[index].pop(peer, None)
            if not self._asking[index]:
                del self._asking[index]
        return late

    def _done_asking(self, index: int, peer: Hashable) -> None:
        peers = self._asking.get(index)
        if peers is not None:
            peers.pop(peer, None)
            if not peers:
                del self._asking[index]

    # -- judging blocks ---------------------------------------------------------------

    def check(self, index: int, begin: int, data) -> bool | None:
        """Whether a block of piece ``index`` at ``begin`` is right; None when its
        leaf is not known. Only the file's bytes are judged: the part of a block
        past the file's end (padding) must be zeros."""
        leaves = self._known(index)
        if leaves is None:
            return None
        plan = self._plans[index]
        if begin % BLOCK or begin < 0:
            return False
        view = memoryview(data).cast("B")
        real = max(0, min(view.nbytes, plan.file_bytes - begin))
        if real == 0:
            return view.nbytes <= BLOCK and not any(view)
        b = begin // BLOCK
        if view.nbytes > BLOCK or b >= plan.width:
            return False
        if any(view[real:]):
            return False
        if index in self._leaves:
            self._leaves.move_to_end(index)
        return merkle.sha256(view[:real]) == leaves[b]

    def forget(self, index: int) -> None:
        """The piece is verified whole: its leaves are no longer needed."""
        self._leaves.pop(index, None)
        self._refused.pop(index, None)
