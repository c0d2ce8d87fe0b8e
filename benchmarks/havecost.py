"""CPU per HAVE, with no sockets (issue 13: at a trickle a node of a 32-node cluster
queued ~31,700 HAVEs and heard as many per 32 MiB, against ~2,048 blocks).

``announce``: ``HaveBatcher.announce`` of each piece to ``--peers`` peers, stand-in
sessions whose ``send_lazy`` encodes and queues a HAVE as ``PeerSession`` does; each
peer has a random half of the pieces (a cluster reading in step), so about half of
them are not told (engine/haves.py). ``got_haves``: ``engine/havesin.got_haves`` of
every peer's HAVE of every piece, one per run, into a real Picker with every piece
raised (we have a random half). What neither counts: the session's encoding checks,
the sends, receives and wake-ups, and the uploader's ``announced``.

``python -m benchmarks.havecost [--pieces 1024] [--peers 31]``. Another build: run
this file as a script with that build's ``torrentfs`` alone on ``PYTHONPATH`` (the
file imports nothing else of the project): ``PYTHONPATH=DIR .venv/bin/python
benchmarks/havecost.py``, DIR holding only ``torrentfs/`` of a ``git archive``."""

from __future__ import annotations

import argparse
import random
import struct
import time

from torrentfs.core.bitfield import Bitfield
from torrentfs.core.geometry import Geometry
from torrentfs.core.picker import READAHEAD, Picker
from torrentfs.engine.haves import HaveBatcher
from torrentfs.engine.havesin import got_haves
from torrentfs.engine.locality import Nearby

_HAVE = struct.Struct(">IBI")


class _Session:
    def __init__(self, i: int) -> None:
        self.registered = True
        self.am_interested = True
        self.peer_choking = False
        self.addr = (f"10.0.{i // 250}.{i % 250 + 1}", 6881)
        self.out: list[bytes] = []

    def send_lazy(self, msg) -> None:
        self.out.append(_HAVE.pack(5, 4, msg.index))

    def send(self, msg) -> None:
        pass

    def flush(self) -> None:
        self.out.clear()


class _Requests:
    def cancel(self, *args) -> None:
        pass


class _Torrent:
    def __init__(self, pieces: int, peers: int) -> None:
        self.have = Bitfield(pieces)
        self.picker = Picker(Geometry(32768, (pieces * 32768,)), self.have)
        self.nearby = Nearby(None, pieces)
        self.seed_only = False
        self._fills: dict = {}
        self.requests = _Requests()
        self.sessions = {i: _Session(i) for i in range(peers)}
        for s in self.sessions.values():
            self.picker.add_peer(s)
        self.picker.raise_priority("read", list(range(pieces)), READAHEAD, 10.0)


def measure(pieces: int = 1024, peers: int = 31, seed: int = 1) -> dict[str, float]:
    """Microseconds of CPU per piece announced and per HAVE heard."""
    rng = random.Random(seed)
    t = _Torrent(pieces, peers)
    for s in t.sessions.values():
        for i in rng.sample(range(pieces), pieces // 2):
            t.picker.got_have(s, i)
    batcher = HaveBatcher(t)
    t0 = time.process_time()
    for i in rng.sample(range(pieces), pieces):
        t.have.add(i)
        batcher.announce(i)
        for s in t.sessions.values():
            s.out.clear()
    announce = (time.process_time() - t0) / pieces
    t = _Torrent(pieces, peers)
    for i in rng.sample(range(pieces), pieces // 2):
        t.have.add(i)
        t.picker.piece_verified(i)
    heard = [(s, i) for s in t.sessions.values() for i in range(pieces)]
    rng.shuffle(heard)
    t0 = time.process_time()
    for s, i in heard:
        got_haves(t, s, [i])
    heard_each = (time.process_time() - t0) / len(heard)
    return {"announce_us_per_piece": announce * 1e6,
            "got_haves_us_per_have": heard_each * 1e6}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.havecost",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--pieces", type=int, default=1024)
    ap.add_argument("--peers", type=int, default=31)
    args = ap.parse_args(argv)
    r = measure(args.pieces, args.peers)
    print(f"announce: {r['announce_us_per_piece']:.1f} us per piece to {args.peers} "
          f"peers; got_haves: {r['got_haves_us_per_have']:.2f} us per HAVE heard")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
