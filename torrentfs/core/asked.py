"""Whether a piece's blocks are all asked, and of whom: what lets a schedule stop
early. Pure: no I/O, no clock (``now`` is passed in).

``Torrent.schedule`` lets peers pick, fastest first. When it is for one piece (a
read's next piece raised to NOW) or for the blocks that answered cancels freed, a
peer's pick can only change something about those blocks while one of them is
free (``unasked``) or may be asked again of another peer: a late NOW piece's block
whose askers have all been silent ``duplicate_after`` (``Picker._duplicate``), a
block a read wants first, a piece on parole, or any block while ``steal_after``
is on (core/stealing). Otherwise only the peers asked for them (``askers``) have
anything to do: make way for them (engine/requests). A trickle node's reader
raised its next piece with every block already asked, and all 7 holders picked.
"""

from __future__ import annotations

from typing import Any, Hashable


def unasked(picker: Any, index: int) -> bool:
    """True while a block of piece ``index`` in progress is neither received nor
    asked of anybody (``picker``: a core/picker.Picker)."""
    partial = picker._partials.get(index)
    return partial is not None and partial.num_free > 0


def askers(picker: Any, index: int, now: float) -> set[Hashable] | None:
    """The peers asked for blocks of piece ``index`` if no other peer's pick could
    find one of its blocks to ask for (see the module docstring); else None."""
    partial = picker._partials.get(index)
    if (partial is None or partial.num_free or partial.parole or picker.steal_after
            or index in picker._first):
        return None
    heard, since = picker._heard, now - picker.duplicate_after
    out: set[Hashable] = set()
    for holders, received in zip(partial.requests, partial.received):
        if received:
            continue
        if not any(max(t, heard.get(h, t)) > since for h, t in holders.items()):
            return None  # its block may be asked of another peer (late: doubled)
        out.update(holders)
    return out
