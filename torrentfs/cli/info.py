"""``torrentfs info TORRENT``: what a .torrent or a magnet link holds."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

from torrentfs.cli.args import add_log_level, add_metadata_timeout, command, parse_peer
from torrentfs.cli.errors import cache_folder_error
from torrentfs.cli.output import human, terminal_progress
from torrentfs.cli.serve import check_someone_to_ask, free_port
from torrentfs.cli.state import default_cache_dir
from torrentfs.core.magnet import link as magnet_link
from torrentfs.disk.private import private_dir
from torrentfs.engine.sources import cached_metainfo, fetch_metainfo, load_target


def add_parser(sub) -> None:
    i = command(sub, "info", help="show what a .torrent or magnet link holds",
                description="Print the torrent's name, info-hash, size, pieces, trackers, "
                "magnet link and file list. For a magnet link the metadata is fetched "
                "from its peers first (and cached).",
                epilog="examples:\n  torrentfs info ubuntu.torrent\n"
                       "  torrentfs info 'magnet:?xt=urn:btih:...&tr=...'")
    i.add_argument("torrent", metavar="TORRENT", help=".torrent file or magnet link")
    i.add_argument("--peer", action="append", type=parse_peer, default=[],
                   metavar="HOST:PORT", help="ask this peer for a magnet's metadata too")
    i.add_argument("--cache-dir", metavar="DIR", help="where fetched metadata is cached")
    add_metadata_timeout(i)
    add_log_level(i, default="warning")
    i.set_defaults(func=run)


def run(args) -> int:
    meta, magnet = load_target(args.torrent)
    if meta is None:
        meta = _info_of_magnet(magnet, args)
    print(f"name:       {meta.name}")
    print(f"version:    {meta.version}")
    print(f"info-hash:  {meta.info_hash.hex()}"
          + ("  (v2 info-hash cut to 20 bytes)" if meta.version == "v2" else ""))
    if meta.info_hash_v2 is not None:
        print(f"info-hash v2: {meta.info_hash_v2.hex()}")
    print(f"size:       {human(meta.total_length)} ({meta.total_length} bytes)")
    print(f"pieces:     {meta.num_pieces} x {human(meta.piece_length)}")
    if meta.private:
        print("private:    yes")
    if meta.comment:
        print(f"comment:    {meta.comment}")
    if meta.created_by:
        print(f"created by: {meta.created_by}")
    for n, tier in enumerate(meta.announce_list):
        for url in tier:
            print(f"tracker:    {url}  (tier {n})")
    for url in meta.url_list:
        print(f"web seed:   {url}")
    print(f"magnet:     {magnet_link(meta)}")
    shown = [f for f in meta.files if not f.padding]
    print(f"files:      {len(shown)}")
    for f in shown:
        path = "/".join((meta.name, *f.path)) if meta.multi_file else meta.name
        print(f"  {f.length:>14}  {path}")
    return 0


def _info_of_magnet(magnet, args):
    """Fetch (or take from the cache) a magnet's metadata for ``info``."""
    import trio

    from torrentfs.engine.torrent import make_peer_id
    folder = Path(args.cache_dir or default_cache_dir()) / magnet.info_hash_hex
    try:
        private_dir(folder, tighten=False)
    except OSError as e:
        raise cache_folder_error(folder, e) from None
    meta = cached_metainfo(magnet, folder)
    if meta is not None:
        return meta
    check_someone_to_ask(magnet, args.peer, dht=None)  # info does not use the DHT
    progress = terminal_progress()
    try:
        meta, _ = trio.run(partial(
            fetch_metainfo, magnet, folder, peer_id=make_peer_id(), port=free_port(),
            peers=args.peer, timeout=args.metadata_timeout, progress=progress))
    finally:
        if progress:
            print(file=sys.stderr)
    return meta
