"""The live view of ``torrentfs status --watch``: bars for the torrent, the files
being fetched and the busiest peers, laid out for the terminal's width (80 columns
and up) with no line wrapping: a long name loses its middle (a path its leading
folders first), never its end, so ``….x264.mkv`` stays told apart from ``….srt``."""

from __future__ import annotations

import time

from torrentfs.cli.output import human
from torrentfs.core.text import printable

WATCH_FILES = 12     # the view lists at most this many files ...
WATCH_PEERS = 8      # ... and peers
STALE_AFTER = 5.0    # a status older than this: the daemon is busy or stuck
ELLIPSIS = "…"


def middle(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters: its middle cut out if need be."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    head = (width - 1) // 2
    return text[:head] + ELLIPSIS + text[len(text) - (width - 1 - head):]


def short_path(path: str, width: int) -> str:
    """A file's path in ``width`` characters: leading folders dropped first
    (``…/name.mkv``), then the name's middle."""
    if len(path) <= width:
        return path
    parts = path.split("/")
    while len(parts) > 1:
        parts.pop(0)
        candidate = ELLIPSIS + "/" + "/".join(parts)
        if len(candidate) <= width:
            return candidate
    return middle(parts[-1], width)


def percent(done: int, total: int) -> str:
    """'12.5%' of ``total`` (an empty file is whole)."""
    return f"{100.0 * done / total:.1f}%" if total else "100.0%"


def pieces_text(pieces: list[int]) -> str:
    """[3, 4, 5, 9] -> '3-5, 9' (at most a few runs, then how many more)."""
    runs: list[list[int]] = []
    for i in pieces:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    text = ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs[:4])
    return text + (f" (+{len(runs) - 4} more)" if len(runs) > 4 else "")


class LiveView:
    """A rich renderable of a status document, drawn at the width rich gives it."""

    def __init__(self, doc: dict, now: float | None = None) -> None:
        self.doc = doc
        self.now = time.time() if now is None else now

    def __rich_console__(self, console, options):
        yield from self.parts(max(40, options.max_width))

    def parts(self, width: int):
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        def line(text: str, style: str = "") -> Text:
            return Text(middle(printable(text), width), style=style, no_wrap=True,
                        overflow="ellipsis")

        doc, now = self.doc, self.now
        age = now - doc.get("updated", now)
        if doc.get("stopped"):
            yield line(f"the daemon (pid {doc.get('pid')}) is stopped (SIGSTOP)", "bold red")
        elif age > STALE_AFTER:
            yield line(f"status is {age:.0f} s old: the daemon is busy or stuck", "bold red")
        if doc.get("state") not in (None, "mounted"):
            yield line(f"{doc.get('mountpoint') or '?'}: {doc['state']}", "bold")
        for t in doc["torrents"]:
            peers, rates = t["peers"], t["rates"]
            yield line(t["name"], "bold")
            yield line(f"{doc['mountpoint']}  {t['info_hash']}", "dim")
            figures = (f"{human(t['verified'])} / {human(t['size'])} "
                       f"{percent(t['verified'], t['size'])}")
            grid = Table.grid(padding=(0, 1))
            grid.add_column(width=8, no_wrap=True)
            grid.add_column(ratio=1)
            grid.add_column(justify="right", no_wrap=True, width=len(figures))
            grid.add_row("verified", ProgressBar(total=max(t["size"], 1),
                                                 completed=t["verified"]), figures)
            yield grid
            yield line(f"peers {peers['connected']} ({peers['unchoked_us']} unchoked us, "
                       f"{peers['we_unchoked']} unchoked by us)  "
                       f"down {human(rates['download'])}/s  up {human(rates['upload'])}/s"
                       + ("  prefetch" if t["prefetch"] and not t["complete"] else ""))
            trackers = t.get("trackers") or []
            if trackers:
                ok = sum(1 for tr in trackers if tr["status"] == "ok")
                errors = [tr for tr in trackers if tr["status"] == "error"]
                text = f"trackers: {ok} of {len(trackers)} answering"
                if errors:
                    text += f"; {errors[0]['message']}"
                yield line(text, "yellow" if errors and not ok else "")
            full = (t["cache"].get("disk_full") or {}).get("count")
            if full:
                yield line(f"disk full: {full} writes failed; free some space or set "
                           "a smaller --cache-size", "bold red")
            for r in t["reads"]:
                yield line(f"read waiting {r['waiting']:.1f} s for pieces "
                           f"{pieces_text(r['pieces'])}: {r['why']}", "yellow")
            limit = t["cache"].get("limit")
            yield line(f"cache {t['cache']['folder']} ({human(t['cache']['bytes'])}"
                       + (f" of {human(limit)}" if limit is not None else "") + ")", "dim")
            yield self._files(t, width)
            if peers["list"]:
                yield self._peers(peers["list"], width)
        for name in doc.get("fetching", ()):
            yield line(f"fetching metadata: {name}", "yellow")
        for skip in doc.get("skipped", ()):
            yield line(f"skipped {skip['file']}: {skip['why']}", "dim")

    def _files(self, t: dict, width: int):
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text
        files = sorted(t["files"], key=lambda f: (f["verified"] in (0, f["size"]),
                                                  -f["verified"]))[:WATCH_FILES]
        figures = [f"{human(f['verified'])} / {human(f['size'])}" for f in files]
        fig_width = max([len("verified"), *map(len, figures)])
        bar_width = 10
        name_width = max(10, width - fig_width - bar_width - 4)  # 4: padding between columns
        table = Table(box=None, show_header=True, header_style="bold", padding=(0, 1),
                      pad_edge=False, width=width)
        table.add_column("file", width=name_width, no_wrap=True, overflow="ellipsis")
        table.add_column("", width=bar_width)
        table.add_column("verified", justify="right", width=fig_width, no_wrap=True)
        for f, fig in zip(files, figures):
            table.add_row(Text(short_path(printable(f["path"]), name_width)),
                          ProgressBar(total=max(f["size"], 1),
                                      completed=f["verified"] if f["size"] else 1),
                          fig)
        return table

    def _peers(self, listed: list[dict], width: int):
        from rich.table import Table
        table = Table(box=None, header_style="bold", padding=(0, 1), pad_edge=False,
                      width=width, caption="flags: U unchoked us, u unchoked by us, "
                      "s snubbed us")
        table.add_column("peer", no_wrap=True, overflow="ellipsis", ratio=3)
        table.add_column("client", no_wrap=True, overflow="ellipsis", ratio=1)
        for name in ("down/s", "up/s"):
            table.add_column(name, justify="right", no_wrap=True, width=10)
        table.add_column("flags", no_wrap=True, width=5)
        for p in listed[:WATCH_PEERS]:
            flags = ("U" if p["unchoked_us"] else "") + ("u" if p["we_unchoked"] else "") \
                + ("s" if p["snubbed"] else "")
            table.add_row(printable(p["address"]), printable(p["client"]),
                          human(p["download_rate"]), human(p["upload_rate"]), flags)
        return table
