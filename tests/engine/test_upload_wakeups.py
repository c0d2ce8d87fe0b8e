"""The uploader's wake-ups at a trickle (issue 13): a drained socket's next block
goes out in the draining task's step, not on a wake-up of the uploader's own; a
request of a peer whose socket is busy wakes nobody; and a wait sets a timer only
while a request is held, one deadline kept until it passes. Stand-in peers and
torrent from test_upload; time is trio's autojump clock."""

from __future__ import annotations

import trio
import trio.testing

from tests.engine.test_upload import BLOCK, CachedSeed, Peer, Seed, ask
from torrentfs.core.ratelimit import TokenBucket
from torrentfs.engine.upload import HOLD_SECONDS, UPLOAD_BACKLOG, Uploader


class Socket(Peer):
    """A peer whose blocks wait in its socket (``backlog``) until ``drain``."""

    def send_block(self, index: int, begin: int, data, wake: bool = True) -> None:
        self.backlog += len(data)
        super().send_block(index, begin, data, wake)

    def drain(self, up: Uploader) -> None:
        self.backlog = 0
        up.drained(self)


def counting(up: Uploader) -> list[int]:
    """Counts the uploader's rounds (its scans of the peers asking)."""
    calls = [0]
    asking = up._asking

    def counted(now):
        calls[0] += 1
        return asking(now)
    up._asking = counted
    return calls


async def test_a_drain_sends_the_next_block_in_the_draining_task(autojump_clock):
    a = Socket("a")
    up = Uploader(CachedSeed(a), TokenBucket(0))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(up.run)
        for begin in range(0, 4 * BLOCK, BLOCK):
            ask(up, a, 3, begin)
        await trio.testing.wait_all_tasks_blocked()
        assert a.sent == [(3, 0)] and a.backlog == BLOCK  # one block of room
        for n in range(2, 5):
            a.drain(up)  # no checkpoint between: the drain's own call sends it
            assert a.sent == [(3, begin) for begin in range(0, n * BLOCK, BLOCK)]
            assert a.backlog == BLOCK
        a.drain(up)  # nothing left to send: the uploader stays asleep
        await trio.testing.wait_all_tasks_blocked()
        assert a.backlog == 0 and up.uploaded == 4 * BLOCK
        assert trio.lowlevel.current_statistics().seconds_to_next_deadline == float("inf")
        nursery.cancel_scope.cancel()


class HalfAtHand(Seed):
    """Pieces 0-9 at hand, the others to read (an await)."""

    def block_now(self, index: int, begin: int, length: int) -> bytes | None:
        return bytes(length) if index < 10 else None


async def test_what_must_wait_is_left_to_the_task_in_order(autojump_clock):
    a, b = Socket("a"), Socket("b")
    up = Uploader(HalfAtHand(a, b), TokenBucket(0))
    a.backlog = b.backlog = UPLOAD_BACKLOG  # busy: nothing goes until they drain
    for p in (a, b):
        p.up.add(100 << 20, trio.current_time())  # fast: room for many blocks
    for index in (1, 12, 2):
        ask(up, a, index)
    ask(up, b, 4)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(up.run)
        await trio.testing.wait_all_tasks_blocked()
        assert a.sent == b.sent == []
        b.backlog = 0
        a.drain(up)  # a round here: a's 1 goes, its 12 must be read, so 2 and b's 4 wait
        assert a.sent == [(1, 0)] and b.sent == []
        await trio.testing.wait_all_tasks_blocked()
        assert a.sent == [(1, 0), (12, 0), (2, 0)] and b.sent == [(4, 0)]
        nursery.cancel_scope.cancel()


async def test_a_request_of_a_busy_peer_wakes_nobody(autojump_clock):
    a = Socket("a")
    up = Uploader(CachedSeed(a), TokenBucket(0))
    rounds = counting(up)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(up.run)
        ask(up, a, 1)
        await trio.testing.wait_all_tasks_blocked()
        assert a.sent == [(1, 0)] and a.backlog == BLOCK
        before = rounds[0]
        for index in range(2, 12):  # its socket is full: no round for these
            ask(up, a, index)
        await trio.testing.wait_all_tasks_blocked()
        assert rounds[0] == before and a.sent == [(1, 0)]
        a.drain(up)
        assert a.sent == [(1, 0), (2, 0)]
        nursery.cancel_scope.cancel()


async def test_a_timer_only_while_a_request_is_held_and_one_deadline(mock_clock):
    a, b, c = Socket("a"), Socket("b"), Socket("c")
    up = Uploader(CachedSeed(a, b, c), TokenBucket(0))

    def deadline() -> float:
        return trio.current_time() + \
            trio.lowlevel.current_statistics().seconds_to_next_deadline

    async def settle(seconds: float = 0.0) -> None:
        mock_clock.jump(seconds)
        await trio.testing.wait_all_tasks_blocked()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(up.run)
        ask(up, a, 5)
        ask(up, a, 6)
        await settle()
        assert a.sent == [(5, 0)]  # 6 waits for a's socket: no timer for it
        assert deadline() == float("inf")
        c.backlog = UPLOAD_BACKLOG
        ask(up, c, 7)  # fresh, c busy: b's request for 5 (just sent to a) is held
        ask(up, b, 5)
        await settle()
        assert b.sent == []
        first = deadline()
        assert first == trio.current_time() + HOLD_SECONDS / 4
        for _ in range(3):  # rounds meanwhile keep the deadline where it is
            await settle(0.1)
            a.drain(up)
            await settle()
            assert deadline() == first and b.sent == []
        await settle(first - trio.current_time())  # no hold has ended: again
        assert b.sent == [] and deadline() == first + HOLD_SECONDS / 4
        await settle(HOLD_SECONDS - 0.5 - trio.current_time())  # a round, still held
        assert b.sent == [] and deadline() == HOLD_SECONDS - 0.5 + HOLD_SECONDS / 4
        await settle(deadline() - trio.current_time())  # past the hold's end: it goes
        assert b.sent == [(5, 0)]
        c.drain(up)
        await settle()
        assert c.sent == [(7, 0)] and deadline() == float("inf")
        nursery.cancel_scope.cancel()
