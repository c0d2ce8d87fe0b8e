"""HAVEs of verified pieces leave in batches (engine/haves.py): queued lazily, one
flush of each peer HAVE_DELAY after the first of a batch, no timer while none
waits. Time is trio's autojump clock."""

from __future__ import annotations

import trio

from torrentfs.core import wire
from torrentfs.core.bitfield import Bitfield
from torrentfs.engine.haves import HAVE_DELAY, HaveBatcher


class Session:
    def __init__(self, registered: bool = True, interested: bool = False) -> None:
        self.registered = registered
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


class Torrent:
    def __init__(self, *sessions: Session, pieces: int = 4) -> None:
        self.sessions = dict(enumerate(sessions))
        self.have = Bitfield(pieces)


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


async def test_complete_tells_interesting_peers_we_are_not_interested(autojump_clock):
    keen, other = Session(interested=True), Session()
    t = Torrent(keen, other, pieces=1)
    batcher = HaveBatcher(t)
    t.have.add(0)
    batcher.announce(0)
    assert keen.sent == [wire.NotInterested()] and other.sent == []
    assert keen.lazy == [wire.Have(0)] == other.lazy
