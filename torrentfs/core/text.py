"""Text from outside (a torrent's names, a tracker's or a peer's words) made safe to
log or show: no control character reaches a log line or a terminal. And sizes in
words (``human``), for every layer's messages.

A control character is one of C0 (``\\x00``-``\\x1f``), DEL (``\\x7f``) or C1
(``\\x80``-``\\x9f``): the ranges a terminal acts on (C1 holds the 8-bit CSI)."""

from __future__ import annotations

import re

CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def has_control(text: str) -> bool:
    return CONTROL.search(text) is not None


def replace_control(text: str, by: str = "_") -> str:
    """``text`` with every control character replaced by ``by``."""
    return CONTROL.sub(by, text)


def printable(text: str) -> str:
    """``text`` with every control character shown escaped, as ``\\n`` or ``\\x1b``."""
    return CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def human(n: float) -> str:
    """A size in bytes as people read it: ``512 B``, ``1.5 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
