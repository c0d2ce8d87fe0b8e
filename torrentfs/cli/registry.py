"""The user's running torrentfs daemons, whatever ``--cache-dir`` each was given: a
registry in the runtime folder, for ``list``, ``status``, ``stop`` and ``unmount``.

Every daemon (``mount``, ``mount --watch``, one seeding on after its unmount, and
``torrentfs seed``) writes ``<runtime>/torrentfs/daemons/<pid>.json`` when it starts and rewrites it
when its state changes (fetching metadata, mounted, seeding after unmount); it
removes it when it ends. A file whose process is gone (a crash, SIGKILL) is
dropped by the next reader; each entry carries its process's start time, so a
reused pid is not taken for the daemon.

The runtime folder is ``$XDG_RUNTIME_DIR``, else ``/run/user/UID``, else
``/tmp/torrentfs-UID``: a tmpfs that is the user's alone (0700) and empty after a
reboot, never the cache folder (each mount may have its own). The fallback in /tmp
is refused if someone else owns it or others may write to it.

An entry (JSON object)::

    {"pid": 1234, "start": 98765,            # the process and its start time
     "kind": "mount" | "watch" | "seed",
     "state": "starting" | "fetching metadata" | "mounted" | "unmounting"
              | "seeding after unmount"
              | "verifying" | "seeding",           # the last two: torrentfs seed
     "mountpoint": "/mnt/x" | null, "source": ".torrent, magnet link or watched folder",
     "name": str | null, "info_hash": "40 hex digits" | null,
     "cache": "the torrent's cache folder (a watch mount: the cache folder)",
     "status": "its status file (engine.status)", "log": "its log file",
     "until": "a seed-after daemon's limit" | null, "started": 1700000000.0}
"""

from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

from torrentfs.disk.private import private_dir, write_private
from torrentfs.fs.procfs import mountpoint_path, pid_alive, process_start

RUNTIME_ENV = "XDG_RUNTIME_DIR"
SEEDING = "seeding after unmount"


class RegistryError(Exception):
    """The runtime folder cannot be used (one line saying why)."""


