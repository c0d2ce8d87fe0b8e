"""Telling the peers which pieces we have (HAVE), in batches.

A verified piece is announced to every registered peer, but not sent at once: the
HAVEs are queued without waking the peers' senders (``PeerSession.send_lazy``) and
leave together ``HAVE_DELAY`` after the first of a batch, or earlier with anything
else sent to that peer. At a trickle (a cluster reading at 2 MB/s in 32 KiB pieces,
dozens of pieces a second) this is one wake-up of each peer's sender, and of each
peer's receiver, per batch instead of per piece (issue 13). Once every piece is
here, peers we were interested in are told we no longer are.

A batch is flushed only to the peers that lack one of its pieces (or are seeds,
which may be super-seeding: BEP 16 reveals pieces as HAVEs come back). Peers of a
cluster reading at once have about half of what each other verifies.

A peer that has the piece already (and is no seed) is not told at all, as
libtorrent's ``send_redundant_have=false``: a HAVE says nothing it can act on (it
asks nobody for that piece), yet each one cost us the encoding and queueing, and it
the parse, the bitfield and availability updates and the uploader's bookkeeping
(``engine/havesin``); at a trickle in 32 KiB pieces a node of a 32-node cluster
heard some 30,000 HAVEs per 32 MiB, about half of them such (issue 13). Except to
the peers that sent us a block of the piece (``sources``): their uploader may hold
another peer's request for it until it hears our HAVE (core/uploadpolicy's idle
hold, ``Rounds.announced``); theirs leave with the next message to them, or at the
torrent's once-a-second tick (``flush_all``). What the peers no longer learn: that a
node completed since (it is no seed in their eyes: they spare it as a leecher,
PEX does not flag it), and which pieces it has that they had first (if one
of those leaves their cache, they fetch it elsewhere).
"""

from __future__ import annotations

import trio

from torrentfs.core import wire
from torrentfs.core.havecadence import HaveCadence

# HAVEs of pieces verified within this long leave together. A quarter of a second
# (tried in session 5) cut a trickle cluster's receives by a fifth, but its CPU
# gain was within the noise, while the simulator (benchmarks/sim, which takes this
# constant) put the 32-node p50 at 1.63x the ideal against 1.51x with 50 ms
# (3 seeds each, 8 MiB at 250 kB/s caps): peers learn of a piece later and ask the
# origin meanwhile.
HAVE_DELAY = 0.05


class HaveBatcher:
    def __init__(self, torrent) -> None:
        self.torrent = torrent
        self._due = trio.Event()  # set when HAVEs wait to be flushed
        self._lacking: set = set()  # sessions sent a HAVE of a piece they lack
        self.cadence = HaveCadence(HAVE_DELAY)  # when a batch leaves (core/havecadence)

    def announce(self, index: int, sources=()) -> None:
        """Piece ``index`` is verified: queue its HAVE for every registered peer
        that lacks it, is a seed, or sent us a block of it (``sources``); the
        others already have it (module docstring: no redundant HAVEs)."""
        t = self.torrent
        picker = t.picker
        peer_has, is_seed = picker.peer_has, picker.is_seed
        lacking = self._lacking
        have = wire.Have(index)  # one message for all: a session only encodes it
        complete = t.have.complete
        for s in list(t.sessions.values()):
            if not s.registered:
                continue
            if not peer_has(s, index) or is_seed(s):
                lacking.add(s)
                s.send_lazy(have)
            elif s in sources:
                s.send_lazy(have)
            if complete and s.am_interested:
                s.send(wire.NotInterested())
        if lacking:
            self._due.set()

    async def run(self) -> None:
        """Flush each batch to the peers that lack one of its pieces: at once after
        a quiet spell, else HAVE_DELAY after its first HAVE (core/havecadence); no
        timer while none waits. Runs until cancelled."""
        while True:
            await self._due.wait()
            delay = self.cadence.delay(trio.current_time())
            if delay:
                await trio.sleep(delay)
            self._due = trio.Event()
            lacking, self._lacking = self._lacking, set()
            for s in lacking:
                s.flush()
            self.cadence.flushed(trio.current_time())

    def flush_all(self) -> None:
        """Send every HAVE still queued (the torrent's tick, once a second)."""
        for s in list(self.torrent.sessions.values()):
            s.flush()
