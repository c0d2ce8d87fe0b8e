"""``torrentfs create PATH -o FILE``: make a .torrent of a file or a directory."""

from __future__ import annotations

import os
from pathlib import Path

from torrentfs.cli.args import (
    add_log_level,
    command,
    parse_size,
    parse_tracker,
    parse_web_seed,
)
from torrentfs.cli.output import CliError, human, progress_bar
from torrentfs.core.magnet import link as magnet_link


def add_parser(sub) -> None:
    c = command(sub, "create", help="make a .torrent of a file or directory",
                description="Make a torrent of PATH, a file or a directory (its regular "
                "files, sorted; symlinks skipped).",
                epilog="examples:\n"
                       "  torrentfs create ./image.raw -o image.torrent\n"
                       "  torrentfs create ./dataset -o dataset.torrent \\\n"
                       "      -t http://tracker.lan:6969/announce --piece-size 4M --private")
    c.add_argument("path", metavar="PATH", help="the file or directory to share")
    c.add_argument("-o", "--output", required=True, metavar="FILE", help="the .torrent to write")
    c.add_argument("-f", "--force", action="store_true",
                   help="overwrite FILE if it exists (default: refuse)")
    c.add_argument("-t", "--tracker", action="append", metavar="URL", type=parse_tracker,
                   help="announce URL with its scheme: http://HOST:PORT/announce, https:// "
                        "or udp://HOST:PORT (repeatable; each is its own tier; default: "
                        "none, peers come from the DHT, LSD or --peer)")
    c.add_argument("--piece-size", type=parse_size, metavar="SIZE",
                   help="piece size, a power of two >= 16K (default: chosen from the size)")
    c.add_argument("--web-seed", action="append", type=parse_web_seed, metavar="URL",
                   help="HTTP(S) URL of a server holding the same files (BEP 19 url-list; "
                        "repeatable): a file's URL, or a folder's ending in '/'")
    c.add_argument("--comment", metavar="TEXT", help="a comment stored in the torrent")
    c.add_argument("--private", action="store_true",
                   help="set the private flag (BEP 27): trackers only, no DHT, LSD or PEX")
    kind = c.add_mutually_exclusive_group()
    kind.add_argument("--v2", dest="version", action="store_const", const="v2",
                      help="a BitTorrent v2 torrent (BEP 52: SHA-256 merkle trees); only "
                           "v2 clients (libtorrent 2, qBittorrent 4.4+) can use it")
    kind.add_argument("--hybrid", dest="version", action="store_const", const="hybrid",
                      help="a hybrid v1+v2 torrent (what libtorrent 2 makes by default): "
                           "files padded to piece boundaries")
    add_log_level(c, default="warning")
    c.set_defaults(func=run, version="v1")


def run(args) -> int:
    from torrentfs.disk.create import CreateError, create_torrent
    out = Path(args.output)
    if not args.force and (out.exists() or out.is_symlink()):
        raise CliError(f"{out} exists: give --force to overwrite it, or another -o FILE")
    if out.is_dir():
        raise CliError(f"{out} is a directory: -o names the .torrent file to write")
    try:
        with progress_bar("hashing") as progress:  # a bar on a terminal only
            data = create_torrent(args.path, trackers=args.tracker or [],
                                  web_seeds=args.web_seed or [],
                                  piece_length=args.piece_size, comment=args.comment,
                                  private=args.private, progress=progress,
                                  version=args.version)
    except CreateError as e:
        raise CliError(str(e)) from None
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, out)
    except OSError as e:
        raise CliError(f"{out}: cannot write: {e.strerror}") from None
    from torrentfs.core.metainfo import parse
    meta = parse(data)
    print(f"created {out}: {meta.name}, {human(meta.total_length)}, "
          f"{meta.num_pieces} pieces of {human(meta.piece_length)}")
    print(f"info-hash: {meta.info_hash.hex()}")
    if meta.info_hash_v2 is not None:
        print(f"info-hash v2: {meta.info_hash_v2.hex()}")
    print(f"magnet:    {magnet_link(meta)}")
    return 0
