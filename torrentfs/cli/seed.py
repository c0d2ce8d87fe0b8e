"""``torrentfs seed TORRENT DATA_DIR``: serve a finished download to the swarm."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path

from torrentfs.cli.args import (
    add_dht,
    add_encryption,
    add_log_level,
    add_lsd,
    add_max_open_files,
    add_metrics,
    add_port_mapping,
    add_rates,
    add_transports,
    command,
    parse_peer,
    torrent_options,
)
from torrentfs.cli.clusteropts import add_prefer_subnet, add_super_seed
from torrentfs.cli.output import CliError, progress_bar, setup_logging
from torrentfs.cli.registry import Registration, lock_torrent
from torrentfs.cli.serve import check_ports, keep_found, map_ports, start_dht, start_metrics
from torrentfs.cli.serve import run as run_trio
from torrentfs.cli.state import default_cache_dir
from torrentfs.engine.sources import load_torrent

log = logging.getLogger("torrentfs")

SEED_EPILOG = """\
examples:
  torrentfs seed image.torrent /srv/images
  torrentfs seed image.torrent /srv/images --port 6881 --upload-rate 50M

DATA_DIR holds the torrent's file (single-file torrent) or its top folder. Options
can be set in the config file, at the top or under [seed]. Stop with Ctrl-C or
SIGTERM.
"""


def add_parser(sub) -> None:
    sd = command(sub, "seed", help="serve a finished download to the swarm (no mount)",
                 description="Verify the torrent's data in DATA_DIR and serve it to the "
                 "swarm as an origin until interrupted. Nothing is written to DATA_DIR.",
                 epilog=SEED_EPILOG)
    sd.add_argument("torrent", metavar="TORRENT", help="the .torrent file")
    sd.add_argument("data_dir", metavar="DATA_DIR",
                    help="the folder holding the torrent's file or top folder")
    sd.add_argument("--port", type=int, default=0, metavar="N",
                    help="port to listen on, TCP and uTP (UDP) (default: any free port)")
    sd.add_argument("--peer", action="append", type=parse_peer, default=[],
                    metavar="HOST:PORT", help="connect to this peer too (repeatable)")
    sd.add_argument("--max-peers", type=int, default=50, metavar="N",
                    help="serve at most N peers at once")
    add_rates(sd)
    add_lsd(sd)
    add_encryption(sd)
    add_port_mapping(sd)
    add_transports(sd)
    add_dht(sd)
    add_prefer_subnet(sd)
    add_super_seed(sd)
    sd.add_argument("--cache-dir", metavar="DIR",
                    help=f"where our state is kept (default: {default_cache_dir()})")
    add_max_open_files(sd)
    add_metrics(sd)
    add_log_level(sd)
    sd.set_defaults(func=run)


def run(args) -> int:
    """Verify the data in DATA_DIR and serve it to the swarm until interrupted."""
    import trio

    from torrentfs.engine.torrent import Torrent
    meta = load_torrent(args.torrent)
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise CliError(f"{args.data_dir}: no such directory")
    if not (data_dir / meta.name).exists():
        raise CliError(f"{args.data_dir}: has no {meta.name!r} (the torrent's "
                       f"{'folder' if meta.multi_file else 'file'})")
    check_ports(args)  # before the verification, which may take long
    setup_logging(args.log_level, stream=sys.stderr)
    os.umask(0o077)  # our state files are the user's alone
    cache = Path(args.cache_dir or default_cache_dir()).absolute()
    state = cache / meta.info_hash.hex()
    lock = lock_torrent(state, str(data_dir.absolute()), what="seeded from")  # one a torrent
    reg = Registration(kind="seed", state="verifying", mountpoint=None, source=os.path.abspath(args.torrent),
                       name=meta.name, info_hash=meta.info_hash.hex(), cache=str(state),
                       status=None, log=None, until=None)

    async def main() -> None:
        torrent = Torrent(meta, state, torrent_options(args, seed_only=True,
                                                       data_dir=data_dir))
        async with trio.open_nursery() as nursery:
            with progress_bar("verifying", unit="pieces") as progress:  # a terminal only
                torrent.check_progress = progress
                await nursery.start(torrent.run)  # a port taken since: one line (run_trio)
            have = torrent.have
            print(f"seeding {meta.name}: {have.count} of {have.size} pieces verified, "
                  f"port {torrent.port}", file=sys.stderr, flush=True)
            if not have.count:
                raise CliError(f"no piece of {meta.name} in {data_dir} verifies")
            reg.update(state="seeding")
            await start_metrics(nursery, args, lambda: [torrent])
            dht = None
            if not meta.private:
                dht = await start_dht(nursery, args, cache, torrent.port,
                                      torrent.connector.utp)
                if dht is not None:
                    keep_found(nursery, dht, torrent)
            map_ports(nursery, args, torrent.port, dht)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as sigs:
                async for sig in sigs:
                    log.info("got %s: stopping", signal.Signals(sig).name)
                    break
            nursery.cancel_scope.cancel()

    try:
        run_trio(main, args.port)
    finally:
        reg.remove()
        lock.release()
    return 0
