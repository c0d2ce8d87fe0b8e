"""Progress bars for long jobs, on a terminal only (rich).

``progress_bar(description, unit)`` is a context manager giving a callback
``update(done, total)``, or None when stderr is not a terminal (scripts, logs, a
daemon): callers pass it on as is (``create_torrent(progress=...)``,
``Storage.check(progress)``, and a magnet link's metadata fetch can do the same).
The callback may be called from a worker thread; rich redraws from its own thread,
a few times a second, so calling it per piece costs little.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Callable, Iterator

Update = Callable[[int, int], None]


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
