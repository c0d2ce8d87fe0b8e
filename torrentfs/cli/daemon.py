"""Daemonising like sshfs: ``mount`` returns once the filesystem is mounted and ready
(or prints why it could not be), leaving a daemon that logs to a file.

The parent forks and waits on a pipe for the child's word: ``ok``, or the one line
saying why it failed. Lines ``progress: TEXT`` before the word (a magnet's metadata
fetch) are shown on the parent's terminal as they come.

Ctrl-C (or SIGTERM, SIGHUP) to the waiting parent ends the daemon too (``abandon``):
a magnet's metadata fetch is not left running, to mount later with nobody waiting.
A daemon whose parent is gone when it is ready (its word cannot be written) does
not stay mounted either: it unmounts and ends (``ParentGone``)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from torrentfs.cli.output import CliError, setup_logging, terminal_progress

log = logging.getLogger("torrentfs")

READY_TIMEOUT = 60.0  # a mount that is not ready by then is killed and reported
ABANDON_WAIT = 5.0    # a daemon told to end (Ctrl-C in its parent) gets this long


class ParentGone(Exception):
    """The ``mount`` command that started this daemon is gone before it was told
    the mount is ready: nobody expects the mount, so it is undone."""


class _Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP to the parent while it waits: as Ctrl-C."""

Ready = Callable[[str | None], None]      # ready(None): mounted; ready(why): failed
Progress = Callable[[str], None]


def daemonise(serve: Callable[[Ready, Progress], int], *, mountpoint: str, logfile: Path,
              log_level: str, extra_wait: float = 0.0, early: bool = False) -> int:
    """Fork; the child serves (``serve(ready, progress)`` until unmounted), the parent
    waits for its word that the mount is ready (or why it failed) and exits with
    that. A magnet mount's daemon fetches the metadata first: ``extra_wait`` seconds
    more, while the daemon's progress lines are shown on a terminal. ``early``: the
    child forked at the program's start (``prefork``) serves, if there is one and it
    takes ``serve``; else a child is forked now."""
    from torrentfs.cli import prefork
    handed = prefork.hand_over(serve, logfile, log_level) if early else None
    if handed is not None:
        pid, r = handed
    else:
        prefork.cancel()
        r, w = os.pipe()
        pid = os.fork()
        if not pid:
            os.close(r)
            os.setsid()
            serve_child(w, serve, logfile, log_level)
        os.close(w)
    return wait_for_daemon(pid, r, READY_TIMEOUT + extra_wait, mountpoint, logfile)


def wait_for_daemon(pid: int, r: int, wait: float, mountpoint: str, logfile: Path) -> int:
    """The parent's side: the daemon ``pid``'s word on the pipe ``r`` -> 0, or a
    CliError saying why the mount failed (a daemon silent for ``wait`` s is killed)."""
    previous = {sig: signal.signal(sig, _interrupt)
                for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        word = _read_word(r, wait, terminal_progress())
    except KeyboardInterrupt:
        abandon(pid, mountpoint)
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if word == "ok":
        return 0
    if word is None:  # the daemon wedged: do not leave it or its mount behind
        os.kill(pid, signal.SIGKILL)
        subprocess.run(["fusermount3", "-uz", mountpoint], capture_output=True)
        word = (f"mount did not become ready in {wait:.0f} s; "
                f"see {logfile}")
    elif not word:
        word = f"mount failed; see {logfile}"
    raise CliError(word)


def serve_child(w: int, serve: Callable[[Ready, Progress], int], logfile: Path,
                log_level: str) -> None:
    """The daemon's side, in its own session: no terminal, logs to ``logfile``, runs
    ``serve(ready, progress)`` and tells its parent on the pipe ``w``. Never returns."""
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    setup_logging(log_level, filename=logfile)

    def ready(error: str | None) -> None:
        nonlocal w
        if w is not None:
            try:
                os.write(w, b"ok\n" if error is None else error.encode() + b"\n")
            except OSError:  # EPIPE: nobody is waiting for this mount any more
                if error is None:
                    raise ParentGone() from None
            finally:
                os.close(w)
                w = None

    def progress(text: str) -> None:
        if w is not None:
            try:
                os.write(w, b"progress: " + text.encode() + b"\n")
            except OSError:
                pass

    code = 1
    try:
        code = serve(ready, progress)
    except CliError as e:
        log.error("%s", e)
        ready(str(e))
    except BaseException as e:  # the daemon must tell its parent, whatever happened
        if _has(e, ParentGone):
            log.warning("the mount command that started this daemon is gone: unmounted")
        else:
            from torrentfs.cli.errors import leaf, one_line
            error = one_line(e)
            if error is not None:
                log.error("%s", error)
                ready(str(error))
            else:
                log.exception("daemon failed")
                e = leaf(e)
                ready(f"mount failed: {type(e).__name__}: {e} (see {logfile})")
    finally:
        os._exit(code)


def _interrupt(signum, frame) -> None:
    raise _Interrupted()


def _has(e: BaseException, kind: type) -> bool:
    """True if ``e`` is a ``kind`` or a group holding one, however deep."""
    if isinstance(e, kind):
        return True
    return isinstance(e, BaseExceptionGroup) and any(_has(x, kind) for x in e.exceptions)


def abandon(pid: int, mountpoint: str) -> None:
    """End the daemon ``pid`` whose parent was interrupted before its mount was ready:
    SIGTERM, SIGKILL ``ABANDON_WAIT`` s later; a mount it left is detached."""
    from torrentfs.fs.procfs import fuse_mount_type
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second Ctrl-C waits
        signal.signal(sig, signal.SIG_IGN)
    try:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + ABANDON_WAIT
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() >= deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.05)
    except (ChildProcessError, ProcessLookupError):
        pass
    if fuse_mount_type(mountpoint) == "fuse.torrentfs":
        subprocess.run(["fusermount3", "-uz", mountpoint], capture_output=True, timeout=10)


def _read_word(fd: int, timeout: float, progress=None) -> str | None:
    """Everything written to the pipe until its writer closes it, or None if that
    takes longer than ``timeout`` seconds. Lines ``progress: TEXT`` are passed to
    ``progress`` as they come (when given) and are not part of the word."""
    import select

    from torrentfs.cli import zygote
    caller = [zygote.caller] if zygote.caller is not None else []  # (see zygote)
    deadline = time.monotonic() + timeout
    data = b""
    word: list[str] = []
    shown = False
    try:
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            while True:
                left = deadline - time.monotonic()
                ready = select.select([pipe, *caller], [], [], left)[0] if left > 0 else []
                if not ready:
                    return None
                if caller and caller[0] in ready and pipe not in ready:
                    raise KeyboardInterrupt  # the launcher that asked is gone: as Ctrl-C
                chunk = pipe.read(4096)
                lines = (data + chunk).split(b"\n")
                data = lines.pop() if chunk else b""
                for line in lines:
                    text = line.decode(errors="replace")
                    if text.startswith("progress: "):
                        if progress:
                            progress(text[len("progress: "):])
                            shown = True
                    else:
                        word.append(text)
                if not chunk:
                    return "\n".join(word).strip()
    finally:
        if shown:
            print(file=sys.stderr)
