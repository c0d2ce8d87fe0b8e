"""``torrentfs mount TORRENT MOUNTPOINT``: one torrent (a .torrent or a magnet link)
as a read-only filesystem, served by a daemon until unmounted (``--watch``: a folder
of torrents, in watch.py)."""

from __future__ import annotations

import gc
import logging
import math
import os
import signal
import sys
from functools import partial
from pathlib import Path

from torrentfs.cli import prefork, watch, zygote
from torrentfs.cli.args import (
    add_dht,
    add_encryption,
    add_log_level,
    add_lsd,
    add_max_open_files,
    add_metadata_timeout,
    add_metrics,
    add_origin,
    add_port_mapping,
    add_rates,
    add_transports,
    add_web_seeds,
    command,
    default_config_path,
    parse_peer,
    parse_seed_after,
    parse_size,
    torrent_options,
)
from torrentfs.cli.clusteropts import add_prefer_subnet
from torrentfs.cli.daemon import daemonise
from torrentfs.cli.errors import cache_folder_error
from torrentfs.cli.mountpoint import check_mountpoint
from torrentfs.cli.output import CliError, human, setup_logging
from torrentfs.cli.registry import SEEDING, Registration, lock_torrent
from torrentfs.cli.serve import (
    check_ports,
    check_someone_to_ask,
    free_port,
    keep_found,
    map_ports,
    start_dht,
    start_metrics,
    write_pid,
)
from torrentfs.cli.serve import run as run_trio
from torrentfs.cli.state import default_cache_dir, mount_state_file
from torrentfs.disk.private import private_dir
from torrentfs.engine.sources import cached_metainfo, fetch_metainfo, load_target

log = logging.getLogger("torrentfs")

# The early daemon (``prefork``) takes a torrent of at most this many files: its
# Metainfo is pickled to it, ~4 us a file each way, which past some 30,000 files
# costs more than the imports the early fork saves (a forked child shares it free).
EARLY_FILES = 20_000

MOUNT_EPILOG = """\
examples:
  torrentfs mount movie.torrent ~/movie
  torrentfs mount image.torrent /mnt/img --peer 10.0.0.5:6881 --no-dht
  torrentfs mount big.torrent /mnt/big --cache-size 20G --read-timeout 60
  torrentfs mount x.torrent /mnt/x -o allow_other,cache_dir=/var/cache/torrentfs
  torrentfs x.torrent /mnt/x -o allow_other      (the form mount(8) uses)

Every long option can also be set in the config file, as max-peers = 80 at
the top or under [mount] ({config}),
and with -o as max_peers=80 (as an fstab line does). The command line wins over
-o, and -o over the file.
-o also takes FUSE's options: allow_other (other users may read; needs
user_allow_other in /etc/fuse.conf unless root), allow_root, default_permissions,
fsname=NAME, subtype=NAME, noatime, nodev, nosuid, noexec, max_read=N. The mount is
always read-only; fstab's defaults, rw, nofail, _netdev, x-systemd.* are ignored.

The daemon logs to torrentfs.log in <cache-dir>/<info-hash>/.
"""


