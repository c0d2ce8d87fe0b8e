"""What the CLI shows a user: one-line errors, sizes, log lines, progress.

Progress is shown on a terminal only: ``progress_bar(description, unit)`` is a
context manager giving a callback ``update(done, total)`` (a rich bar), or None when
stderr is not a terminal (scripts, logs, a daemon), so callers pass it on as is
(``create_torrent(progress=...)``, ``Torrent.check_progress``). The callback may be
called from a worker thread; rich redraws from its own thread, a few times a
second, so calling it per piece costs little. ``terminal_progress()`` is the same
for a job that reports in words (a magnet's metadata fetch): one rewritten line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Callable, Iterator

from torrentfs.core.text import human, printable  # noqa: F401 (human: re-exported)
from torrentfs.disk.private import open_private

Update = Callable[[int, int], None]


class CliError(Exception):
    """A user-facing failure: its message is printed as one line."""


class OneLineFormatter(logging.Formatter):
    """Every log record is one line: control characters in a message (a tracker's or
    a peer's words, a name from a torrent) are shown escaped, ``\\n`` or ``\\x1b``,
    so nothing from outside can forge a log line or drive a terminal. A traceback
    logged with ``exc_info`` still follows on its own lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))


class StderrHandler(logging.StreamHandler):
    """Logs to whatever ``sys.stderr`` is when a record comes: while a progress bar
    is drawn, rich puts a proxy there that prints each line above the bar, so log
    lines and the bar never share a line."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_logging(level: str, stream=None, filename=None) -> None:
    if filename:
        os.close(open_private(filename, os.O_WRONLY | os.O_APPEND))
    if filename:
        handler: logging.Handler = logging.FileHandler(filename)
    elif stream is None or stream is sys.stderr:
        handler = StderrHandler()
    else:
        handler = logging.StreamHandler(stream)
    handler.setFormatter(OneLineFormatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))
    for noisy in ("httpx", "httpcore", "hpack"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def terminal_progress() -> Callable[[str], None] | None:
    """A progress callback that rewrites one stderr line, or None off a terminal."""
    if not sys.stderr.isatty():
        return None

    def progress(text: str) -> None:
        print(f"\r{text}\x1b[K", end="", file=sys.stderr, flush=True)
    return progress


@contextlib.contextmanager
def progress_bar(description: str, unit: str = "bytes", stream=None,
                 force: bool = False) -> Iterator[Update | None]:
    """A bar on ``stream`` (stderr) while the block runs; ``unit`` is ``"bytes"``
    (sizes and a transfer speed) or a word counted as is (``"pieces"``). Yields None
    unless ``stream`` is a terminal (or ``force``)."""
    stream = sys.stderr if stream is None else stream
    if not (force or stream.isatty()):
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )
    columns = [TextColumn("{task.description}"), BarColumn(), TaskProgressColumn()]
    if unit == "bytes":
        columns += [DownloadColumn(binary_units=True), TransferSpeedColumn()]
    else:
        columns += [MofNCompleteColumn(), TextColumn(unit)]
    columns.append(TimeRemainingColumn())
    console = Console(file=stream, force_terminal=force or None)
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
