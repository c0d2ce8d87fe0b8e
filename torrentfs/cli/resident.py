"""``torrentfs resident start|stop|status``: the resident process that makes mounts
quick (``zygote``): started by the first mount that finds none, or by ``start``."""

from __future__ import annotations

import json
import os
import time

from torrentfs.cli import zygote
from torrentfs.cli.args import add_log_level, command
from torrentfs.cli.output import CliError

START_WAIT = 30.0  # s for a new resident process to answer
STOP_WAIT = 10.0   # s for a stopped one to end

RESIDENT_EPILOG = """\
A mount's daemon has to import Python, trio, pyfuse3 and the engine before it can
mount (about 0.2 s), and the command itself imports the command line. The
resident process has done all that once: "torrentfs mount" hands it the command
(with its environment, working folder and terminal) instead of running it, and
the files are listed without waiting for those imports. The first mount that
finds none starts it in the background; it ends after --idle minutes without a
mount (default {idle:g}), and after an upgrade of torrentfs (its code is stale:
the next mount starts a new one). Stopping it leaves the mounts alone. Whatever
goes wrong with it, a mount runs the usual way.

Turn it off with --no-resident on mount, no-resident = true under [mount] in the
config file, or TORRENTFS_RESIDENT=0 in the environment. It is never used by
mount(8) (fstab) or from a systemd unit, whose daemon belongs in the unit.

examples:
  torrentfs resident status        is one running, since when, how many mounts it ran
  torrentfs resident start --idle 120
  torrentfs resident stop
"""


def add_parser(sub) -> None:
    r = command(sub, "resident", help="the resident process that makes mounts quick",
                description="Start, stop or show the per-user resident process that runs mount "
                "commands with everything already imported: mounts are ready in a "
                "fraction of the time.",
                epilog=RESIDENT_EPILOG.format(idle=zygote.IDLE_DEFAULT / 60))
    r.add_argument("action", choices=("start", "stop", "status"),
                   help="start (in the background), stop, or status (exit 3 if none runs)")
    r.add_argument("--json", action="store_true",
                   help="status: as JSON (pid, socket, started, served, children, "
                        "idle_left, commands_cpu)")
    r.add_argument("--idle", type=float, default=zygote.IDLE_DEFAULT / 60, metavar="MINUTES",
                   help="start: end after this long without a mount")
    r.add_argument("-f", "--foreground", action="store_true",
                   help="start: run in this process (e.g. as a systemd user service) "
                        "until stopped")
    add_log_level(r, default="warning")
    r.set_defaults(func=run)


def status() -> dict | None:
    """The running resident process's status, or None."""
    reply = zygote.ask("status")
    if reply is None:
        return None
    reply.sock.close()
    for fd in reply.fds:
        os.close(fd)
    word, _, rest = reply.line.partition(" ")
    return json.loads(rest) if word == "ok" else None


def run(args) -> int:
    if args.action == "status":
        return show_status(args.json)
    if args.action == "stop":
        found = status()
        reply = zygote.ask("stop")
        if reply is None:
            print("no resident process")
            return 0
        reply.sock.close()
        if found is not None:
            wait_gone(found["pid"], STOP_WAIT)
        print(f"resident process {found['pid'] if found else '?'} stopped "
              "(the mounts it made stay)")
        return 0
    if _turned_off():
        raise CliError(f"the resident process is turned off ({zygote.SOCKET_ENV_OFF}="
                       f"{os.environ[zygote.SOCKET_ENV_OFF]}): mounts would not use it")
    if args.idle <= 0:
        raise CliError("--idle must be more than 0 minutes")
    found = status()
    if found is not None:
        print(f"resident process {found['pid']} is running already")
        return 0
    if args.foreground:  # this process becomes the resident process
        argv = zygote.server_argv(zygote.socket_path(), args.idle * 60)
        os.execv(argv[0], argv)
    proc = zygote.spawn(args.idle * 60)
    if proc is None:
        raise CliError(f"{zygote.socket_path()}: too long for a unix socket; set "
                       "XDG_RUNTIME_DIR to a shorter folder")
    deadline = time.monotonic() + START_WAIT
    while (found := status()) is None:
        if proc.poll() is not None and status() is None:
            raise CliError(f"the resident process ended at once (exit {proc.returncode})")
        if time.monotonic() >= deadline:
            raise CliError(f"the resident process did not answer in {START_WAIT:.0f} s")
        time.sleep(0.05)
    print(f"resident process {found['pid']} ready (ends after {args.idle:g} min "
          "without a mount)")
    return 0


def _turned_off() -> bool:
    return not zygote.enabled(["mount"], {k: v for k, v in os.environ.items()
                                         if k != "INVOCATION_ID"})


def wait_gone(pid: int, timeout: float) -> None:
    """Wait (at most ``timeout`` s) until the process ``pid`` has ended."""
    import select
    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return  # gone already
    try:
        select.select([fd], [], [], timeout)
    finally:
        os.close(fd)


def show_status(as_json: bool = False) -> int:
    found = status()
    if as_json:
        print(json.dumps(found))
        return 0 if found is not None else 3
    if found is None:
        print("no resident process" + (f" (turned off: {zygote.SOCKET_ENV_OFF}="
                                        f"{os.environ[zygote.SOCKET_ENV_OFF]})"
                                        if _turned_off() else "; the next mount starts one"))
        return 3
    since = time.strftime("%H:%M:%S", time.localtime(found["started"]))
    alive = len(found["children"])
    print(f"resident process {found['pid']}, since {since}: {found['served']} mount "
          f"command(s) run, {alive} running now; ends after "
          f"{found['idle_left'] / 60:.1f} more min without a mount")
    print(f"socket: {found['socket']}")
    return 0
