"""The ``torrentfs`` command: parses the command line (with the config file's
settings and ``-o`` options under it) and runs one of the commands, each a module of
this package with ``add_parser(sub)`` and ``run(args)``.

Every failure a user can cause ends in one line on stderr (``torrentfs: error: ...``)
and a non-zero exit, never a traceback. ``mount`` daemonises like sshfs: the command
returns once the filesystem is mounted and ready (or prints why it could not be), and
the daemon logs to ``torrentfs.log`` in the torrent's cache folder; ``-f`` stays in the
foreground and logs to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from torrentfs import __version__
from torrentfs.cli import (
    create,
    info,
    listing,
    mount,
    resident,
    seed,
    status,
    stop,
    unmount,
)
from torrentfs.cli.args import (
    CONFIG_ENV,
    Formatter,
    Parser,
    add_config,
    default_config_path,
    read_config,
)
from torrentfs.cli.output import CliError, setup_logging
from torrentfs.engine.sources import SourceError

log = logging.getLogger("torrentfs")

COMMANDS = (mount, unmount, seed, status, listing, stop, info, create,
            resident)  # in the order --help lists them

MAIN_EPILOG = """\
examples:
  torrentfs mount movie.torrent ~/movie      mount; returns once the files are there
  mpv ~/movie/movie.mkv                      play at once: reads fetch what they need
  torrentfs unmount ~/movie
  torrentfs list                             every mount and daemon of yours
  torrentfs resident status                  the process that makes mounts quick
  torrentfs info movie.torrent               what the torrent holds
  torrentfs create ./image -o image.torrent -t http://tracker:6969/announce
  torrentfs seed image.torrent /srv          serve a finished download

configuration: {config}
  (TOML; --config FILE or ${env} names another). Its keys are the long
  options: cache-size = "20G" at the top applies to every command that has it,
  under [mount] to mount alone. Flags on the command line win.

fstab (mount(8) runs "torrentfs SOURCE MOUNTPOINT -o OPTIONS"):
  /srv/x.torrent  /mnt/x  fuse.torrentfs  ro,allow_other,cache_dir=/var/cache/torrentfs  0 0

"torrentfs COMMAND --help" tells more about each command.
"""


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="torrentfs", formatter_class=Formatter,
        description="Mount a torrent as a read-only filesystem. The files appear at once; "
                    "a read fetches the pieces it needs from the swarm, verifies them and "
                    "returns, so players, cp and sha256sum just work.",
        epilog=MAIN_EPILOG.format(config=default_config_path(), env=CONFIG_ENV))
    p.add_argument("--version", action="version", version=f"torrentfs {__version__}")
    add_config(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True,
                           title="commands")
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def _implicit_mount(argv: list[str], names) -> list[str]:
    """``torrentfs SOURCE MOUNTPOINT [-o OPTS]``, as mount(8) and mount.fuse3 run a
    filesystem named in fstab, means ``torrentfs mount SOURCE MOUNTPOINT ...``."""
    if (len(argv) >= 2 and argv[0] not in names and not argv[0].startswith("-")
            and not argv[1].startswith("-")
            and (argv[0].endswith(".torrent") or argv[0].startswith("magnet:")
                 or os.path.isfile(argv[0]))):
        return ["mount", *argv]
    return argv


def parse_command_line(argv: list[str], environ=os.environ) -> argparse.Namespace:
    """The command line with the config file's settings under it and ``-o`` options
    of ours between the two. Raises CliError (bad file), ConfigError (bad value or
    key), or exits 2 (usage error, from argparse)."""
    from torrentfs.cli.config import (
        apply_config,
        commands,
        parse_toml,
        split_mount_options,
    )
    parser = build_parser()
    subs = commands(parser)
    argv = _implicit_mount(list(argv), {n for a in parser._subparsers._group_actions
                                        for n in a.choices})
    found = read_config(argv, environ)
    if found:
        origin, data = found
        apply_config(parser, parse_toml(data, origin), origin)
    args = parser.parse_args(argv)
    if args.command == "mount":
        fuse, ours = split_mount_options([o for group in args.o for o in group],
                                         subs["mount"])
        if ours:  # make them defaults, under the flags, and parse again
            for dest, value in ours.items():
                if isinstance(value, list):
                    ours[dest] = list(subs["mount"].get_default(dest) or []) + value
            subs["mount"].set_defaults(**ours)
            args = parser.parse_args(argv)
        args.o = fuse
    return args


SERVING = ("mount", "seed")  # they set up their own logging (a daemon's: to a file)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        return _main(argv)
    except BrokenPipeError:
        return _quiet_broken_pipe()


def _main(argv: list[str]) -> int:
    from torrentfs.cli.config import ConfigError
    from torrentfs.cli.errors import one_line
    if not argv:  # bare ``torrentfs``: what it can do, not an error
        build_parser().print_help()
        return 0
    try:
        args = parse_command_line(argv)
    except (CliError, SourceError, ConfigError) as e:
        print(f"torrentfs: error: {e}", file=sys.stderr)
        return 1
    if args.command not in SERVING and hasattr(args, "log_level"):
        setup_logging(args.log_level, stream=sys.stderr)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        raise
    except KeyboardInterrupt:
        return 130
    except BaseException as e:  # noqa: BLE001 - sorted below; a bug stays one line too
        if isinstance(e, SystemExit):
            raise
        from torrentfs.cli.errors import leaf
        if isinstance(leaf(e), KeyboardInterrupt):
            return 130
        if isinstance(leaf(e), BrokenPipeError):
            return _quiet_broken_pipe()
        error = one_line(e, getattr(args, "port", None))
        if error is not None:  # foreseeable: its one line says it all, even with -v
            print(f"torrentfs: error: {error}", file=sys.stderr)
            return 1
        # a bug: still one line for the user, the details in the log
        log.debug("internal error", exc_info=True)
        e = leaf(e)
        print(f"torrentfs: internal error: {type(e).__name__}: {e} (run with -v for details)",
              file=sys.stderr)
        return 70


def _quiet_broken_pipe() -> int:
    """The reader of our output went away (``torrentfs info x | head -1``): stop
    quietly, as cat does; nothing more is written to the pipe (nor at exit)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    return 141  # 128 + SIGPIPE, what a shell shows for a process the pipe ended


if __name__ == "__main__":
    sys.exit(main())
