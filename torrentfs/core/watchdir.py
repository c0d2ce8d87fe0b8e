"""A folder of .torrent files, watched: what to load, what to unload, what to call
it. Pure: the shell (``multi.py``) lists the folder and passes the listing in.

Contract of ``DirWatch.update(listing)``, where ``listing`` maps each candidate
file's name (``candidates``) to its stat signature ``(size, mtime_ns, inode)``:

* A file is handed out to load (``Changes.added``) once its signature is the same
  in two listings in a row: a torrent being copied in is not read half-written.
  The files of the very first listing are taken as they are (they were there
  before the mount).
* A loaded file that is gone is handed out to unload (``Changes.removed``) at
  once; one whose signature changed is unloaded at once and loaded again once
  it settles (a rewritten file may be another torrent).
* A file is handed out once per version: a bad .torrent whose load failed is not
  tried again until it changes (one log line, not one per poll). ``forget(name)``
  hands it out again at the next update (a duplicate of a torrent that went).
* Every update is O(files in the listing); nothing grows beyond the listing.

``unique_name(name, taken)`` is the folder a torrent is shown as: its name, made
safe as one path component and unique among ``taken`` with `` (2)``, `` (3)``...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping

Signature = tuple[int, int, int]  # size, mtime in ns, inode

SUFFIXES = (".torrent", ".magnet")
MAX_FILES = 1000      # torrents one watched folder may hold; the rest are ignored
NAME_MAX = 255        # bytes in a file name (Linux)


def candidates(names: Iterable[str], limit: int = MAX_FILES) -> tuple[list[str], int]:
    """The names worth a look (``.torrent``/``.magnet``, any case; not hidden, so
    editors' and downloaders' temporary files are not), sorted, at most ``limit``;
    and how many more there were."""
    found = sorted(n for n in names
                   if not n.startswith(".") and n.lower().endswith(SUFFIXES))
    return found[:limit], max(0, len(found) - limit)


@dataclass
class Changes:
    added: list[str] = field(default_factory=list)    # to load, in name order
    removed: list[str] = field(default_factory=list)  # to unload


class DirWatch:
    """What changed between listings of a watched folder (see the module docstring)."""

    def __init__(self) -> None:
        self.handed: dict[str, Signature] = {}   # handed out to load, as of this version
        self.pending: dict[str, Signature] = {}  # seen once like this: waiting to settle
        self._first = True

    def update(self, listing: Mapping[str, Signature]) -> Changes:
        changes = Changes()
        for name, sig in list(self.handed.items()):
            if listing.get(name) != sig:
                del self.handed[name]
                changes.removed.append(name)
        pending, self.pending = self.pending, {}
        for name in sorted(listing):
            sig = listing[name]
            if name in self.handed:
                continue
            if self._first or pending.get(name) == sig:
                self.handed[name] = sig
                changes.added.append(name)
            else:
                self.pending[name] = sig
        self._first = False
        return changes

    def forget(self, name: str) -> None:
        """Hand ``name`` out again at the next update if it has not changed."""
        sig = self.handed.pop(name, None)
        if sig is not None:
            self.pending[name] = sig


def safe_name(name: str) -> str:
    """``name`` as one harmless path component (metainfo already mends names; this
    holds whatever a loader gives): no ``/`` or NUL, not empty, ``.`` or ``..``."""
    name = name.replace("/", "_").replace("\0", "_")
    return "_" if name in ("", ".", "..") else name


def _fit(base: str, suffix: str) -> str:
    """``base + suffix`` within NAME_MAX bytes, cutting ``base`` at a character."""
    room = NAME_MAX - len(suffix.encode())
    data = base.encode("utf-8", "surrogateescape")
    if len(data) > room:
        base = data[:room].decode("utf-8", "ignore")
    return base + suffix


def unique_name(name: str, taken: Iterable[str]) -> str:
    """The folder name for a torrent called ``name``: safe, and not in ``taken``
    (compared exactly, as the kernel does): ``name``, else ``name (2)``, ``(3)``..."""
    taken = set(taken)
    name = _fit(safe_name(name), "")
    if name not in taken:
        return name
    for n in range(2, len(taken) + 3):  # at most len(taken) are in the way
        candidate = _fit(name, f" ({n})")
        if candidate not in taken:
            return candidate
    raise AssertionError("unreachable: a free name is always found")
