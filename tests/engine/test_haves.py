"""HAVEs of verified pieces leave in batches (engine/haves.py): queued lazily, one
flush of each peer HAVE_DELAY after the first of a batch, no timer while none
waits; a peer that has a piece already (and is no seed) is not told of it, unless
it sent us a block of it: then it hears at the once-a-second tick (or with the next
message). Time is trio's autojump clock."""

from __future__ import annotations

import pytest
import trio

from torrentfs.core import wire
from torrentfs.core.bitfield import Bitfield
from torrentfs.core.havecadence import HaveCadence
from torrentfs.engine.haves import HAVE_DELAY, HaveBatcher


class Session:
    def __init__(self, registered: bool = True, interested: bool = False,
                 has: tuple[int, ...] = (), seed: bool = False) -> None:
        self.registered = registered
        self.has = set(has)
        self.seed = seed
        self.am_interested = interested
        self.lazy: list[wire.Message] = []
        self.sent: list[wire.Message] = []
        self.flushes: list[float] = []

    def send_lazy(self, msg: wire.Message) -> None:
        self.lazy.append(msg)

    def send(self, msg: wire.Message) -> None:
        self.sent.append(msg)

    def flush(self) -> None:
        self.flushes.append(trio.current_time())


class Picker:
    """What the batcher asks of a torrent's picker: what each peer has."""

    @staticmethod
    def peer_has(s: Session, index: int) -> bool:
        return s.seed or index in s.has

    @staticmethod
    def is_seed(s: Session) -> bool:
        return s.seed


class Torrent:
    def __init__(self, *sessions: Session, pieces: int = 4) -> None:
        self.sessions = dict(enumerate(sessions))
        self.have = Bitfield(pieces)
        self.picker = Picker()


def idle() -> bool:
    return trio.lowlevel.current_statistics().seconds_to_next_deadline == float("inf")


async def test_haves_leave_together_after_the_delay(autojump_clock):
    a, b, unregistered = Session(), Session(), Session(registered=False)
    t = Torrent(a, b, unregistered)
    batcher = HaveBatcher(t)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        await trio.testing.wait_all_tasks_blocked()
        assert idle()
        start = trio.current_time()
        for i in (0, 1, 2):
            t.have.add(i)
            batcher.announce(i)
            await trio.sleep(HAVE_DELAY / 4)
        assert a.lazy == [wire.Have(0), wire.Have(1), wire.Have(2)] == b.lazy
        assert unregistered.lazy == []
        assert a.flushes == []  # not yet: the batch waits HAVE_DELAY after its first
        await trio.sleep(HAVE_DELAY)
        assert a.flushes == [start + HAVE_DELAY] == b.flushes
        await trio.testing.wait_all_tasks_blocked()
        assert idle()  # nothing waits: no timer
        nursery.cancel_scope.cancel()


