"""``torrentfs status MOUNTPOINT``: what a mount's daemon is doing.

Reads the status file the daemon publishes every second (``status.publish``; its
JSON schema is in ``status``'s docstring) and prints it as text, as JSON
(``--json``, the file as it is, for scripts), or as a live view with progress bars
(``--watch``, rich) until the mount goes away or Ctrl-C. Never talks to the daemon
itself, so a busy daemon cannot hang it; a status older than ``STALE_AFTER`` says so.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from torrentfs.cli import registry
from torrentfs.cli.args import add_log_level, command
from torrentfs.cli.liveview import STALE_AFTER, percent, pieces_text
from torrentfs.cli.output import CliError, human
from torrentfs.cli.state import default_cache_dir, mount_state_file
from torrentfs.core.text import printable
from torrentfs.fs.procfs import pid_alive, process_state

WATCH_EVERY = 1.0    # --watch redraws this often


def load(mountpoint: str, cache: Path) -> dict:
    """The status document of the mount on ``mountpoint`` (found in the registry,
    whatever its cache folder; else in ``cache``), or of the one torrent of a watch
    mount whose folder ``mountpoint`` is (or is in); a CliError if there is none,
    or its daemon is gone. Touches no mountpoint."""
    entry, folder = registry.locate(mountpoint)
    if entry is not None and entry.get("status"):
        path = Path(entry["status"])
    else:
        from torrentfs.engine.status import status_path  # trio: not for every command
        path = status_path(mount_state_file(cache, mountpoint))
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        if entry is not None:  # fetching a magnet's metadata, or just starting
            return {"pid": entry["pid"], "mountpoint": entry.get("mountpoint"),
                    "updated": time.time(), "torrents": [],
                    "state": entry.get("state"), "info_hash": entry.get("info_hash")}
        raise CliError(f"{mountpoint}: no torrentfs mount there (see: torrentfs "
                       "list)") from None
    except OSError as e:
        why = (e.strerror or str(e)).lower()
        raise CliError(f"{mountpoint}: cannot read its status ({path}): {why}") from None
    except ValueError as e:
        raise CliError(f"{mountpoint}: cannot read its status: {e}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("torrents"), list):
        raise CliError(f"{mountpoint}: its status file is not one torrentfs wrote")
    pid = doc.get("pid")
    if not isinstance(pid, int) or not pid_alive(pid):
        raise CliError(f"{mountpoint}: its daemon (pid {pid}) is gone; clear the mount "
                       f"with: torrentfs unmount {mountpoint}")
    if process_state(pid) in ("T", "t"):
        doc["stopped"] = True  # SIGSTOPped: the status is frozen
    if folder is not None:
        doc["torrents"] = [t for t in doc["torrents"] if t.get("folder") == folder]
        skipped = [s for s in doc.get("skipped", ()) if s.get("file") == folder]
        if not doc["torrents"] and not skipped:
            raise CliError(f"{mountpoint}: no torrent of the watch mount "
                           f"{entry.get('mountpoint')} is there")
        doc["skipped"] = skipped
    return doc


def render_text(doc: dict, now: float | None = None) -> str:
    """The status document as a few lines of text per torrent, then its files."""
    now = time.time() if now is None else now
    lines = []
    age = now - doc.get("updated", now)
    if doc.get("stopped"):
        lines.append(f"(the daemon, pid {doc.get('pid')}, is stopped (SIGSTOP): this "
                     f"status is {age:.0f} s old)")
    elif age > STALE_AFTER:
        lines.append(f"(status is {age:.0f} s old: the daemon is busy or stuck)")
    state = doc.get("state")
    if state == "fetching metadata":
        lines.append(f"{printable(doc.get('mountpoint') or '?')}: not mounted yet: "
                     f"fetching the metadata of {doc.get('info_hash')} (pid {doc['pid']})")
    elif state not in (None, "mounted"):
        lines.append(f"{printable(doc.get('mountpoint') or '?')}: {state} (pid "
                     f"{doc['pid']}; torrentfs stop {doc['pid']} ends it)")
    if "watched" in doc:
        lines.append(f"{printable(doc['mountpoint'])}: watching {printable(doc['watched'])}"
                     f" ({len(doc['torrents'])} torrents shown)")
    for t in doc["torrents"]:
        p, peers, rates, totals = t["pieces"], t["peers"], t["rates"], t["totals"]
        lines += [
            f"{printable(doc['mountpoint'])}"
            + (f"/{printable(t['folder'])}" if t.get("folder") else "")
            + f": {printable(t['name'])}",
            f"  info-hash:  {t['info_hash']}",
            f"  progress:   {human(t['verified'])} of {human(t['size'])} verified "
            f"({percent(t['verified'], t['size'])}), {p['verified']} of {p['total']} "
            f"pieces of {human(p['length'])}"
            + ("; prefetching the rest" if t["prefetch"] and not t["complete"] else ""),
            f"  peers:      {peers['connected']} connected, {peers['unchoked_us']} "
            f"unchoked us, {peers['we_unchoked']} unchoked by us "
            f"({peers['known']} known, {peers['banned']} banned)",
            f"  rates:      down {human(rates['download'])}/s, up {human(rates['upload'])}/s"
            f" (so far: down {human(totals['downloaded'])}, up {human(totals['uploaded'])}"
            f", wasted {human(totals['wasted'])})",
        ]
        lines += sources_lines(t.get("metrics"))
        lines += tracker_lines(t.get("trackers", []), now)
        reads = t["reads"]
        if reads:
            lines.append(f"  reads:      {len(reads)} waiting")
            for r in reads:
                lines.append(f"    pieces {pieces_text(r['pieces'])} for {r['waiting']:.1f} s: "
                             f"{printable(r['why'])}")
        else:
            lines.append("  reads:      none waiting")
        c = t["cache"]
        lines.append(f"  cache:      {printable(c['folder'])} ({human(c['bytes'])} of "
                     f"data{cache_limit(c)})")
        full = disk_full(c, now)
        if full:
            lines.append(f"  disk full:  {full}")
        lines.append(f"  files:      {len(t['files'])}")
        for f in t["files"]:
            lines.append(f"    {percent(f['verified'], f['size']):>6}  "
                         f"{human(f['verified']):>10} of {human(f['size']):<10}  "
                         f"{printable(f['path'])}")
    for name in doc.get("fetching", ()):
        lines.append(f"fetching metadata: {printable(name)}")
    for skip in doc.get("skipped", ()):
        lines.append(f"skipped: {printable(skip['file'])}: {printable(skip['why'])}")
    return "\n".join(lines)


def cache_limit(c: dict) -> str:
    if c.get("limit") is None:
        return ""
    why = " (from the disk's free space)" if c.get("limit_from") == "free space" else ""
    return f", limit {human(c['limit'])}{why}"


def disk_full(c: dict, now: float) -> str:
    """"3 writes failed, last 12 s ago: ..." or "" if the disk never filled."""
    full = c.get("disk_full") or {}
    if not full.get("count"):
        return ""
    return (f"{full['count']} writes failed, last {ago(full.get('last'), now)}: free "
            "some space or set a smaller --cache-size")


def ago(at: float | None, now: float) -> str:
    if at is None:
        return ""
    age = max(0.0, now - at)
    if age < 120:
        return f"{age:.0f} s ago"
    if age < 7200:
        return f"{age / 60:.0f} min ago"
    return f"{age / 3600:.0f} h ago"


def sources_lines(m: dict | None) -> list[str]:
    """Where the bytes came from, and the pieces' hash checks (``engine.metrics``)."""
    if not m:
        return []
    r, p = m["received"], m["pieces"]
    return [f"  received:   {human(r['origin'])} from the origin, {human(r['webseed'])} "
            f"from web seeds, {human(r['peer'])} from peers; {p['passed']} pieces "
            f"passed the hash check, {p['failed']} failed"]


