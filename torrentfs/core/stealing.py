"""Taking over requests that wait in another peer's queue. Pure: no I/O, no clock.

In a cluster reading the same file, a node that has just verified a piece is often
idle while the blocks its peers want of that piece wait, already asked, in the
queue of a busy peer (the first to announce it took every request): one uplink
queues seconds of work while another sits idle. ``steal`` lets a peer that has
nothing else to give (its pick found no free block) take such a block: one asked
of exactly one other peer at least ``after`` seconds ago and not yet received, of a
raised piece (NOW or READAHEAD) that this peer has and is not told to ``avoid``
(a remote peer, ``core/topology``). The block then has two holders;
the first to deliver wins and the other is cancelled (``Picker.block_received``
lists it), which costs nothing while the request is still queued there.

Only a peer that does not have the whole torrent steals: a seed (an origin) is the
scarce uplink the others should spare, and among seeds alone (a download from
seeders) nothing changes.
"""

from __future__ import annotations

from typing import Any, Container, Hashable, Sequence

from torrentfs.core.priorities import READAHEAD

Block = tuple[int, int, int]  # (piece index, begin, length), as core/picker's

# A block asked of another peer this long ago may be asked again; 0: never (the
# default). Off since the merge: in `scripts/cluster --nodes 8 --size 32 --origin-rate
# 2000000 --node-rate 2000000 --no-http` (caps by tc, so a block waits in the kernel's
# queues, where a second of waiting is normal) two runs with 1.0 gave p50 1.93 / 2.12x
# ideal, origin 1.82 / 1.98 copies, 0.48 / 0.60 copies wasted and 42.5 / 49.2 CPU s
# per GiB; two with it off 1.89 / 1.57x, 1.69 / 1.42 copies, 0.48 / 0.29 wasted and
# 35.7 / 32.6 CPU s per GiB. It helped only with the application's own caps
# (`--app-caps`), where the wait is in our queue. ``Picker(steal_after=...)`` still
# turns it on.
STEAL_AFTER = 0.0


def steal(picker: Any, peer: Hashable, order: Sequence[tuple[int, int, float]],
          has: Sequence[int], now: float, limit: int, picked: list[Block],
          after: float, avoid: Container[int] | None = None) -> bool:
    """``picker`` is the core/picker.Picker asking (its pieces in progress and each
    peer's requests are read and updated here). Add to ``picked`` (up to ``limit`` in all) blocks ``peer`` may take over (see
    the module docstring), most urgent pieces first. Returns True if any block was
    a candidate (taken, or not yet old enough): the peer is not dry then, as time
    alone may make one old enough."""
    since = now - after
    out = picker._outstanding[peer]
    partials = picker._partials
    maybe = False
    for index, tier, _ in order:
        if tier < READAHEAD or not has[index] or (avoid is not None and index in avoid):
            continue
        partial = partials.get(index)
        if partial is None or partial.parole or partial.num_free:
            continue  # untouched, on parole, or with free blocks (the pick took them)
        requests, received, blocks = partial.requests, partial.received, partial.blocks
        for b in range(len(blocks)):
            holders = requests[b]
            if received[b] or len(holders) != 1 or peer in holders:
                continue
            maybe = True
            if next(iter(holders.values())) > since:
                continue
            holders[peer] = now
            begin, length = blocks[b]
            out[(index, begin)] = None
            picked.append((index, begin, length))
            if len(picked) >= limit:
                return True
    return maybe
