"""The uploader's choice of what to send next, with stand-in peers and torrent: a
seed spreads pieces, and a piece that just went to one peer waits while anybody asks
for one nobody has had (so a scarce uplink sends new pieces, not the same ones
again). Time is trio's autojump clock."""

from __future__ import annotations

from collections import deque

import pytest
import trio

from torrentfs.core import wire
from torrentfs.core.ratelimit import Rate, TokenBucket
from torrentfs.core.uploadpolicy import ANNOUNCED_GRACE
from torrentfs.engine.upload import HOLD_SECONDS, IDLE_HOLD_SECONDS, UPLOAD_BACKLOG, Uploader

BLOCK = 16 << 10


class Peer:
    """What the uploader uses of a PeerSession; records what it was sent."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.queued: set[tuple[int, int, int]] = set()
        self.upload_fifo: deque = deque()
        self.am_choking = False
        self.closed = False
        self.fast = True
        self.backlog = 0
        self.up = Rate()
        self.sent: list[tuple[int, int]] = []
        self.rejected: list[tuple[int, int]] = []

    def send(self, msg: wire.Message) -> None:
        if isinstance(msg, wire.Piece):
            self.sent.append((msg.index, msg.begin))
        elif isinstance(msg, wire.Reject):
            self.rejected.append((msg.index, msg.begin))

    def send_block(self, index: int, begin: int, data, wake: bool = True) -> None:
        self.send(wire.Piece(index, begin, data))

    def push(self) -> None:
        pass

    def __repr__(self) -> str:
        return self.name


class Seed:
    """What the uploader uses of a Torrent: a seed with every piece."""

    def __init__(self, *peers: Peer) -> None:
        self.sessions = {p.name: p for p in peers}
        self.have = range(100)

        class Geometry:
            @staticmethod
            def is_within_piece(index, begin, length):
                return True
        self.geometry = Geometry()

    async def block(self, index: int, begin: int, length: int) -> bytes:
        return bytes(length)

    def block_now(self, index: int, begin: int, length: int) -> bytes | None:
        return None  # always the way through ``block``


def ask(up: Uploader, peer: Peer, index: int, begin: int = 0) -> None:
    up.request(peer, wire.Request(index, begin, BLOCK))


def sent(up: Uploader, now: float) -> list[tuple[str, int, int]]:
    """What the uploader answers next, in order, at time ``now``, served at once."""
    return [(s.name, r.index, r.begin) for s, r, _ in up._next_batch(now)]


@pytest.fixture
def peers():
    a, b, c = Peer("a"), Peer("b"), Peer("c")
    return a, b, c, Uploader(Seed(a, b, c), TokenBucket(0))


async def serve(up: Uploader, peer: Peer, index: int, begin: int = 0) -> None:
    ask(up, peer, index, begin)
    [(s, req, prev)] = up._next_batch(trio.current_time())
    await up._serve_one(s, req, prev)


async def test_least_sent_piece_goes_first(peers, autojump_clock):
    a, b, c, up = peers
    await serve(up, a, 5)
    ask(up, b, 5)
    ask(up, b, 6)
    assert sent(up, trio.current_time()) == [("b", 6, 0)]


async def test_piece_just_sent_elsewhere_waits_while_others_ask_fresh(peers, autojump_clock):
    a, b, c, up = peers
    await serve(up, a, 5)
    ask(up, b, 5)
    ask(up, c, 7)
    assert sent(up, trio.current_time()) == [("c", 7, 0)]
    # b's request is still queued; with nobody asking for anything fresh it goes,
    # once a has had IDLE_HOLD_SECONDS to announce 5 (b would then take it there).
    assert sent(up, trio.current_time()) == []
    await trio.sleep(IDLE_HOLD_SECONDS)
    assert sent(up, trio.current_time()) == [("b", 5, 0)]


async def test_held_request_waits_for_a_busy_peer_asking_fresh(peers, autojump_clock):
    a, b, c, up = peers
    await serve(up, a, 5)
    ask(up, b, 5)
    ask(up, c, 7)
    c.backlog = UPLOAD_BACKLOG  # c's socket is full: the uplink is busy with it
    assert sent(up, trio.current_time()) == []
    c.backlog = 0
    assert sent(up, trio.current_time()) == [("c", 7, 0)]


async def test_hold_ends(peers, autojump_clock):
    a, b, c, up = peers
    await serve(up, a, 5)
    ask(up, b, 5)
    ask(up, c, 7)
    c.backlog = UPLOAD_BACKLOG
    await trio.sleep(HOLD_SECONDS)
    assert sent(up, trio.current_time()) == [("b", 5, 0)]


async def test_rest_of_a_piece_is_not_held_from_its_own_taker(peers, autojump_clock):
    a, b, c, up = peers
    await serve(up, a, 5)
    ask(up, a, 5, BLOCK)
    ask(up, c, 7)
    # a's rest of 5 goes (not held), alone: a piece begun for a peer is finished
    # before another begins (core/uploadpolicy); c's fresh 7 goes in the next round
    assert sent(up, trio.current_time()) == [("a", 5, BLOCK)]
    assert sent(up, trio.current_time()) == [("c", 7, 0)]


async def test_cancelled_requests_are_dropped_not_weighed(peers, autojump_clock):
    a, b, c, up = peers
    await serve(up, a, 5)
    ask(up, b, 5)
    up.cancel(b, wire.Cancel(5, 0, BLOCK))
    ask(up, b, 9)
    assert sent(up, trio.current_time()) == [("b", 9, 0)]
    assert not b.upload_fifo


async def test_a_cancel_is_answered_with_a_reject_unless_the_block_went(peers,
                                                                      autojump_clock):
    # BEP 6: a fast-extension peer hears a reject for a cancelled request not yet
    # served (engine/requests.py holds the block until that answer, or 10 s); a
    # block already sent is the answer itself; a peer without the extension
    # expects nothing.
    a, b, c, up = peers
    await serve(up, a, 5)
    ask(up, a, 6)
    up.cancel(a, wire.Cancel(5, 0, BLOCK))   # sent already
    up.cancel(a, wire.Cancel(6, 0, BLOCK))   # still queued
    up.cancel(a, wire.Cancel(7, 0, BLOCK))   # never asked
    assert a.rejected == [(6, 0)]
    assert a.sent == [(5, 0)]
    c.fast = False
    ask(up, c, 8)
    up.cancel(c, wire.Cancel(8, 0, BLOCK))
    assert c.rejected == []
    assert sent(up, trio.current_time()) == []


async def test_run_answers_everything_and_waits_out_holds(peers, autojump_clock):
    """The task as a whole: every request answered once, fresh before held."""
    a, b, c, up = peers
    async with trio.open_nursery() as nursery:
        nursery.start_soon(up.run)
        ask(up, a, 5)
        await trio.sleep(0.01)
        ask(up, b, 5)
        c.backlog = UPLOAD_BACKLOG
        ask(up, c, 7)
        await trio.sleep(HOLD_SECONDS / 2)
        assert b.sent == [] and a.sent == [(5, 0)]
        c.backlog = 0
        up.drained(c)
        await trio.sleep(0.01)
        assert c.sent == [(7, 0)]
        assert b.sent == [(5, 0)]  # nothing fresh is asked any more
        nursery.cancel_scope.cancel()


async def test_run_wakes_at_the_end_of_an_idle_hold(peers, autojump_clock):
    """With nothing fresh asked, a request for a piece that just went to another
    peer waits IDLE_HOLD_SECONDS (that peer may serve it), then goes without
    anything else waking the task; cancelled meanwhile (the asker took the piece
    from that peer), it never goes: the origin sends one copy, not two."""
    a, b, c, up = peers
    async with trio.open_nursery() as nursery:
        nursery.start_soon(up.run)
        ask(up, a, 5)
        ask(up, a, 6)
        await trio.testing.wait_all_tasks_blocked()
        assert a.sent == [(5, 0), (6, 0)]
        ask(up, b, 5)
        ask(up, c, 6)
        await trio.sleep(IDLE_HOLD_SECONDS / 2)
        assert b.sent == [] and c.sent == []
        up.cancel(c, wire.Cancel(6, 0, BLOCK))  # c heard a's HAVE: it asks a
        await trio.sleep(IDLE_HOLD_SECONDS / 2 + 0.01)
        assert b.sent == [(5, 0)] and c.sent == [] and c.rejected == [(6, 0)]
        nursery.cancel_scope.cancel()


async def test_run_sends_a_held_request_soon_after_its_piece_is_announced(peers,
                                                                           autojump_clock):
    """a announced 5 (a HAVE) and b, which heard it too, still asks for it here: b
    cannot fetch it from a, so it goes ANNOUNCED_GRACE later, not IDLE_HOLD_SECONDS."""
    a, b, c, up = peers
    async with trio.open_nursery() as nursery:
        nursery.start_soon(up.run)
        ask(up, a, 5)
        await trio.testing.wait_all_tasks_blocked()
        ask(up, b, 5)
        await trio.sleep(0.2)
        assert b.sent == []
        up.announced(a, [5])
        await trio.sleep(ANNOUNCED_GRACE / 2)
        assert b.sent == []
        await trio.sleep(ANNOUNCED_GRACE / 2 + 0.01)
        assert b.sent == [(5, 0)]
        nursery.cancel_scope.cancel()


def test_a_super_seeding_origin_holds_nothing_while_nothing_fresh_is_asked():
    """Its sparing refuses what another peer has (core/sparing): no idle hold."""
    seed = Seed(Peer("a"))
    assert Uploader(seed, TokenBucket(0)).rounds.idle_hold == IDLE_HOLD_SECONDS > 0
    seed.options = type("Options", (), {"super_seed": True})()
    assert Uploader(seed, TokenBucket(0)).rounds.idle_hold == 0


async def test_an_idle_uploader_sets_no_timer(peers, autojump_clock):
    """With nothing asked it waits for a request alone: no timer wakes it (an idle
    mount with many peers must cost next to nothing, issue 13). A request wakes
    it and is answered."""
    a, b, c, up = peers
    async with trio.open_nursery() as nursery:
        nursery.start_soon(up.run)
        await trio.testing.wait_all_tasks_blocked()
        assert trio.lowlevel.current_statistics().seconds_to_next_deadline == float("inf")
        ask(up, a, 7)
        await trio.testing.wait_all_tasks_blocked()
        assert a.sent == [(7, 0)]
        await trio.testing.wait_all_tasks_blocked()
        assert trio.lowlevel.current_statistics().seconds_to_next_deadline == float("inf")
        nursery.cancel_scope.cancel()


def _random_uploader(rng, full_scan: bool):
    """Three peers with random queues (runs of blocks of random pieces, as clients
    ask), random counts and recent takers of pieces; the same for the same rng."""
    peers = [Peer(n) for n in "abc"]
    up = Uploader(Seed(*peers), TokenBucket(0))
    if full_scan:
        rounds = up.rounds  # core/uploadpolicy's Rounds, the uploader's rule
        rounds.next_best = lambda peer, fifo, live, n, taken, now: rounds.best(
            peer, fifo, live, now)
    for p in peers:
        for _ in range(rng.randrange(1, 12)):
            index = rng.randrange(12)
            first = rng.randrange(0, 4)
            for b in range(first, first + rng.randrange(1, 40)):
                ask(up, p, index, b * BLOCK)
    for index in range(12):
        if rng.random() < 0.5:
            up._pieces_sent[index] = rng.randrange(3)
        if rng.random() < 0.5:
            up._last_sent[index] = (rng.choice(peers), rng.uniform(-3, 0))
    return up


@pytest.mark.parametrize("seed", range(300))
def test_quick_next_pick_is_the_full_scans_choice(seed):
    """``_next_batch`` takes a peer's next request without scanning its queue again
    when it can (``Rounds.next_best``): its picks, in order, are exactly those of a full
    scan after every take."""
    import random
    quick = _random_uploader(random.Random(seed), full_scan=False)
    full = _random_uploader(random.Random(seed), full_scan=True)
    for up in (quick, full):
        for s in up.torrent.sessions.values():
            s.backlog = -(100 << 20)  # room for everything
    picks = [[(s.name, r.index, r.begin) for s, r, _ in up._next_batch(0.0)]
             for up in (quick, full)]
    assert picks[0] == picks[1]
    assert len(picks[0]) > 0


class CachedSeed(Seed):
    """A seed whose blocks are all at hand (memory or page cache): no await."""

    def block_now(self, index: int, begin: int, length: int) -> bytes | None:
        return bytes(length)


async def test_blocks_at_hand_are_answered_in_rounds_and_counted(autojump_clock):
    """The path without an await (``_serve_now``): every request answered once, a
    fast peer many blocks per round, the bytes in its rate and the total; a peer
    choked meanwhile gets rejects, and what it asked does not count as sent."""
    a, b = Peer("a"), Peer("b")
    rejected = []
    b.send = lambda msg: rejected.append(msg)
    up = Uploader(CachedSeed(a, b), TokenBucket(0))
    for begin in range(0, 64 * BLOCK, BLOCK):
        ask(up, a, 3, begin)
    for index in (7, 8):
        ask(up, b, index)
    b.am_choking = True
    a.up.add(100 << 20, trio.current_time())  # a fast peer: room for many blocks
    sent_block = a.send_block

    def queue(index, begin, data, wake=True):  # what waits for the socket
        a.backlog += len(data)
        sent_block(index, begin, data)
    a.send_block = queue
    rounds = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(up.run)
        while len(a.sent) < 64 and len(rounds) < 64:
            await trio.testing.wait_all_tasks_blocked()
            rounds.append(len(a.sent) - sum(rounds))
            assert a.backlog <= UPLOAD_BACKLOG  # no more than the room
            await trio.sleep(0.001)
            a.backlog = 0  # its socket took it all
            up.drained(a)
        nursery.cancel_scope.cancel()
    assert a.sent == [(3, begin) for begin in range(0, 64 * BLOCK, BLOCK)]
    assert max(rounds) > 1  # many blocks per round once its rate is known
    assert a.up.total - (100 << 20) == up.uploaded == 64 * BLOCK
    assert rejected == [wire.Reject(7, 0, BLOCK), wire.Reject(8, 0, BLOCK)]
    assert up._pieces_sent == {3: 1} and set(up._last_sent) == {3}


async def test_peers_asking_for_the_same_new_piece_at_once_get_different_ones(peers,
                                                                               autojump_clock):
    # Readers in step: all three ask for 5 first. One batch sends 5 to one peer and
    # something else to the others, not 5's first block three times.
    a, b, c, up = peers
    for p, more in ((a, ()), (b, (6,)), (c, (6, 7))):
        ask(up, p, 5)
        for i in more:
            ask(up, p, i)
    assert sorted(sent(up, trio.current_time())) == [("a", 5, 0), ("b", 6, 0), ("c", 7, 0)]