def add_parser(sub) -> None:
    m = command(sub, "mount", help="mount a .torrent on a directory",
                description="Mount TORRENT on MOUNTPOINT, read-only. Returns once the "
                "mount is ready, leaving a daemon that fetches the files' data from "
                "the swarm as it is read, verifies it, and keeps it in the cache. "
                "With --watch, TORRENT is a folder and every .torrent in it is shown "
                "as a folder of the mount, as files come and go.",
                epilog=MOUNT_EPILOG.format(config=default_config_path()))
    m.add_argument("torrent", metavar="TORRENT",
                   help=".torrent file or magnet link (with --watch: a folder)")
    m.add_argument("mountpoint", metavar="MOUNTPOINT", help="an empty directory")
    m.add_argument("-f", "--foreground", action="store_true",
                   help="stay in the foreground and log to stderr (Ctrl-C unmounts; "
                     "without -f, Ctrl-C before the mount is ready ends its daemon)")
    m.add_argument("--watch", action="store_true",
                   help="TORRENT is a folder: show every .torrent in it as a folder of "
                        "the mount, adding and removing them as files come and go "
                        "(mount --watch DIR MOUNTPOINT)")
    m.add_argument("-o", "--options", dest="o", action="append", default=[],
                   metavar="OPT[,OPT...]", type=lambda s: [o for o in s.split(",") if o],
                   help="mount options: FUSE's (allow_other, ...) and ours as key=value "
                        "(cache_dir=DIR, no_dht, ...), comma-separated; see below")
    net = m.add_argument_group("peers and network")
    net.add_argument("--peer", action="append", type=parse_peer, default=[],
                     metavar="HOST:PORT", help="connect to this peer too (repeatable)")
    net.add_argument("--port", type=int, default=0, metavar="N",
                     help="port to listen on for peers, TCP and uTP (UDP) (default: any "
                          "free port)")
    net.add_argument("--max-peers", type=int, default=50, metavar="N",
                     help="connect to at most N peers")
    add_rates(net)
    add_lsd(net)
    add_encryption(net)
    add_port_mapping(net)
    add_transports(net)
    add_dht(net)
    add_web_seeds(net)
    add_prefer_subnet(net)
    data = m.add_argument_group("cache and reading")
    data.add_argument("--cache-dir", metavar="DIR",
                      help=f"where downloaded data is kept (default: {default_cache_dir()})")
    data.add_argument("--cache-size", type=parse_size, metavar="SIZE",
                      help="keep at most SIZE of data on disk (e.g. 1G, 1.5G, 512M, 1T, "
                           "bytes), evicting the least recently read pieces (default: no "
                           "limit, unless the disk has less room than the torrent: then "
                           "one from its free space, with a warning)")
    data.add_argument("--prefetch", action="store_true",
                      help="download the whole torrent in the background, below reads")
    data.add_argument("--head-start", type=parse_size, default=8 << 20, metavar="SIZE",
                      help="listing a folder fetches the first and last pieces of its "
                           "videos in a lull of reads, up to SIZE per mount (default: 8M; "
                           "0: never)")
    data.add_argument("--read-timeout", type=float, default=0, metavar="SECONDS",
                      help="fail a read with EIO when a piece it needs does not arrive "
                           "for this long, counted from the read's first attempt (default: "
                           "0, wait for ever; Ctrl-C or kill of the reader still ends a "
                           "waiting read at once)")
    data.add_argument("--seed-after", type=parse_seed_after, metavar="LIMIT",
                      help="when unmounted with the whole torrent verified, keep seeding "
                           "until LIMIT: ratio=R (uploaded/size), time=T (e.g. 30m, 2h), "
                           "or both, comma-separated, whichever comes first ('torrentfs "
                           "list' shows the daemon, 'torrentfs stop' ends it)")
    net.add_argument("--no-pex", action="store_true",
                     help="no peer exchange (BEP 11): neither learn peers from peers nor "
                          "tell them ours")
    add_metadata_timeout(net)
    add_origin(net)
    add_max_open_files(data)
    m.add_argument("--no-resident", action="store_true",
                   help="neither use nor start the resident process that makes mounts "
                        "quick (also: no-resident = true in the config file, or "
                        "TORRENTFS_RESIDENT=0; see: torrentfs resident --help)")
    add_metrics(m.add_argument_group("running as a service"))
    add_log_level(m.add_argument_group("logging"))
    m.set_defaults(func=run)


def run(args) -> int:
    if args.no_resident and zygote.caller is not None:
        raise zygote.RunLocally()  # from the config file: the launcher runs it
    check_ports(args)  # a port in use: one line now, not from the daemon
    if args.watch:  # many torrents in one mount
        return watch.run(args)
    # A torrent of 100,000 files is a million objects: no collection passes over them
    # while they are made (a fifth of the parse, half of the tree); once mounted they
    # are frozen out of later collections (``serve``).
    gc.disable()
    try:
        return _run(args)
    finally:
        gc.enable()