def tracker_text(tr: dict, now: float) -> str:
    """One tracker's last answer: "ok, 5 peers (12 s ago)", "error: ... (3 s ago)"."""
    when = f" ({ago(tr.get('at'), now)})" if tr.get("at") is not None else ""
    if tr["status"] == "ok":
        text = f"ok, {tr['peers']} peers{when}"
        if tr.get("warning"):
            text += f"; warns: {tr['warning']}"
    elif tr["status"] == "error":
        text = f"error{when}: {tr['message']}"
    else:
        text = "not tried yet"
    return printable(text)


def tracker_lines(trackers: list[dict], now: float) -> list[str]:
    if not trackers:
        return ["  trackers:   none (peers come from the DHT, LSD, PEX or --peer)"]
    return ["  trackers:"] + [f"    {printable(tr['url'])}: {tracker_text(tr, now)}"
                              for tr in trackers]


def render_rich(doc: dict, now: float | None = None):
    """The status document as a rich renderable (``liveview.LiveView``): bars for the
    torrent, the files being fetched and the busiest peers, fitted to the width."""
    from torrentfs.cli.liveview import LiveView
    return LiveView(doc, now)


def watch(mountpoint: str, cache: Path) -> int:
    """Redraw the status every second until the mount goes away or Ctrl-C."""
    from rich.console import Console
    from rich.live import Live
    doc = load(mountpoint, cache)
    console = Console()
    try:
        with Live(render_rich(doc), console=console, auto_refresh=False,
                  transient=False) as live:
            while True:
                time.sleep(WATCH_EVERY)
                try:
                    doc = load(mountpoint, cache)
                except CliError:
                    break
                live.update(render_rich(doc), refresh=True)
    except KeyboardInterrupt:
        return 0
    console.print(f"{printable(mountpoint)}: unmounted")
    return 0


