"""What the CLI shows a user: one-line errors, sizes, log lines."""

from __future__ import annotations

import logging
import os
import re


class CliError(Exception):
    """A user-facing failure: its message is printed as one line."""




def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class OneLineFormatter(logging.Formatter):
    """Every log record is one line: control characters in a message (a tracker's or
    a peer's words, a name from a torrent) are shown escaped, ``\\n`` or ``\\x1b``,
    so nothing from outside can forge a log line or drive a terminal. A traceback
    logged with ``exc_info`` still follows on its own lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def setup_logging(level: str, stream=None, filename=None) -> None:
    if filename:
        fd = os.open(filename, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
        os.fchmod(fd, 0o600)
        os.close(fd)
    handler = logging.FileHandler(filename) if filename else logging.StreamHandler(stream)
    handler.setFormatter(OneLineFormatter(
        "%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level.upper()))
    for noisy in ("httpx", "httpcore", "hpack"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


