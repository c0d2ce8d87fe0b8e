"""What the commands that serve (mount, mount --watch, seed) share: running trio
with one-line errors, the pid file ``torrentfs unmount`` and ``status`` find the
daemon by, and the DHT node."""

from __future__ import annotations

import logging
import os
import socket
from functools import partial
from pathlib import Path

from torrentfs.cli.output import CliError
from torrentfs.disk.private import private_dir, write_private
from torrentfs.engine.sources import SourceError

log = logging.getLogger("torrentfs")


def run(main) -> None:
    """``trio.run(main)`` for the commands that serve: a user's error raised inside
    (a CliError, a SourceError, a MountError, an OSError) comes out as one CliError
    (not in an exception group; ``failure.describe`` words an OSError), and Ctrl-C
    before the signal receivers are up ends quietly."""
    import trio

    from torrentfs.fs.fuse import MountError
    try:
        trio.run(main)
    except* (CliError, SourceError, MountError) as eg:
        e = eg.exceptions[0]
        while isinstance(e, BaseExceptionGroup):
            e = e.exceptions[0]
        raise (e if isinstance(e, CliError) else CliError(str(e))) from None
    except* OSError as eg:  # the cache, a socket, the open-files limit: say what to do
        from torrentfs.cli.failure import describe
        raise CliError(describe(eg)) from None
    except* KeyboardInterrupt:
        pass


def write_pid(state: Path) -> None:
    """Say that this process serves the mount whose state file is ``state``."""
    private_dir(state.parent)
    write_private(state, f"{os.getpid()}\n".encode())


def free_port() -> int:
    """A TCP port free right now (announced while the metadata is fetched)."""
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


async def start_dht(nursery, args, cache: Path, port: int):
    """A DHT node on UDP port ``port`` (or --dht-port) in ``nursery``, or None with
    --no-dht. Callers keep private torrents (BEP 27) off it."""
    if args.no_dht:
        return None
    return await open_dht(nursery, port, args=args, cache=cache)


async def open_dht(nursery, port: int, *, args, cache: Path):
    """Start the DHT node (on ``--dht-port``, else UDP ``port`` if free, else any)."""
    from torrentfs.net.dht import DHT
    explicit = args.dht_port is not None
    dht = DHT(port=args.dht_port if explicit else port, bootstrap=args.dht_bootstrap,
              state_path=cache / "dht.state")
    try:
        await nursery.start(dht.run)
    except OSError as e:
        if explicit:
            raise CliError(f"cannot use UDP port {args.dht_port} for the DHT: "
                           f"{e.strerror}") from None
        log.info("UDP port %d is taken (%s): the DHT takes another", dht.port, e.strerror)
        dht.port = 0
        await nursery.start(dht.run)
    return dht


def keep_found(nursery, dht, torrent) -> None:
    """Find the torrent's peers on the DHT, and announce our port there, for as
    long as it runs."""
    from torrentfs.net.dht import keep_torrent_found
    nursery.start_soon(partial(keep_torrent_found, dht, torrent.meta.info_hash,
                               port=lambda: torrent.port, add_peer=torrent.add_peer,
                               peer_count=lambda: len(torrent.sessions)))
