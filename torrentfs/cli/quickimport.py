"""trio and pyfuse3 imported without two side trips they take at import (issue 13:
mount -> listed is mostly imports; docs/benchmarks.md, session 7).

- trio names its worker threads through ``pthread_setname_np``, found with
  ``ctypes.util.find_library("pthread")``, which on Linux runs ``ldconfig -p`` in a
  subprocess (a fork, an exec and a parse of the whole library cache) on every
  start. ``libpthread.so.0`` is what that finds on any glibc system; where it can be
  loaded it is the answer, with no subprocess. Where it cannot (musl), the lookup
  runs as before.
- pyfuse3 sets its ``__version__`` with ``importlib.metadata.version("pyfuse3")``:
  the import of ``importlib.metadata`` (email, csv, zipfile...) and a scan of
  ``sys.path`` for distributions. Nothing here reads pyfuse3's ``__version__``:
  pyfuse3 says "unknown", as it does when it is not installed as a distribution.

Both are undone once the import is over: only the daemon's own imports see them.
"""

from __future__ import annotations

import contextlib
import sys
import types
from typing import Iterator

PTHREAD = "libpthread.so.0"


def import_trio_pyfuse3() -> None:
    """``import trio, pyfuse3``, without ``ldconfig`` or a distribution scan (if not
    imported yet)."""
    if "trio" not in sys.modules:
        with _pthread_found_directly():
            import trio  # noqa: F401
    if "pyfuse3" not in sys.modules:
        with _no_version_lookup():
            import pyfuse3  # noqa: F401


@contextlib.contextmanager
def _pthread_found_directly() -> Iterator[None]:
    import ctypes
    import ctypes.util
    original = ctypes.util.find_library

    def find_library(name: str) -> str | None:
        if name == "pthread":
            try:
                ctypes.CDLL(PTHREAD)
            except OSError:
                pass
            else:
                return PTHREAD
        return original(name)

    ctypes.util.find_library = find_library
    try:
        yield
    finally:
        ctypes.util.find_library = original


class _NotLookedUp(Exception):
    """Raised by the stand-in ``version``: pyfuse3 takes it as "not installed"."""


@contextlib.contextmanager
def _no_version_lookup() -> Iterator[None]:
    """While pyfuse3 imports: an ``importlib.metadata`` whose ``version`` says the
    package is not found (pyfuse3 catches ``PackageNotFoundError`` and says
    "unknown"). The real module, if it was imported already, is left alone."""
    if "importlib.metadata" in sys.modules:
        yield
        return
    stand_in = types.ModuleType("importlib.metadata")
    stand_in.PackageNotFoundError = _NotLookedUp

    def version(name: str) -> str:
        raise _NotLookedUp(name)

    stand_in.version = version
    sys.modules["importlib.metadata"] = stand_in
    try:
        yield
    finally:
        if sys.modules.get("importlib.metadata") is stand_in:
            del sys.modules["importlib.metadata"]
