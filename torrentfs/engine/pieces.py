"""What a torrent does with a piece whose last block came in, and with one that
leaves the disk cache: ``PieceEvents``, a mixin of engine/torrent.Torrent (whose
``reads``, ``cache``, ``storage``, ``picker``, ``blame``, ``haves``, ``sessions``,
``metrics`` and listeners it uses, and ``_dull``, the peers with nothing more for
us, since when). ``_verify`` checks and stores it (a v1 piece's
SHA-1 was taken as its blocks came, core/runhash; else it is hashed in trio, with no
thread hand-off, when a read waits on it alone or a quick head start wants it, or in
the worker thread that writes it), ``piece_on_disk`` makes it ours (readers woken,
peers told; those with nothing more for us told so if that lasts,
``lose_interest``), ``piece_gone`` wants it again."""

from __future__ import annotations

import errno
import logging

import trio

from torrentfs.core import wire

log = logging.getLogger("torrentfs.torrent")

INLINE_HASH_MAX = 4 << 20   # a piece a read waits on alone is hashed in trio up to this size
NOT_INTERESTED_AFTER = 5.0  # s a peer has had nothing for us before we say so


class PieceEvents:
    async def _verify(self, index: int) -> None:
        buf = self._buffers.pop(index)
        # Its SHA-1, taken as its blocks came (core/runhash): then only the write
        # is left for the worker thread.
        hashing = self._hashing.pop(index, None) if self._hashing is not None else None
        digest = hashing.digest(len(buf)) if hashing is not None else None
        # A piece a read waits on alone is hashed here (no thread hand-offs, which
        # took 0.1-7 ms each way under load) and the read answered from memory before
        # the write (``Reads.verified``); so is a quick head start's piece, which goes
        # to the kernel's page cache from there (fs/pagecache).
        lone = self.reads.alone(index)
        early = ((lone or self.reads.head_start.quick_now(index)) and len(buf) <= INLINE_HASH_MAX
                 and self.cache.room_for(len(buf)))
        try:
            if digest is not None:
                ok = digest == self.meta.piece_hash(index)
            else:
                ok = self.storage.verify(index, buf) if early else True
            if ok and early:
                self.reads.verified(index, buf)
            ok = ok and await self.cache.store(index, buf, not lone,
                                               hashed=early or digest is not None)
        except OSError as e:
            if e.errno != errno.ENOSPC:  # a full disk is logged by the cache, once a minute
                log.error("cannot write piece %d: %s", index, e)
            ok = None
            self.reads.forget(index)  # (if it was verified in memory)
            self.reads.store_failed(index, e)  # its reads fail rather than wait on
        finally:
            self._verifying.discard(index)
            self.reads.written(index)
        if ok:
            self.metrics.pieces_passed += 1
            self.reads.remember(index, buf)
            self.piece_on_disk(index)
        else:
            suppliers = self.picker.suppliers(index)
            self.picker.piece_failed(index)
            if ok is False:
                self.metrics.pieces_failed += 1
                log.warning("piece %d failed its hash check (from %s)", index,
                            ", ".join(map(repr, set(suppliers.values()))) or "nobody")
                for peer in self.blame.piece_failed(index, buf, suppliers):
                    self.ban(peer, f"sent the only data of {self.blame.strikes[peer]} "
                             "pieces that failed their hash check")
        if ok:
            for peer in self.blame.piece_verified(index, buf):
                self.ban(peer, f"sent bad blocks of piece {index}")
        else:  # its blocks are free again (a verified piece frees none: no pick)
            self.schedule()

    def piece_on_disk(self, index: int) -> None:
        """A verified piece is on disk: it is ours; wake its readers, tell the peers."""
        sources = self.picker.contributors(index)  # (forgotten once verified)
        dull = self.picker.piece_verified(index)
        self.reads.piece_arrived(index)
        for listener in self.piece_listeners:
            listener(index)
        self.haves.announce(index, sources)  # and, once complete, not interested
        if dull and not self.have.complete:
            now = trio.current_time()
            for s in dull:  # nothing more for us there, for now (``lose_interest``)
                if getattr(s, "am_interested", False) and not s.closed:
                    self._dull[s] = now
        if self.have.complete:
            log.info("all %d pieces verified", self.have.size)
            self.announcer.completed()

    def lose_interest(self, now: float) -> None:
        """Tell NotInterested to the peers that have had nothing more for us for
        NOT_INTERESTED_AFTER seconds (the ticker's). Not at once: among leechers at
        a trickle a peer has a new piece for us within a second or two, and each
        NotInterested and Interested again made it choke us and unchoke us again
        (a round of its choker each, a run of rejects, a whole pipeline asked
        again): 440 chokes a node in issue 13's 32-node cluster, 30 this way."""
        dull = self._dull
        for s, since in list(dull.items()):
            if s.closed or not s.am_interested or self.picker.is_interesting(s):
                del dull[s]
            elif now - since >= NOT_INTERESTED_AFTER:
                del dull[s]
                s.send(wire.NotInterested())

    def piece_gone(self, index: int) -> None:
        """A piece left the disk cache (evicted, or damaged): wanted again if read.
        Peers that have it may be interesting again (we cannot take a HAVE back;
        their requests for it are rejected)."""
        if index not in self.have:
            return
        self.picker.piece_lost(index)
        for listener in self.piece_listeners:
            listener(index)
        self.reads.forget(index)
        for s in list(self.sessions.values()):
            if s.registered and not s.am_interested:
                self._update_interest(s)

    def remember(self, index: int, data: bytearray) -> None:
        """Keep a just-verified (or disk-checked) piece in memory: next reads likely want it."""
        self.reads.remember(index, data)
