"""``torrentfs list``: every torrentfs daemon of the user on this machine (mounts,
watch mounts, daemons seeding on after their unmount, mounts still fetching a
magnet's metadata), whatever cache folder each uses, from the registry
(``registry``). Touches no mountpoint."""

from __future__ import annotations

import json
import time

from torrentfs.cli import registry
from torrentfs.cli.args import add_log_level, command
from torrentfs.core.text import printable
from torrentfs.fs.procfs import process_state


def add_parser(sub) -> None:
    s = command(sub, "list", aliases=["ls"], help="list the running mounts and daemons",
                description="List every torrentfs daemon of yours on this machine: "
                "mounts, watch mounts, and daemons seeding on after their unmount "
                "(--seed-after), with their pid, state, mountpoint, torrent and cache "
                "folder, whatever --cache-dir each was given.",
                epilog="examples:\n"
                       "  torrentfs list\n"
                       "  torrentfs list --json | jq '.[].pid'\n"
                       "  torrentfs stop PID              end one of them")
    s.add_argument("--json", action="store_true",
                   help="print the registry's entries as JSON (schema in the README)")
    add_log_level(s, default="warning")
    s.set_defaults(func=run)


def state_of(entry: dict) -> str:
    """The entry's state, and 'stopped' for a SIGSTOPped daemon."""
    state = entry.get("state") or "?"
    if process_state(entry["pid"]) in ("T", "t"):
        state += " (process stopped)"
    if state.startswith("seeding") and entry.get("until"):
        state += f" until {entry['until']}"
    return state


def torrents_of(entry: dict) -> str:
    if entry.get("kind") == "watch":
        return f"{entry.get('source')} (watched folder)"
    if entry.get("kind") == "seed":
        return f"{entry.get('name')} ({entry.get('info_hash')}) from {entry.get('source')}"
    name = entry.get("name") or "(metadata not known yet)"
    return f"{name} ({entry.get('info_hash')})"


def render(entries: list[dict], now: float | None = None) -> str:
    """The entries as text: one block of lines per daemon."""
    now = time.time() if now is None else now
    if not entries:
        return "no torrentfs daemons running"
    blocks = []
    for e in entries:
        age = max(0, now - (e.get("started") or now))
        blocks.append("\n".join((
            f"pid {e['pid']}: {e.get('kind', '?')}, {state_of(e)} "
            f"(for {_duration(age)})",
            f"  mountpoint: {printable(e.get('mountpoint') or '-')}",
            f"  torrent:    {printable(torrents_of(e))}",
            f"  cache:      {printable(e.get('cache') or '-')}",
        )))
    return "\n".join(blocks)


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    return f"{s // 3600} h {s % 3600 // 60} min"


def run(args) -> int:
    entries = registry.entries()
    if args.json:
        print(json.dumps(entries, indent=2))
    else:
        print(render(entries))
    return 0
