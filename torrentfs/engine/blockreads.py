"""Block-level reads of v2 torrents (BEP 52): ``BlockReads``, owned by the read path
(``reads.Reads.blocks``).

In a v1 torrent a read waits for every piece it touches to be whole and hashed: with
16 MiB pieces, 16 MiB for a 64 KiB read. In a v2 torrent each 16 KiB block can be
checked alone once we hold its leaf hash proved to the piece hash
(``core.blockverify``). So a read that would wait for a missing piece of a v2 file
instead:

* asks one peer that has the piece for the piece's leaf hashes (one hash request;
  another peer if it rejects, leaves, or is silent for ``HASH_TIMEOUT`` s; a peer
  whose answer does not prove is dropped);
* raises the piece to NOW as any read does, and tells the picker which blocks it
  needs (``Picker.want_first``): those only while the leaves are known or asked
  for, else those first and then the rest of the piece (the read may have to wait
  for the whole piece: no peer gives the leaves);
* takes each of its blocks as it arrives (``got_block``) or as its leaves arrive
  (the blocks already in the piece's buffer), keeps a copy of those whose SHA-256 is
  their leaf (``VERIFIED_BYTES`` at most, pieces no read waits on out first), and
  returns once every block it covers is verified, or its pieces are whole (then the
  ordinary path reads them: ``read`` returns None). A read that covers a whole
  missing piece waits for it as in v1 (no block is hashed twice).

Nothing unverified is returned: a block is kept only after its hash matched a leaf,
and leaves only after they climbed to the piece hash the torrent's info names. The
whole piece is still verified and written as before; its blocks kept here are let go
then (``piece_arrived``).

What it needs of its torrent: ``meta.v2``, ``geometry``, ``have``, ``picker``,
``sessions``, ``schedule``, ``storage``, ``offload``, ``cache`` and the buffers of
pieces in progress (``_buffers``).
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import trio

from torrentfs.core import wire
from torrentfs.core.blockverify import BlockVerifier, HashError
from torrentfs.core.merkle import BLOCK_SIZE
from torrentfs.core.picker import NOW

log = logging.getLogger("torrentfs.blockreads")

HASH_TIMEOUT = 5.0          # a hash request unanswered this long: ask another peer
VERIFIED_BYTES = 64 << 20   # verified blocks of pieces not yet whole kept at most
POLL = 1.0                  # a waiting read looks again this often (new peers, timeouts)
NOW_SLACK = 0.05            # deadline of a piece a read waits on: now + this


class BlockReads:
    """Block-level reads of one torrent (see the module docstring)."""

    def __init__(self, torrent) -> None:
        self.torrent = torrent
        v2 = getattr(getattr(torrent, "meta", None), "v2", None)
        self.verifier = (BlockVerifier(v2) if v2 is not None
                         and torrent.geometry.piece_length > BLOCK_SIZE else None)
        # Verified blocks of pieces not whole yet: piece -> begin -> bytes.
        self._blocks: OrderedDict[int, dict[int, bytes]] = OrderedDict()
        self.bytes = 0
        # Blocks waiting reads need: piece -> owner -> block numbers.
        self._needs: dict[int, dict[object, range]] = {}
        self._steered: dict[int, bool] = {}  # piece -> whether its reads wanted ``only``
        self._changed = trio.Event()
        self.verified = 0   # blocks verified alone (for status and tests)
        self.served = 0     # reads answered from blocks verified alone

    @property
    def enabled(self) -> bool:
        return self.verifier is not None

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # -- what the torrent tells ---------------------------------------------------------

    def got_block(self, s, index: int, begin: int, data) -> None:
        """A new block of piece ``index`` arrived from ``s`` (in its buffer)."""
        needs = self._needs.get(index)
        if needs and any(begin // BLOCK_SIZE in r for r in needs.values()):
            if self._judge(index, begin, data):
                self._notify()
            elif not self.verifier.has_leaves(index):
                self._ask(index)  # a peer is there now

    def piece_arrived(self, index: int) -> None:
        """The piece is whole, verified and on disk (or could not be written)."""
        blocks = self._blocks.pop(index, None)
        if blocks:
            self.bytes -= sum(len(b) for b in blocks.values())
        if self.verifier is not None:
            self.verifier.forget(index)
        self._notify()

    def changed(self) -> None:
        """Something a waiting read may be waiting for happened."""
        self._notify()

    def hash_message(self, s, msg) -> None:
        """A BEP 52 ``Hashes`` or ``HashReject`` from a peer (the answers to our
        requests for leaves)."""
        v = self.verifier
        if v is None:
            if isinstance(msg, wire.Hashes):
                s.close("sent hashes we never asked for")
            return
        if isinstance(msg, wire.HashReject):
            index = v.rejected(s, msg)
            if index is not None:
                log.info("%r rejected the block hashes of piece %d", s, index)
                self._ask(index)
            return
        try:
            index = v.received(s, msg)
        except HashError as e:
            s.close(str(e))
            self._ask_again()
            return
        needs = self._needs.get(index)
        buf = self.torrent._buffers.get(index)
        if needs and buf is not None:  # blocks that came before their leaves
            g = self.torrent.geometry
            for begin in self.torrent.picker.suppliers(index):
                if any(begin // BLOCK_SIZE in r for r in needs.values()):
                    length = g.block_length(index, begin)
                    self._judge(index, begin, memoryview(buf)[begin:begin + length])
        self._notify()

    def peer_left(self, s) -> None:
        if self.verifier is not None:
            self.verifier.peer_left(s)
            self._ask_again()

    def _ask_again(self) -> None:
        """Every piece a read waits on whose leaves are neither known nor asked
        for: ask (another peer)."""
        for index in list(self._needs):
            self._ask(index)

    # -- reading ------------------------------------------------------------------------

    async def read(self, start: int, size: int, pieces: range, owner: object,
                   timeout: float) -> bytes | None:
        """Bytes ``[start, start+size)`` of the stream once every block they cover
        is verified (alone, or as part of a whole piece), or None when the ordinary
        read path is to read them: the pieces became whole, or a missing one cannot
        be judged block by block. ``owner`` is the read's picker owner (its raises
        are dropped by the caller). Raises ``trio.TooSlowError`` after ``timeout``
        seconds without progress."""
        t = self.torrent
        v = self.verifier
        missing = [i for i in pieces if i not in t.have]
        if v is None or not missing or any(v.plan(i) is None for i in missing):
            return None
        spans = self._spans(start, size, pieces)
        if any(len(spans[i][2]) >= t.geometry.num_blocks(i) for i in missing):
            return None  # it waits for a whole piece anyway: no block hashed twice
        for i in missing:
            self._needs.setdefault(i, {})[owner] = spans[i][2]
        t.picker.raise_priority(owner, missing, NOW, trio.current_time() + NOW_SLACK)
        try:
            for i in missing:
                self._catch_up(i)
                self._ask(i)
            t.schedule()
            progress, since = -1, trio.current_time()
            while True:
                waiting = [i for i in pieces if i not in t.have]
                if not waiting:
                    return None
                done = [i for i in waiting if self._covered(i, spans[i][2])]
                if len(done) == len(waiting):
                    return await self._assemble(spans, pieces)
                now = trio.current_time()
                mark = sum(len(self._blocks.get(i, ())) for i in waiting) - len(waiting)
                if mark != progress:
                    progress, since = mark, now
                elif now - since >= timeout:
                    raise trio.TooSlowError
                for peer, index in v.expire(now, HASH_TIMEOUT):
                    log.info("%r did not answer for the block hashes of piece %d", peer, index)
                for i in waiting:
                    self._ask(i)
                    self._steer(i)
                with trio.move_on_after(min(POLL, max(0.0, since + timeout - now))):
                    await self._changed.wait()
        finally:
            for i in missing:
                needs = self._needs.get(i)
                if needs is not None:
                    needs.pop(owner, None)
                    if not needs:
                        del self._needs[i]
                        self._steered.pop(i, None)

    def _spans(self, start: int, size: int, pieces: range) -> dict[int, tuple[int, int, range]]:
        """Per piece: ``(lo, hi, blocks)``: the range's bytes in it and their blocks."""
        g = self.torrent.geometry
        end = start + size
        out = {}
        for i in pieces:
            base = g.piece_offset(i)
            lo = max(start, base) - base
            hi = min(end, base + g.piece_size(i)) - base
            out[i] = (lo, hi, range(lo // BLOCK_SIZE, -(-hi // BLOCK_SIZE)))
        return out

    def _covered(self, index: int, blocks: range) -> bool:
        have = self._blocks.get(index)
        return have is not None and all(b * BLOCK_SIZE in have for b in blocks)

    async def _assemble(self, spans, pieces: range) -> bytes | None:
        """The bytes, from verified blocks and whole pieces; None if a whole piece
        fails its check on disk (the ordinary path takes over)."""
        t = self.torrent
        parts: dict[int, bytes] = {}
        for i in pieces:  # the blocks first: they may go once their piece is whole
            if i not in t.have:
                lo, hi, blocks = spans[i]
                joined = b"".join(self._blocks[i][b * BLOCK_SIZE] for b in blocks)
                cut = lo - blocks.start * BLOCK_SIZE
                parts[i] = joined[cut:cut + hi - lo]
        for i in pieces:
            if i in parts:
                continue
            if not await t.cache.trust((i,)):
                return None
            lo, hi, _ = spans[i]
            parts[i] = await t.offload(t.storage.read, t.geometry.piece_offset(i) + lo, hi - lo)
        self.served += 1
        return b"".join(parts[i] for i in pieces)

    # -- leaves and blocks -----------------------------------------------------------------

    def _ask(self, index: int) -> None:
        """Ask a peer for the leaves of piece ``index`` unless they are known or
        asked for already: an unchoked peer first, the fastest first."""
        t, v = self.torrent, self.verifier
        if (index in t.have or v.has_leaves(index) or v.asking(index)
                or v.plan(index) is None):
            self._steer(index)
            return
        refused = v.refused_by(index)
        now = trio.current_time()
        peers = [s for s in t.sessions.values()
                 if s.registered and not s.closed and s not in refused
                 and t.picker.peer_has(s, index)]
        peers.sort(key=lambda s: (s.peer_choking, -s.down.rate(now)))
        for s in peers:
            req = v.ask(s, index, now)
            if req is not None:
                s.send(req)
                break
        self._steer(index)

    def _steer(self, index: int) -> None:
        """Tell the picker the blocks reads need of piece ``index``: only those
        while its leaves are known or asked for, else those first (and when that
        changes, let every peer pick)."""
        needs = self._needs.get(index)
        if not needs:
            return
        t, v = self.torrent, self.verifier
        only = v.has_leaves(index) or bool(v.asking(index))
        for owner, blocks in needs.items():
            t.picker.want_first(owner, index, blocks, only)
        if not only and self._steered.get(index):
            t.schedule()
        self._steered[index] = only

    def _catch_up(self, index: int) -> None:
        """Judge the blocks of piece ``index`` that came before a read needed them."""
        t = self.torrent
        buf = t._buffers.get(index)
        needs = self._needs.get(index)
        if buf is None or not needs or not self.verifier.has_leaves(index):
            return
        g = t.geometry
        for begin in t.picker.suppliers(index):
            if any(begin // BLOCK_SIZE in r for r in needs.values()):
                self._judge(index, begin, memoryview(buf)[begin:begin + g.block_length(index, begin)])

    def _judge(self, index: int, begin: int, data) -> bool:
        """Keep a copy of the block if it is verified alone; True if it was. A
        block that fails its leaf is proof its sender sent bad data: banned, and
        the block is fetched again."""
        kept = self._blocks.get(index)
        if kept is not None and begin in kept:
            return False
        verdict = self.verifier.check(index, begin, data)
        if verdict is False:
            t = self.torrent
            sender = t.picker.block_failed(index, begin)
            t.wasted += len(data)
            if sender is not None:
                t.ban(sender, f"sent block {begin} of piece {index}, which fails its "
                      "BEP 52 hash")
            t.schedule()
        if not verdict:
            return False
        block = bytes(data)
        self._blocks.setdefault(index, {})[begin] = block
        self._blocks.move_to_end(index)
        self.bytes += len(block)
        self.verified += 1
        while self.bytes > VERIFIED_BYTES:
            victim = next((i for i in self._blocks if i not in self._needs), None)
            if victim is None:
                break
            self.bytes -= sum(len(b) for b in self._blocks.pop(victim).values())
        return True
