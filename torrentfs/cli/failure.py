"""Why a command failed, in one line that names the cause and what to do.

trio gathers the errors of concurrent tasks into exception groups; a user must see
none of that: ``describe`` finds the error that matters inside (groups unwrapped,
the first leaf that says something), and gives the known causes a remedy (the
open-files limit, a full disk, a port in use, a permission)."""

from __future__ import annotations

import errno
import resource


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``, exception groups unwrapped, in order."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in leaves(e)]
    return [exc]


def root_cause(exc: BaseException) -> BaseException:
    """The leaf that explains the failure best: an OSError or one of our own errors
    (they carry a message for the user) before anything else."""
    found = leaves(exc)
    users = _user_errors()
    for e in found:
        if isinstance(e, (OSError, *users)):
            return e
    for e in found:
        if not isinstance(e, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            return e
    return found[0]


def _user_errors() -> tuple[type, ...]:
    """Our errors whose message is written for the user."""
    from torrentfs.cli.output import CliError
    from torrentfs.engine.sources import SourceError
    try:
        from torrentfs.fs.fuse import MountError
    except ImportError:  # no pyfuse3: no mount either
        return CliError, SourceError
    return CliError, SourceError, MountError


def open_files_limit() -> int | None:
    try:
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (OSError, ValueError):
        return None


def describe(exc: BaseException) -> str:
    """One line for the user: what failed and, for the known causes, what to do."""
    e = root_cause(exc)
    if isinstance(e, OSError) and e.errno is not None:
        where = f" ({e.filename})" if e.filename else ""
        if e.errno in (errno.EMFILE, errno.ENFILE):
            limit = open_files_limit()
            now = f" (now {limit})" if limit not in (None, resource.RLIM_INFINITY) else ""
            return (f"too many open files{now}: raise ulimit -n or lower "
                    "--max-open-files")
        if e.errno == errno.ENOSPC:
            return (f"no space left on the device of the cache{where}: free some, or "
                    "use --cache-size or another --cache-dir")
        if e.errno == errno.EDQUOT:
            return f"disk quota exceeded{where}: lower --cache-size or use another --cache-dir"
        if e.errno in (errno.EACCES, errno.EPERM):
            return f"permission denied{where}: check the owner and mode, or use another --cache-dir"
        if e.errno == errno.EADDRINUSE:
            return "the port is in use: choose another with --port"
        if e.errno == errno.EROFS:
            return f"read-only filesystem{where}: use another --cache-dir"
        return f"{e.strerror or e}{where}"
    text = " ".join(str(e).split())
    return text if text else type(e).__name__
