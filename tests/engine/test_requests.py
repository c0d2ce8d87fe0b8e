"""Each peer's requests (engine/requests.py) with stand-in peers and a real picker:
a waiting read's blocks make the backlog ahead of them be cancelled, held until the
peer answers (fast extension) or freed at once (without), and a reject that answers
a cancel is never taken for the refusal of a newer request. Time is trio's clock."""

from __future__ import annotations

import trio

from torrentfs.core import wire
from torrentfs.core.bitfield import Bitfield
from torrentfs.core.geometry import BLOCK_SIZE as B
from torrentfs.core.geometry import Geometry
from torrentfs.core.picker import NOW, READAHEAD, Picker
from torrentfs.core.priorities import SPLIT_LEECHERS
from torrentfs.core.ratelimit import Rate
from torrentfs.engine.requests import AHEAD_MIN, CANCEL_TIMEOUT, PIPELINE_MIN, Requests


class Peer:
    """What Requests uses of a PeerSession; records what it was sent."""

    def __init__(self, fast: bool = True) -> None:
        self.fast = fast
        self.peer_choking = self.closed = False
        self.registered = True
        self.down = Rate()
        self.reqq = 0  # what it says it queues (BEP 10): 0, not told
        self.sent: list[wire.Message] = []

    def send(self, msg: wire.Message) -> None:
        self.sent.append(msg)

    def send_requests(self, blocks) -> None:
        self.sent.extend(wire.Request(*b) for b in blocks)

    def take(self, kind) -> list[tuple[int, int]]:
        out = [(m.index, m.begin) for m in self.sent if isinstance(m, kind)]
        self.sent = [m for m in self.sent if not isinstance(m, kind)]
        return out


def seed_peer(t: "Torrent") -> Peer:
    """A new peer of ``t`` that has every piece."""
    p = Peer()
    t.picker.add_peer(p)
    t.picker.got_have_all(p)
    return p


def add_leechers(t: "Torrent") -> None:
    """SPLIT_LEECHERS peers of ``t`` that have nothing yet (a cluster about)."""
    for k in range(SPLIT_LEECHERS):
        t.picker.add_peer(f"leecher{k}")


class Torrent:
    def __init__(self, pieces: int = 8, blocks: int = 4) -> None:
        self.geometry = Geometry(blocks * B, (pieces * blocks * B,))
        self.picker = Picker(self.geometry, Bitfield(pieces))
        self.seed_only = False
        self.spread = 1
        self.schedules = 0

    def schedule(self, skip=None) -> None:
        self.schedules += 1

    def schedule_soon(self, freed=None, skip=None) -> None:  # (once the task yields)
        self.schedules += 1
        self.freed = freed


def setup(fast: bool = True) -> tuple[Torrent, Requests, Peer]:
    t = Torrent()
    r = Requests(t)
    p = Peer(fast)
    t.picker.add_peer(p)
    t.picker.got_have_all(p)
    return t, r, p


async def test_a_read_makes_the_backlog_ahead_of_it_wait(autojump_clock):
    t, r, p = setup()
    t.picker.raise_priority("h", range(1, 8), READAHEAD, 1.0)
    r.fill(p)
    backlog = p.take(wire.Request)
    assert len(backlog) == AHEAD_MIN                   # the readahead is capped
    t.picker.raise_priority("read", [6], NOW, 0.5)     # a read waits on piece 6
    r.fill(p)
    assert {i for i, _ in p.take(wire.Request)} == {6}
    assert p.take(wire.Cancel) == backlog              # in the order asked
    assert t.picker.outstanding(p) == AHEAD_MIN + 4    # held until the peer answers
    r.fill(p)
    assert p.sent == []                                # nothing cancelled twice
    for index, begin in backlog[:-1]:
        r.rejected(p, index, begin)
    assert t.schedules == 0                            # not until the last answer
    r.rejected(p, *backlog[-1])
    assert t.schedules == 1
    assert t.freed == {i for i, _ in backlog}          # what it picks for
    assert t.picker.outstanding(p) == 4                # the read's blocks
    r.fill(p)
    assert p.take(wire.Request)[:AHEAD_MIN] == backlog  # asked again, behind the read


