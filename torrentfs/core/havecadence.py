"""When a batch of HAVEs leaves. Pure: no I/O, no clock (``now`` is passed in).

HAVEs of verified pieces are sent in batches (engine/haves.py), so that a node
verifying dozens of pieces a second wakes each peer's sender and receiver once per
batch, not once per piece (issue 13). Until session 10 every batch left ``gap``
seconds after its first HAVE. That delay is paid at every hop a new piece makes
through a cluster: a piece is passed on only once its holder's peers hear of it.
At 250 simulated nodes in 256 KiB pieces (0.13 s each on a 2 MB/s uplink) the
50 ms were a quarter of each hop, and p50 went from 1.56 to 1.43 x the ideal time
with 1 ms instead (one seed) (docs/benchmarks.md, "session 10: p50 at 1,000 nodes").

The rule, with ``at_once``: **a batch whose first HAVE comes ``gap`` or more after
the last batch left goes at once; otherwise it leaves ``gap`` after its first HAVE,
as before.** A piece verified after a quiet spell (each piece, when pieces take
longer than ``gap`` to arrive) is announced without delay; a dense stream (a trickle
in small pieces) is batched as it was, so batches never leave more often than they
did: at most one per ``gap`` in a dense stream, one per piece in a sparse one.
Without ``at_once`` (``AT_ONCE``, the default), every batch leaves ``gap`` after its
first HAVE, as before session 10.

Not on by default: at 250 simulated nodes it lowered p50 on four seeds of five
(mean 1.52 -> 1.46 x ideal; at 8 and 64 nodes no change beyond the seeds' spread),
but in the two-node known-answer case of tests/benchmarks (4 MiB, 64 KiB pieces,
1 MB/s) the earlier HAVEs let one node finish a second before the other, which then
fetched its last pieces split between the origin and that node (core/picker: among
seeds only, readahead is split): 5.30 s against 4.42 s, 1.25 origin copies against
1.02 (a HAVE delay of 10 ms or less does the same with the old rule). No real
cluster was run with it (docs/benchmarks.md, "session 10: p50 at 1,000 nodes").
"""

from __future__ import annotations

AT_ONCE = False  # a batch after a quiet spell leaves at once (module docstring)


class HaveCadence:
    """The batch timing of one torrent's HAVEs (see the module docstring)."""

    __slots__ = ("gap", "at_once", "last")

    def __init__(self, gap: float, at_once: bool = AT_ONCE) -> None:
        self.gap = gap
        self.at_once = at_once
        self.last: float | None = None  # when the last batch left

    def delay(self, now: float) -> float:
        """A batch's first HAVE is queued at ``now``: how long until it leaves."""
        if self.at_once and (self.last is None or now - self.last >= self.gap):
            return 0.0
        return self.gap

    def flushed(self, now: float) -> None:
        """The batch left at ``now``."""
        self.last = now