def runtime_dir(environ=os.environ) -> Path:
    """The user's runtime folder for torrentfs (made 0700 if missing)."""
    uid = os.getuid()
    base = environ.get(RUNTIME_ENV)
    if base and os.path.isabs(base) and os.path.isdir(base):
        return Path(base) / "torrentfs"
    run = Path(f"/run/user/{uid}")
    try:
        st = os.stat(run)
        if stat.S_ISDIR(st.st_mode) and st.st_uid == uid and os.access(run, os.W_OK):
            return run / "torrentfs"
    except OSError:
        pass
    tmp = Path(f"/tmp/torrentfs-{uid}")
    try:
        os.mkdir(tmp, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise RegistryError(f"cannot make {tmp}: {e.strerror}") from None
    st = os.lstat(tmp)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != uid or st.st_mode & 0o022:
        raise RegistryError(f"{tmp} is not a folder of ours alone: remove it, or set "
                            f"{RUNTIME_ENV}")
    return tmp


def daemons_dir(environ=os.environ) -> Path:
    return runtime_dir(environ) / "daemons"


class Registration:
    """This process's entry in the registry: ``update`` rewrites it, ``remove``
    removes it. Never raises: a daemon serves its mount even if the registry
    cannot be written (it is then missing from ``list``)."""

    def __init__(self, folder: Path | None = None, **entry) -> None:
        self.entry = {"pid": os.getpid(), "start": process_start(os.getpid()),
                      "started": round(time.time(), 3), "state": "starting", **entry}
        self.path: Path | None = None
        try:
            folder = folder or daemons_dir()
            private_dir(folder)
            self.path = folder / f"{os.getpid()}.json"
        except (OSError, RegistryError):
            self.path = None
        self.update()

    def update(self, **changes) -> None:
        self.entry.update(changes, pid=os.getpid(), start=process_start(os.getpid()))
        if self.path is None:
            return
        try:
            write_private(self.path, json.dumps(self.entry).encode())
        except OSError:
            pass

    def remove(self) -> None:
        if self.path is not None and self.entry["pid"] == os.getpid():
            try:
                self.path.unlink(missing_ok=True)
            except OSError:
                pass


def alive(entry: dict) -> bool:
    """True while the entry's daemon runs (the same process: same start time)."""
    pid = entry.get("pid")
    if not isinstance(pid, int) or pid <= 0 or not pid_alive(pid):
        return False
    start = entry.get("start")
    return start is None or process_start(pid) == start


def entries(folder: Path | None = None) -> list[dict]:
    """The running daemons' entries, oldest first; the files of dead ones are
    removed on the way."""
    try:
        folder = folder or daemons_dir()
        names = os.listdir(folder)
    except (OSError, RegistryError):
        return []
    found = []
    for name in names:
        if not name.endswith(".json") or name.startswith("."):
            continue
        path = folder / name
        try:
            entry = json.loads(path.read_bytes())
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            entry = None
        if not isinstance(entry, dict) or not alive(entry):
            try:
                path.unlink(missing_ok=True)
            except OSError:
                pass
            continue
        found.append(entry)
    return sorted(found, key=lambda e: (e.get("started") or 0, e["pid"]))


def by_mountpoint(mountpoint: str, folder: Path | None = None) -> dict | None:
    """The daemon that serves (or served, if it seeds on) ``mountpoint``: the one
    that mounted it last. Does not touch ``mountpoint``."""
    path = mountpoint_path(mountpoint)
    found = [e for e in entries(folder) if e.get("mountpoint") == path]
    mounted = [e for e in found if e.get("state") != SEEDING]
    return (mounted or found or [None])[-1]


def find(target: str, folder: Path | None = None) -> list[dict]:
    """The daemons a user's TARGET names: a pid, an info-hash (or a prefix of at
    least 6 hex digits), or a mountpoint. Does not touch the mountpoint."""
    all_ = entries(folder)
    if target.isdigit():
        hits = [e for e in all_ if e["pid"] == int(target)]
        if hits:
            return hits
    low = target.lower()
    if len(low) >= 6 and all(c in "0123456789abcdef" for c in low):
        hits = [e for e in all_ if (e.get("info_hash") or "").startswith(low)]
        if hits:
            return hits
    path = mountpoint_path(target)
    return [e for e in all_ if e.get("mountpoint") == path]


def lock_torrent(folder: Path, mountpoint: str, what: str = "mounted on"):
    """Take the torrent's lock (``disk.lock``) for a mount on ``mountpoint`` (or
    ``what`` else: "seeded from" a folder); a CliError naming the daemon that has
    it (and how to end it) if it is taken."""
    from torrentfs.cli.output import CliError
    from torrentfs.disk.lock import Locked, TorrentLock
    try:
        private_dir(folder)
        return TorrentLock(folder).acquire(mountpoint=mountpoint, what=what)
    except Locked as e:
        pid, where = e.holder.get("pid"), e.holder.get("mountpoint")
        if str(e.holder.get("what", "")).startswith("seeded"):
            hint = f"end it with: torrentfs stop {pid}"
        elif where:
            hint = f"unmount it first: torrentfs unmount {where}"
        else:
            hint = "see: torrentfs list"
        raise CliError(f"this torrent is {e}; {hint}") from None
    except OSError as e:
        from torrentfs.cli.errors import cache_folder_error
        raise cache_folder_error(folder, e) from None


def locate(target: str, folder: Path | None = None) -> tuple[dict | None, str | None]:
    """The daemon serving the mountpoint ``target``, or the watch mount ``target``
    is inside (then also the name of the torrent's folder there): (entry, folder
    name or None); (None, None) if no daemon of the registry serves it. The path is
    compared as text first; symlinks in its parents are resolved only if it is not
    inside a mount of the registry, so a path inside a mount is never touched."""
    all_ = entries(folder)

    def match(path: str) -> tuple[dict | None, str | None] | None:
        exact = [e for e in all_ if e.get("mountpoint") == path]
        if exact:
            mounted = [e for e in exact if e.get("state") != SEEDING]
            return (mounted or exact)[-1], None
        for e in all_:
            top = (e.get("mountpoint") or "").rstrip("/") + "/"
            if e.get("kind") == "watch" and e.get("mountpoint") and path.startswith(top):
                return e, path[len(top):].split("/")[0]
        return None

    text = os.path.normpath(os.path.abspath(target))
    hit = match(text)
    if hit is None and not any(text.startswith(e["mountpoint"].rstrip("/") + "/")
                               for e in all_ if e.get("mountpoint")):
        hit = match(mountpoint_path(target))
    return hit or (None, None)
