"""``torrentfs stop TARGET``: end a daemon, mounted or not: one seeding on after its
unmount (``--seed-after``), one still fetching a magnet's metadata, or a mount.

TARGET is what ``torrentfs list`` shows: a pid, an info-hash (or its first 6+ hex
digits) or a mountpoint. A mounted daemon is unmounted first (as ``unmount`` does);
then the daemon gets SIGTERM (it tells its trackers and saves its state) and
``--wait`` seconds to end, after which it is killed."""

from __future__ import annotations

from torrentfs.cli import registry
from torrentfs.cli.args import add_log_level, command
from torrentfs.cli.output import CliError
from torrentfs.cli.unmount import end_process, unmount
from torrentfs.fs.procfs import fuse_mount_type, pid_alive


def add_parser(sub) -> None:
    s = command(sub, "stop", help="end a daemon (e.g. one seeding after its unmount)",
                description="End the torrentfs daemon TARGET names: unmount its mount if "
                "it has one, then let it tell its trackers and save its state. Ends "
                "daemons that seed on after their unmount (--seed-after) and those "
                "still fetching a magnet's metadata. A stopped or wedged daemon is "
                "killed after --wait seconds.",
                epilog="examples:\n"
                       "  torrentfs list                 the daemons, with their pids\n"
                       "  torrentfs stop ~/movie         the daemon that mounted ~/movie\n"
                       "  torrentfs stop 4242            by pid\n"
                       "  torrentfs stop 0123abcd        by info-hash (or its start)")
    s.add_argument("target", metavar="TARGET",
                   help="a daemon's pid, its torrent's info-hash, or its mountpoint")
    s.add_argument("--wait", type=float, default=15.0, metavar="SECONDS",
                   help="how long a daemon gets to finish before it is killed")
    add_log_level(s, default="warning")
    s.set_defaults(func=run)


def run(args) -> int:
    found = registry.find(args.target)
    if not found:
        raise CliError(f"{args.target}: no torrentfs daemon of yours has that pid, "
                       "info-hash or mountpoint (see: torrentfs list)")
    for entry in found:
        pid, where = entry["pid"], entry.get("mountpoint")
        if (where and entry.get("state") != "seeding after unmount"
                and fuse_mount_type(where) is not None):
            unmount(where, pid, args.wait, name=where, quiet=True)
        if pid_alive(pid):
            end_process(pid, args.wait)
    return 0