def _run(args) -> int:
    meta, magnet = load_target(args.torrent)
    mountpoint = check_mountpoint(args.mountpoint)
    os.umask(0o077)  # everything the daemon creates is the user's alone
    cache = Path(args.cache_dir or default_cache_dir()).absolute()
    folder = cache / (meta or magnet).info_hash.hex()
    try:
        private_dir(cache)
        private_dir(folder)
    except OSError as e:
        raise cache_folder_error(folder, e) from None
    if meta is None:
        meta = cached_metainfo(magnet, folder)  # None: the daemon fetches it first
        if meta is None:
            check_someone_to_ask(magnet, args.peer, dht=not args.no_dht)
    if (meta is not None and args.cache_size is not None
            and args.cache_size < 2 * meta.piece_length):
        raise CliError(f"--cache-size {human(args.cache_size)} is too small: this torrent "
                       f"needs at least two pieces ({human(2 * meta.piece_length)})")
    if meta is not None and args.cache_size is None:
        args.cache_size, args.cache_size_note = cache_limit_from_free_space(meta, folder)
        if args.cache_size is not None:  # one line now; the daemon logs it too
            args.cache_size_auto = True
            print(f"torrentfs: warning: {args.cache_size_note}", file=sys.stderr, flush=True)
    # One daemon per torrent and cache folder; a forked daemon holds the lock on.
    lock = lock_torrent(folder, mountpoint)
    if args.foreground:
        prefork.cancel()  # no daemon: this process serves
        setup_logging(args.log_level, stream=sys.stderr)
        return serve(meta, magnet, mountpoint, folder, args, ready=lambda msg: None,
                     lock=lock)
    if not args.no_resident:
        prefork.resident_allowed = True  # the launcher may start one as it exits
    return daemonise(partial(serve, meta, magnet, mountpoint, folder, args, lock=lock),
                     mountpoint=mountpoint, logfile=folder / "torrentfs.log",
                     log_level=args.log_level,
                     extra_wait=args.metadata_timeout if meta is None else 0,
                     early=meta is None or len(meta.files) <= EARLY_FILES)


def preload() -> None:
    """Import what ``serve`` imports before it can mount: the early daemon
    (``prefork``) does it while its parent parses the command line."""
    from torrentfs.cli.quickimport import import_trio_pyfuse3
    import_trio_pyfuse3()  # without their side trips (ldconfig, a distribution scan)

    from torrentfs.core.tree import Tree  # noqa: F401
    from torrentfs.engine.status import publish  # noqa: F401
    from torrentfs.engine.torrent import Torrent  # noqa: F401
    from torrentfs.fs.fuse import TorrentFS  # noqa: F401


def cache_limit_from_free_space(meta, folder: Path) -> tuple[int | None, str]:
    """With no --cache-size, a cache folder on a disk with less room than the
    torrent gets a limit from its free space, so that the disk never fills: the
    limit (None if the torrent fits) and the warning that says so."""
    from torrentfs.disk.space import NoRoom, free_space_limit
    try:
        return free_space_limit(folder, meta.total_length, meta.piece_length)
    except NoRoom as e:
        raise CliError(str(e)) from None


def web_seeds(meta, args) -> list[str]:
    """The web seeds a mount uses: the torrent's, unless --no-web-seeds, and --web-seed."""
    return [*(() if args.no_web_seeds else meta.url_list), *args.web_seed]