def run(args) -> int:
    cache = Path(args.cache_dir or default_cache_dir())
    if args.watch:
        return watch(args.mountpoint, cache)
    doc = load(args.mountpoint, cache)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(render_text(doc))
    return 0


def add_parser(sub) -> None:
    """The ``status`` subcommand, on the CLI's subparsers."""
    s = command(
        sub, "status", help="show what a mount is doing",
        description="Show a mount's progress (bytes verified, per file too), peers, "
        "rates, the reads waiting for pieces and its cache, as the daemon saw them at "
        "most a second ago. Works for any daemon 'torrentfs list' shows, whatever its "
        "cache folder: a mount, a watch mount (all its torrents and the files it "
        "skipped, or one torrent: give its folder in the mount), one seeding after "
        "its unmount. Never touches the mountpoint, so a stuck daemon cannot hang it.",
        epilog="examples:\n"
               "  torrentfs status ~/movie              progress, peers, rates, waiting reads\n"
               "  torrentfs status ~/movie --watch      live, with progress bars\n"
               "  torrentfs status ~/movie --json | jq .torrents[0].verified\n"
               "  getfattr -d ~/movie/movie.mkv         one file's progress (xattrs)")
    s.add_argument("mountpoint", metavar="MOUNTPOINT",
                   help="where the torrent is mounted (or a torrent's folder in a "
                        "watch mount)")
    how = s.add_mutually_exclusive_group()
    how.add_argument("--json", action="store_true",
                     help="print the status as JSON (schema in the README)")
    how.add_argument("-w", "--watch", action="store_true",
                     help="keep it on the terminal with progress bars, redrawn every "
                          "second, until the mount goes away or Ctrl-C")
    s.add_argument("--cache-dir", metavar="DIR",
                   help="not needed: mounts are found whatever cache folder they use "
                        "(kept for daemons of older versions)")
    add_log_level(s, default="warning")
    s.set_defaults(func=run)