async def test_without_the_fast_extension_cancelled_blocks_are_freed_at_once(autojump_clock):
    t, r, p = setup(fast=False)
    t.picker.raise_priority("h", range(1, 8), READAHEAD, 1.0)
    r.fill(p)
    backlog = p.take(wire.Request)
    t.picker.raise_priority("read", [6], NOW, 0.5)
    r.fill(p)
    assert p.take(wire.Cancel) == backlog
    assert t.picker.outstanding(p) == 4                # freed at once ...
    assert len(p.take(wire.Request)) == 4
    r.fill(p)
    assert p.take(wire.Request) == backlog             # ... and asked again, behind


async def test_a_reject_answering_a_cancel_is_not_taken_for_a_newer_one(autojump_clock):
    t, r, p = setup()
    t.picker.raise_priority("read", [0], NOW, 0.5)
    r.fill(p)
    assert len(p.take(wire.Request)) == 4
    # The read moved on: the piece is given up and its requests cancelled ...
    t.picker.drop("read")
    for peer, begin, length in t.picker.withdraw(0):
        r.cancel(peer, 0, begin, length)
    # ... and wanted again at once: the same blocks asked of the same peer.
    t.picker.raise_priority("read2", [0], NOW, 0.5)
    r.fill(p)
    assert len(p.take(wire.Request)) == 4
    r.rejected(p, 0, 0)                                # the answer to the cancel
    assert t.picker.outstanding(p) == 4                # the newer request stands
    r.rejected(p, 0, 0)                                # this one refuses the newer
    assert t.picker.outstanding(p) == 3


async def test_an_unanswered_cancel_frees_its_block_in_time(autojump_clock):
    t, r, p = setup()
    t.picker.raise_priority("h", [1, 2], READAHEAD, 1.0)
    r.fill(p)
    t.picker.raise_priority("read", [5], NOW, 0.5)
    r.fill(p)
    assert len(p.take(wire.Cancel)) == AHEAD_MIN
    await trio.sleep(CANCEL_TIMEOUT / 2)
    r.expire(trio.current_time())
    assert t.picker.outstanding(p) == AHEAD_MIN + 4
    await trio.sleep(CANCEL_TIMEOUT / 2)
    r.expire(trio.current_time())
    assert t.picker.outstanding(p) == 4


async def test_a_read_is_asked_past_a_pipeline_full_of_what_no_read_waits_on(autojump_clock):
    """A peer's whole pipeline holds blocks no read waits on any more (a read left
    behind by a seek, now readahead): a new read's blocks are still asked, and what
    they would queue behind is cancelled."""
    t, r, p = setup()
    t.picker.raise_priority("old read", range(1, 5), NOW, 0.1)
    r.fill(p)
    old = p.take(wire.Request)
    assert len(old) == PIPELINE_MIN == t.picker.outstanding(p)  # the pipeline is full
    t.picker.raise_priority("old read", range(1, 5), READAHEAD, 3.0)  # left behind
    t.picker.raise_priority("read", [6], NOW, 0.5)
    r.fill(p)
    assert {i for i, _ in p.take(wire.Request)} == {6}
    assert p.take(wire.Cancel) == old


async def test_a_new_peer_is_asked_its_share_of_a_waited_piece_in_one_go(autojump_clock):
    """A peer whose rate is not known yet (a new connection) gets PIPELINE_MIN
    requests; while a read waits on a piece it may take its whole share of it
    (the piece's blocks over ``spread`` peers), else the rest of a 1 MiB piece
    would wait a round trip. The readahead stays capped."""
    t = Torrent(pieces=4, blocks=64)
    t.spread = 3
    r = Requests(t)
    p = seed_peer(t)
    t.picker.raise_priority("read", [0], NOW, 0.5)
    t.picker.raise_priority("ahead", [1, 2], READAHEAD, 1.0)
    r.fill(p)
    asked = p.take(wire.Request)
    assert len([i for i, _ in asked if i == 0]) == 22 > PIPELINE_MIN  # 64 / 3, rounded up
    assert len([i for i, _ in asked if i != 0]) <= AHEAD_MIN
    t.picker.drop("read")
    t.picker.raise_priority("later", [3], NOW, 0.5)
    t.spread = 1
    r.fill(p)  # alone, it may take the whole piece
    assert len([i for i, _ in p.take(wire.Request) if i == 3]) == 64


