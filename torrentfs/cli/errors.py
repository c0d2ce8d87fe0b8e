"""Foreseeable failures as the one line a user reads: the exception out of an
exception group (trio wraps what a task raises), and the OS errors a user can cause
or fix (a port in use, a full disk, a folder not theirs, the open-files limit) said
with what to do. Anything else is a bug and stays one (``main`` reports it as an
internal error, the details with ``-v``)."""

from __future__ import annotations

import errno
import resource
import socket

from torrentfs.cli.output import CliError


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``, exception groups unwrapped, in order."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for e in exc.exceptions for leaf in leaves(e)]
    return [exc]


def root_cause(exc: BaseException) -> BaseException:
    """The leaf that explains a failure best: an OSError or one of our own errors
    (their message is written for the user) before anything else."""
    from torrentfs.engine.sources import SourceError
    from torrentfs.fs.fuse import MountError
    found = leaves(exc)
    for e in found:
        if isinstance(e, (OSError, CliError, SourceError, MountError)):
            return e
    for e in found:
        if not isinstance(e, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            return e
    return found[0]


def describe(exc: BaseException) -> str:
    """One line for anything that failed: the foreseeable ones as ``one_line`` says
    them, anything else its message on one line (or its type's name)."""
    error = one_line(exc)
    if error is not None:
        return str(error)
    e = root_cause(exc)
    if isinstance(e, OSError) and e.strerror:
        return f"{_where(e)}{e.strerror}"
    return " ".join(str(e).split()) or type(e).__name__


def open_files_limit() -> int | None:
    """This process's soft limit of open files (ulimit -n), None if unknown."""
    try:
        return resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (OSError, ValueError):
        return None


def leaf(exc: BaseException) -> BaseException:
    """The first exception that is not a group, however deep trio's nurseries nested it."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _where(e: OSError) -> str:
    return f"{e.filename}: " if e.filename else ""


def port_in_use(port: int, what: str = "listen on port ...", option: str = "--port") -> str:
    """``what`` is what could not be done: "listen on port ...", "use UDP port ...
    for the DHT" (``...`` is the port)."""
    return (f"cannot {what.replace('...', str(port))}: it is in use (another "
            f"torrentfs or program has it); choose another with {option} N, or leave "
            f"{option} out for a free one")


def cache_folder_error(folder, e: OSError) -> CliError:
    """The cache folder cannot be made or used: why, and what to do."""
    what = {errno.EEXIST: "a file is in the way", errno.ENOTDIR: "a file is in the way",
            errno.EACCES: "permission denied", errno.EPERM: "permission denied",
            errno.EROFS: "read-only filesystem",
            errno.ENOSPC: "no space left on the device"}.get(e.errno, e.strerror)
    return CliError(f"cache folder {folder}: cannot create or use it ({what}): choose "
                    "another with --cache-dir DIR")


def describe_os_error(e: OSError, port: int | None = None) -> str | None:
    """The one line for an OS error a user can fix, or None if it is not one."""
    code = e.errno
    if code == errno.EADDRINUSE:
        return port_in_use(port) if port else (
            "a port is in use: choose another with --port N, or leave --port out")
    if code == errno.EACCES and port is not None and not e.filename and port < 1024:
        return f"port {port} needs root: choose one >= 1024 with --port N"
    if code in (errno.EMFILE, errno.ENFILE):
        limit = open_files_limit()
        now = f" (now {limit})" if limit not in (None, resource.RLIM_INFINITY) else ""
        return (f"too many open files{now}: raise the limit (ulimit -n 4096), or lower "
                "--max-open-files N or --max-peers N")
    if code == errno.ENOSPC:
        return (f"{_where(e)}no space left on the device: free some, or cap the cache "
                "with --cache-size SIZE")
    if code == errno.EDQUOT:
        return f"{_where(e)}disk quota exceeded: free some, or set --cache-size SIZE"
    if code in (errno.EACCES, errno.EPERM):
        return (f"{_where(e)}permission denied: choose a folder of yours (--cache-dir "
                "DIR for the cache)")
    if code == errno.EROFS:
        return f"{_where(e)}read-only filesystem: choose a writable --cache-dir DIR"
    if code in (errno.ENOENT, errno.ENOTDIR) and e.filename:
        return f"{_where(e)}no such file or directory"
    if code == errno.EEXIST and e.filename:
        return f"{_where(e)}a file is in the way (a folder was wanted there)"
    if code == errno.EADDRNOTAVAIL:
        return f"cannot use that address: {e.strerror}"
    if e.filename and e.strerror:
        return f"{_where(e)}{e.strerror}"
    return None


def one_line(exc: BaseException, port: int | None = None) -> CliError | None:
    """A CliError for a foreseeable failure (perhaps inside an exception group),
    else None."""
    from torrentfs.engine.sources import SourceError
    from torrentfs.fs.fuse import MountError
    e = root_cause(exc)
    if isinstance(e, CliError):
        return e
    if isinstance(e, (SourceError, MountError)):
        return CliError(str(e))
    if isinstance(e, OSError):
        text = describe_os_error(e, port)
        return CliError(text) if text else None
    return None


def check_port(port: int, what: str = "listen on port ...", option: str = "--port",
               kind: int = socket.SOCK_STREAM) -> None:
    """Fail at once, with one line, if ``port`` cannot be bound (0: any port, fine):
    before a seed verifies its data or a mount daemonises, not after."""
    if not port:
        return
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as trio's listeners
        try:
            sock.bind(("", port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise CliError(port_in_use(port, what, option)) from None
            raise CliError(describe_os_error(e, port) or
                           f"cannot {what.replace('...', str(port))}: "
                           f"{e.strerror}") from None
