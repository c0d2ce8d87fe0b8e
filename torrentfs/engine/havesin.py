"""A run of HAVE messages from one peer, handled as one (issue 13).

At a trickle each peer of a 32-node cluster announces ~36 pieces a second to every
other: ~1,100 HAVEs come in per node and second, in batches of a few per receive
(``engine/haves.py`` sends them so). The session hands the torrent each receive's
run of HAVEs at once (``PeerSession``'s ``on_haves``, parsed by ``core/haverun``):
the peer's bitfield and the availability counts are updated for each piece, but
interest is judged once, the seeds are spared once per new wanted piece, and the
pick they ask for is left to the end of the receive (``Torrent.on_received``), as
for a single HAVE (``Torrent._on_have``, which this does the same as for each).
"""

from __future__ import annotations

from torrentfs.core import wire
from torrentfs.core.priorities import NONE, NOW


def got_haves(t, s, indexes: list[int]) -> None:
    """Peer session ``s`` of torrent ``t`` announced ``indexes`` (a run of HAVEs)."""
    picker, have = t.picker, t.have
    got_have, nearby = picker.got_have, t.nearby
    local = nearby.locality and nearby.is_local(s.addr[0])
    wanted = []  # the pieces announced that we lack
    for index in indexes:
        got_have(s, index)
        if local:
            nearby.got(s, index)
        if index not in have:
            wanted.append(index)
    if not wanted or t.seed_only:
        return
    if not s.am_interested:
        s.send(wire.Interested())
    if s.peer_choking:
        return
    fills = t._fills
    batch = fills.get(s, True)
    asked = False
    spare = not picker.is_seed(s)
    priority = picker.priority
    for index in wanted:
        tier = priority(index)[0]
        if tier == NONE:
            continue
        asked = True
        spared = False
        if spare:
            # A fellow leecher has it: spare the seeds (``Torrent._on_have``).
            for seed, begin, length in picker.spare_seeds(index):
                t.requests.cancel(seed, index, begin, length)
                spared = True
        batch = batch and tier != NOW and not spared
    if asked:
        fills[s] = batch


def unchoked(t, s) -> None:
    """Peer session ``s`` of torrent ``t`` unchoked us: the seeds are spared the
    pieces in progress it has (``Picker.spare_seeds_to``), as a HAVE of each would
    have spared them had it come while ``s`` unchoked us; the caller's pick then
    asks ``s`` for them."""
    cancel = t.requests.cancel
    for seed, index, begin, length in t.picker.spare_seeds_to(s):
        cancel(seed, index, begin, length)