def serve(meta, magnet, mountpoint: str, folder: Path, args, ready, progress=None,
          lock=None) -> int:
    """Serve the mount until unmounted. With no ``meta`` (a magnet whose metadata is
    not cached), fetch the metadata first: the mount appears, and ``ready`` is
    called, only once the tree is known. The daemon is in the registry meanwhile
    (``torrentfs list``); ``lock`` is the torrent's (``disk.lock``), held until the end."""
    preload()  # (done already in the early daemon)
    import trio

    from torrentfs.core.tree import Tree
    from torrentfs.engine.status import publish, publish_now, status_path
    from torrentfs.engine.torrent import Torrent, make_peer_id
    from torrentfs.fs.fuse import TorrentFS, mounted

    state = mount_state_file(folder.parent, mountpoint)
    if lock is not None:
        lock.update(mountpoint=mountpoint, what="mounted on")  # our pid, once forked
    reg = Registration(
        kind="mount", state="fetching metadata" if meta is None else "starting",
        mountpoint=mountpoint, name=meta and meta.name,
        source=args.torrent if magnet else os.path.abspath(args.torrent),
        info_hash=folder.name, cache=str(folder), status=str(status_path(state)),
        log=str(folder / "torrentfs.log"), until=None)
    phase = {"state": "mounted"}

    async def main() -> None:
        nonlocal meta
        peer_id, port, peers = make_peer_id(), args.port, list(args.peer)
        cache = folder.parent  # absolute: made so by run()
        async with trio.open_nursery() as nursery:
            dht = None
            if meta is None:
                gc.enable()  # the fetch may take minutes: collect meanwhile
                port = port or free_port()
                # The DHT is up first: a magnet's metadata may come from peers only
                # it knows (never for a private torrent, which a magnet can't say).
                dht = await start_dht(nursery, args, cache, port)
                t0 = trio.current_time()
                meta, peers = await fetch_metainfo(
                    magnet, folder, peer_id=peer_id, port=port, peers=args.peer,
                    timeout=args.metadata_timeout, progress=progress, dht=dht,
                    encryption=args.encryption)
                log.info("metadata of %s (%s) fetched in %.2f s", meta.info_hash.hex(),
                         meta.name, trio.current_time() - t0)
                if args.cache_size is None:
                    args.cache_size, args.cache_size_note = \
                        cache_limit_from_free_space(meta, folder)
                    args.cache_size_auto = args.cache_size is not None
            elif magnet is not None:
                log.info("metadata of %s (%s) from the cache", meta.info_hash.hex(), meta.name)
                peers += magnet.peers
            if getattr(args, "cache_size_auto", False):
                log.warning("%s", args.cache_size_note)
            options = torrent_options(args, port=port, peers=peers,
                                      web_seeds=web_seeds(meta, args))
            torrent = Torrent(meta, folder, options, peer_id=peer_id,
                              utp=dht.transport if dht is not None else None)
            fs = TorrentFS(torrent, Tree.from_metainfo(meta))
            await nursery.start(torrent.run)  # a port taken since: one line (run_trio)
            await start_metrics(nursery, args, lambda: [torrent])
            if dht is None and not meta.private:
                dht = await start_dht(nursery, args, cache, torrent.port,
                                      torrent.connector.utp)
            if dht is not None and not meta.private:
                keep_found(nursery, dht, torrent)
            map_ports(nursery, args, torrent.port, dht)
            async with mounted(fs, mountpoint, args.o) as mount:
                write_pid(state)
                log.info("mounted %s on %s (info-hash %s, port %d)",
                         meta.name, mountpoint, meta.info_hash.hex(), torrent.port)
                # `torrentfs status` reads what this publishes.
                nursery.start_soon(partial(publish, lambda: [torrent], status_path(state),
                                           mountpoint, extra=lambda: phase))

                def mounted_now() -> None:
                    gc.freeze()  # the torrent, the tree...: kept till the end (``run``)
                    gc.enable()
                    reg.update(state="mounted", name=meta.name)
                    ready(None)

                await mount.serve(ready=mounted_now)
                reg.update(state="unmounting")  # `torrentfs unmount` sees we saw it
            if args.seed_after and torrent.seeding:
                state.unlink(missing_ok=True)  # `torrentfs unmount` need not wait on us

                def seeding(until: str) -> None:  # SIGTERM now ends the seeding
                    phase["state"] = SEEDING
                    # The status file first: `torrentfs status` says so as soon as
                    # the registry (`list`, `unmount`) does.
                    publish_now(lambda: [torrent], status_path(state), mountpoint,
                                extra=lambda: phase)
                    reg.update(state=SEEDING, until=until)
                    if lock is not None:
                        lock.update(mountpoint=mountpoint, what="seeded after the unmount of")

                await seed_after(torrent, args.seed_after, seeding)
            nursery.cancel_scope.cancel()

    try:
        run_trio(main, args.port)
    finally:
        state.unlink(missing_ok=True)  # after trackers were told and state was saved
        reg.remove()
    log.info("stopped")
    return 0


async def seed_after(torrent, limits: dict[str, float], started=lambda until: None) -> None:
    """Keep seeding after the unmount until the ratio or time limit (or SIGINT or
    SIGTERM: ``torrentfs stop``). ``started(until)`` is called once those signals
    are heard."""
    import trio
    size = torrent.geometry.total_length or 1
    start_up, t0 = torrent.uploaded, trio.current_time()
    until = " or ".join(f"{k} {v:g}" + (" s" if k == "time" else "")
                        for k, v in limits.items())
    log.info("unmounted; seeding on until %s", until)
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as sigs:
        started(until)
        with trio.move_on_after(limits.get("time", math.inf)):
            async with trio.open_nursery() as n:
                async def watch_ratio() -> None:
                    while (torrent.uploaded - start_up) / size < limits.get("ratio", math.inf):
                        await trio.sleep(1)
                    n.cancel_scope.cancel()

                async def watch_signals() -> None:
                    async for _ in sigs:
                        n.cancel_scope.cancel()

                n.start_soon(watch_ratio)
                n.start_soon(watch_signals)
    log.info("seeding after unmount done: uploaded %d bytes (ratio %.2f) in %.0f s",
             torrent.uploaded - start_up, (torrent.uploaded - start_up) / size,
             trio.current_time() - t0)