async def test_among_leechers_a_new_peer_is_asked_whole_pieces_in_one_go(autojump_clock):
    """Among other leechers (a cluster), a peer whose rate is not known yet (a new
    connection) is asked for at least AHEAD_PIECES whole pieces of readahead and
    twice that in all (``floors``): the piece a read waits on goes in one go (here
    64 blocks of a 1 MiB piece only it has), not PIPELINE_MIN blocks and the rest a
    round trip later, and no piece of the readahead is left half asked. Among
    seeds alone, and in pieces of up to 4 blocks, the floors are as they were."""
    t = Torrent(pieces=6, blocks=64)
    t.spread = 3
    r = Requests(t)
    p = seed_peer(t)
    assert r.floors() == (PIPELINE_MIN, AHEAD_MIN)  # a seed alone
    add_leechers(t)
    assert r.floors() == (256, 128)  # 1 MiB pieces: four pieces in all, two ahead
    t.picker.raise_priority("read", [0], NOW, 0.5)
    t.picker.raise_priority("ahead", [1, 2, 3, 4], READAHEAD, 1.0)
    r.fill(p)
    asked = p.take(wire.Request)
    assert len([i for i, _ in asked if i == 0]) == 64 > PIPELINE_MIN
    assert len([i for i, _ in asked if i != 0]) == 128  # two pieces, no more
    small = Torrent(pieces=4, blocks=4)
    add_leechers(small)
    assert Requests(small).floors() == (PIPELINE_MIN, AHEAD_MIN)
    mid = Torrent(pieces=4, blocks=16)
    add_leechers(mid)
    assert Requests(mid).floors() == (64, 32)


async def test_a_peer_is_never_asked_more_than_it_says_it_queues(autojump_clock):
    """A peer that told its request queue (BEP 10 ``reqq``) is never asked for more
    at once, floors or not: requests past it may be dropped unanswered."""
    t = Torrent(pieces=6, blocks=64)
    r = Requests(t)
    p = seed_peer(t)
    p.reqq = 40
    add_leechers(t)
    t.picker.raise_priority("read", [0], NOW, 0.5)
    t.picker.raise_priority("ahead", [1, 2, 3], READAHEAD, 1.0)
    r.fill(p)
    assert len(p.take(wire.Request)) == 40 == t.picker.outstanding(p)
    t.picker.drop("read")
    r.fill(p)  # readahead alone: still within it
    assert t.picker.outstanding(p) <= 40


async def test_a_run_of_the_peers_own_rejects_is_one_schedule_without_it(autojump_clock):
    """A peer's rejects of requests of ours (a choke, with the fast extension: one
    per request) free each block for the others: once the running task yields, one
    schedule for them all, which does not ask that peer (``schedule_soon``)."""
    t, r, p = setup()
    runs = []
    t.schedule = lambda skip=None, freed=None: runs.append((skip, freed))
    async with trio.open_nursery() as n:
        t.schedule_soon = lambda freed=None, skip=None: r.schedule_soon(n, freed, skip)
        t.picker.raise_priority("h", [1, 2], READAHEAD, 1.0)
        r.fill(p)
        asked = p.take(wire.Request)
        assert {i for i, _ in asked} == {1, 2}
        for index, begin in asked:
            r.rejected(p, index, begin)
        assert runs == [] and t.picker.outstanding(p) == 0  # freed at once, ...
        await trio.sleep(0)
    assert runs == [({p}, {1, 2})]                      # ... asked for once, not of p
