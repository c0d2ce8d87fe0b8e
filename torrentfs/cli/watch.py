"""``torrentfs mount --watch DIR MOUNTPOINT``: every .torrent (and .magnet) in DIR as
a folder of one mount, as files come and go (``engine.multi``, ``fs.multifs``)."""

from __future__ import annotations

import logging
import os
import sys
from functools import partial
from pathlib import Path

from torrentfs.cli.args import torrent_options
from torrentfs.cli.daemon import daemonise
from torrentfs.cli.errors import cache_folder_error
from torrentfs.cli.mountpoint import check_mountpoint
from torrentfs.cli.output import CliError, setup_logging
from torrentfs.cli.registry import Registration
from torrentfs.cli.serve import map_ports, open_dht, start_metrics, write_pid
from torrentfs.cli.serve import run as run_trio
from torrentfs.cli.state import default_cache_dir, mount_log_file, mount_state_file
from torrentfs.disk.private import private_dir
from torrentfs.engine.sources import watch_loader

log = logging.getLogger("torrentfs")


def run(args) -> int:
    """``mount --watch DIR MOUNTPOINT``: every .torrent in DIR, one folder each."""
    watched = Path(args.torrent)
    if not watched.is_dir():
        raise CliError(f"--watch {args.torrent}: not a directory")
    if args.seed_after:
        raise CliError("--seed-after cannot be used with --watch")
    mountpoint = check_mountpoint(args.mountpoint)
    os.umask(0o077)
    cache = Path(args.cache_dir or default_cache_dir()).absolute()
    logfile = mount_log_file(cache, mountpoint)
    try:
        private_dir(cache)
        private_dir(logfile.parent)
    except OSError as e:
        raise cache_folder_error(cache, e) from None
    serve_it = partial(serve, watched.resolve(), mountpoint, cache, args)
    if args.foreground:
        setup_logging(args.log_level, stream=sys.stderr)
        return serve_it(lambda msg: None)
    return daemonise(serve_it, mountpoint=mountpoint, logfile=logfile,
                     log_level=args.log_level)


def serve(watched: Path, mountpoint: str, cache: Path, args, ready, progress=None) -> int:
    """Serve the watched folder's torrents on ``mountpoint`` until unmounted."""
    import trio

    from torrentfs.engine.multi import MultiMount, Shared, TorrentTag
    from torrentfs.engine.status import publish, status_path
    from torrentfs.fs.fuse import mounted
    from torrentfs.fs.multifs import MultiFS

    state = mount_state_file(cache, mountpoint)
    reg = Registration(kind="watch", mountpoint=mountpoint, source=str(watched),
                       name=None, info_hash=None, cache=str(cache),
                       status=str(status_path(state)),
                       log=str(mount_log_file(cache, mountpoint)), until=None)

    for handler in logging.getLogger().handlers:
        handler.addFilter(TorrentTag())

    async def main() -> None:
        fs = MultiFS(root_facts=lambda: root_facts(multi))
        shared = Shared(args.max_peers, args.upload_rate or None, args.download_rate or None)
        dht = None if args.no_dht else partial(open_dht, args=args, cache=cache)
        options = torrent_options(args)  # its peers: --peer and --origin's
        multi = MultiMount(
            watched, fs, cache, shared, port=args.port, peers=options.peers, open_dht=dht,
            load=watch_loader(cache, lambda: multi.port, peers=args.peer,
                              timeout=args.metadata_timeout),
            torrent_options=options, mountpoint=mountpoint)
        async with trio.open_nursery() as nursery:
            # Mounted first: the torrents already in the folder are shown (and the
            # kernel told) as they start.
            async with mounted(fs, mountpoint, args.o) as mount:
                await nursery.start(multi.run)  # a port in use: one line (run_trio)
                await start_metrics(nursery, args, partial(served, multi))
                map_ports(nursery, args, multi.port, multi.dht)
                write_pid(state)
                log.info("mounted %s on %s: %d torrents, port %d", watched, mountpoint,
                         len(fs.names()), multi.port)
                nursery.start_soon(partial(publish, partial(shown, multi), status_path(state),
                                           mountpoint, extra=partial(watch_facts, multi)))

                def mounted_now() -> None:
                    reg.update(state="mounted")
                    ready(None)

                await mount.serve(ready=mounted_now)
                reg.update(state="unmounting")  # `torrentfs unmount` sees we saw it
            nursery.cancel_scope.cancel()

    try:
        run_trio(main, args.port)
    finally:
        state.unlink(missing_ok=True)
        reg.remove()
    log.info("stopped")
    return 0


class _Shown:
    """A torrent of the watch mount as the status file shows it: its snapshot with
    the file it came from and its folder in the mount."""

    def __init__(self, entry) -> None:
        self.entry = entry

    def status(self) -> dict:
        return {**self.entry.torrent.status(), "file": self.entry.file,
                "folder": self.entry.folder}


def served(multi) -> list:
    """The torrents the watch mount serves now (for --metrics)."""
    return [e.torrent for e in multi.by_file.values() if e.torrent is not None]


def shown(multi) -> list[_Shown]:
    return [_Shown(e) for e in multi.by_file.values()
            if e.torrent is not None and e.folder is not None]


def watch_facts(multi) -> dict:
    """The watch mount's own fields of the status file (``engine.status``)."""
    return {"state": "mounted", "watched": str(multi.folder),
            "skipped": [{"file": f, "why": why} for f, why in sorted(multi.skipped.items())],
            "fetching": multi.fetching()}


def root_facts(multi) -> dict[str, str]:
    """The watch mount's root xattrs beside the count of torrents: what was skipped
    and why, one file a line, and the magnets being fetched."""
    facts = {}
    if multi.skipped:
        facts["skipped"] = "\n".join(f"{f}: {why}" for f, why in sorted(multi.skipped.items()))
    fetching = multi.fetching()
    if fetching:
        facts["fetching"] = "\n".join(fetching)
    return facts