async def test_at_once_a_batch_after_a_quiet_spell_leaves_at_once(autojump_clock):
    # core/havecadence's at_once (not the default): no wait after a quiet spell,
    # HAVE_DELAY after its first HAVE within one of the last batch.
    a = Session()
    t = Torrent(a)
    batcher = HaveBatcher(t)
    batcher.cadence = HaveCadence(HAVE_DELAY, at_once=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        t.have.add(0)
        batcher.announce(0)
        await trio.testing.wait_all_tasks_blocked()
        assert a.flushes == [start]  # nothing left lately: no wait
        await trio.sleep(HAVE_DELAY / 2)
        t.have.add(1)
        batcher.announce(1)  # within HAVE_DELAY of that batch: it waits
        await trio.sleep(HAVE_DELAY / 4)
        t.have.add(2)
        batcher.announce(2)  # joins it
        await trio.sleep(HAVE_DELAY)
        assert a.flushes == [start, pytest.approx(start + HAVE_DELAY * 1.5)]
        await trio.sleep(HAVE_DELAY * 3)
        t.have.add(3)
        batcher.announce(3)  # a quiet spell again: at once
        await trio.testing.wait_all_tasks_blocked()
        assert a.flushes[2:] == [pytest.approx(start + HAVE_DELAY * 4.75)]
        assert a.lazy == [wire.Have(i) for i in range(4)]
        nursery.cancel_scope.cancel()


async def test_complete_tells_interesting_peers_we_are_not_interested(autojump_clock):
    keen, other = Session(interested=True), Session()
    t = Torrent(keen, other, pieces=1)
    batcher = HaveBatcher(t)
    t.have.add(0)
    batcher.announce(0)
    assert keen.sent == [wire.NotInterested()] and other.sent == []
    assert keen.lazy == [wire.Have(0)] == other.lazy


async def test_peers_that_have_every_piece_of_a_batch_are_not_told(autojump_clock):
    lacking, having, seed = Session(has=(0,)), Session(has=(0, 1)), Session(seed=True)
    t = Torrent(lacking, having, seed)
    batcher = HaveBatcher(t)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        start = trio.current_time()
        for i in (0, 1):
            t.have.add(i)
            batcher.announce(i)
        # a seed may be super-seeding: it hears of every piece
        assert seed.lazy == [wire.Have(0), wire.Have(1)]
        assert lacking.lazy == [wire.Have(1)]  # not of piece 0, which it has
        assert having.lazy == []  # nothing it can act on: no redundant HAVE
        await trio.sleep(HAVE_DELAY * 2)
        # lacks piece 1; the seed: both hear at once
        assert lacking.flushes == [start + HAVE_DELAY] == seed.flushes
        assert having.flushes == []
        await trio.testing.wait_all_tasks_blocked()
        assert idle()  # and no timer runs for it
        del t.sessions[2]  # the seed left
        batcher.announce(0)  # only peers that have it: no batch, no timer
        await trio.testing.wait_all_tasks_blocked()
        assert idle() and len(lacking.flushes) == 1
        assert lacking.lazy == [wire.Have(1)] and having.lazy == []
        nursery.cancel_scope.cancel()
    batcher.flush_all()  # the torrent's tick
    assert len(having.flushes) == 1 and len(lacking.flushes) == 2


async def test_the_peers_a_piece_came_from_hear_of_it_at_the_tick(autojump_clock):
    """A peer that sent us a block of the piece has it, but its uploader may hold
    another's request for it until our HAVE (core/uploadpolicy's idle hold): it is
    told, lazily (with the next message to it, or at the tick)."""
    source, other, lacking = Session(has=(0,)), Session(has=(0,)), Session()
    t = Torrent(source, other, lacking)
    batcher = HaveBatcher(t)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(batcher.run)
        start = trio.current_time()
        t.have.add(0)
        batcher.announce(0, {source})
        assert source.lazy == [wire.Have(0)] == lacking.lazy
        assert other.lazy == []
        await trio.sleep(HAVE_DELAY * 2)
        assert lacking.flushes == [start + HAVE_DELAY]
        assert source.flushes == []  # it asks nobody for it: no wake-up of its own
        nursery.cancel_scope.cancel()
    batcher.flush_all()  # the torrent's tick
    assert len(source.flushes) == 1


async def test_a_verified_piece_is_announced_to_the_peers_it_came_from(make_swarm):
    """Torrent.piece_on_disk names the peers that sent a block of the piece to
    the batcher: of two fellow leechers that have it, the one it came from
    hears of it, the other does not."""
    from torrentfs.core.picker import READAHEAD
    _meta, _payload, t = make_swarm(size=4 * 32768, piece_length=32768)
    source, other = Session(), Session()
    for key, s in (("source", source), ("other", other)):
        t.sessions[key] = s
        t.picker.add_peer(s)
        t.picker.got_have(s, 0)
    t.picker.raise_priority("r", [0], READAHEAD, 10.0)
    blocks = t.picker.pick(source, 0.0, 4)
    assert blocks and {i for i, _, _ in blocks} == {0}
    for index, begin, length in blocks:
        t.picker.block_received(source, index, begin, length, 0.0)
    t.piece_on_disk(0)
    assert 0 in t.have
    assert source.lazy == [wire.Have(0)] and other.lazy == []
