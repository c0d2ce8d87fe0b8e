"""A run of HAVEs handled as one (engine/havesin.py) does what a HAVE at a time did:
the same bitfields and availability, Interested once, the seeds spared for each
wanted piece, and one pick asked for (a batch one unless a read waits on a piece)."""

from __future__ import annotations

from torrentfs.core import wire
from torrentfs.core.bitfield import Bitfield
from torrentfs.core.geometry import Geometry
from torrentfs.core.picker import NOW, READAHEAD, Picker
from torrentfs.engine.havesin import got_haves, unchoked
from torrentfs.engine.locality import Nearby

B = 16384
PIECES = 8


class Session:
    def __init__(self, name: str, choking: bool = False) -> None:
        self.name = name
        self.addr = ("10.0.0.1", 6881)
        self.am_interested = False
        self.peer_choking = choking
        self.sent: list[wire.Message] = []

    def send(self, msg: wire.Message) -> None:
        if type(msg) is wire.Interested:
            self.am_interested = True
        self.sent.append(msg)

    def __repr__(self) -> str:
        return self.name


class Requests:
    def __init__(self) -> None:
        self.cancels: list = []

    def cancel(self, s, index: int, begin: int, length: int) -> None:
        self.cancels.append((s, index, begin, length))


class Torrent:
    def __init__(self, ours: tuple[int, ...] = ()) -> None:
        have = Bitfield(PIECES)
        for i in ours:
            have.add(i)
        self.have = have
        self.picker = Picker(Geometry(2 * B, (PIECES * 2 * B,)), have)
        self.nearby = Nearby(None, PIECES)
        self.seed_only = False
        self._fills: dict = {}
        self.requests = Requests()


def state(t: Torrent, s: Session):
    return (list(t.picker._peers[s]), list(t.picker.availability), s.sent,
            {p.name: v for p, v in t._fills.items()},
            [(p.name, *rest) for p, *rest in t.requests.cancels], t.picker.is_interesting(s))


def test_a_run_does_what_its_haves_one_at_a_time_did():
    run = [3, 0, 5, 3, 7]
    results = []
    for split in (False, True):
        t = Torrent(ours=(0,))
        seed = Session("seed")
        t.picker.add_peer(seed)
        t.picker.got_have_all(seed)
        s = Session("leecher")
        t.picker.add_peer(s)
        t.picker.raise_priority("r", [3, 5], READAHEAD, 10.0)
        t.picker.pick(seed, 0.0, 2)  # the seed asked for piece 3's blocks
        if split:
            for i in run:
                got_haves(t, s, [i])
        else:
            got_haves(t, s, run)
        results.append(state(t, s))
    assert results[0] == results[1]
    have, avail, sent, fills, cancels, interesting = results[0]
    assert have == [0, 3, 5, 7] and avail == [2, 1, 1, 2, 1, 2, 1, 2]
    assert sent == [wire.Interested()] and interesting
    assert fills == {"leecher": False}  # spared the seed: picked at once
    assert {c[:2] for c in cancels} == {("seed", 3)}


def test_a_wanted_piece_asks_for_a_batch_pick_and_a_read_for_a_whole_one():
    t = Torrent()
    s = Session("peer")
    t.picker.add_peer(s)
    t.picker.raise_priority("r", [1, 2], READAHEAD, 10.0)
    got_haves(t, s, [1, 6])
    assert t._fills == {s: True}
    t.picker.raise_priority("read", [4], NOW, 1.0)
    got_haves(t, s, [2, 4])
    assert t._fills == {s: False}


def test_nothing_to_ask_of_a_choking_peer_nor_for_unwanted_pieces():
    t = Torrent()
    choking, other = Session("choking", choking=True), Session("other")
    for s in (choking, other):
        t.picker.add_peer(s)
    got_haves(t, choking, [1, 2])
    got_haves(t, other, [6])  # raised by nobody: no pick
    assert t._fills == {}
    assert choking.sent == [wire.Interested()] == other.sent


def test_pieces_we_have_change_nothing_but_the_counts():
    t = Torrent(ours=(1, 2))
    s = Session("peer")
    t.picker.add_peer(s)
    got_haves(t, s, [1, 2])
    assert s.sent == [] and t._fills == {} and not t.picker.is_interesting(s)
    assert t.picker.availability[1:3] == [1, 1]


def test_an_unchoke_spares_the_seeds_what_a_have_heard_while_choked_did_not():
    """In a cluster reading in step a node is choked by a fellow for want of
    interest until that fellow's HAVE makes it interested: the HAVE comes while
    choked (nothing spared: nothing can be asked of a choking peer), the unchoke a
    round trip later. The unchoke spares the seeds then, so the blocks are asked
    of the fellow, not the origin (whose copies counted them twice)."""
    t = Torrent()
    origin, fellow = Session("origin"), Session("fellow", choking=True)
    t.picker.add_peer(origin)
    t.picker.got_have_all(origin)
    t.picker.add_peer(fellow)
    t.picker.raise_priority("r", [3, 5], READAHEAD, 10.0)
    t.picker.pick(origin, 0.0, 4)  # both pieces asked of the origin
    got_haves(t, fellow, [3])
    assert t.requests.cancels == []
    fellow.peer_choking = False
    unchoked(t, fellow)
    assert [(c[0].name, c[1]) for c in t.requests.cancels] == [("origin", 3)] * 2
    assert [i for i, _, _ in t.picker.pick(fellow, 0.0, 4)] == [3, 3]

