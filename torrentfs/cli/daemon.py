"""Daemonising like sshfs: ``mount`` returns once the filesystem is mounted and ready
(or prints why it could not be), leaving a daemon that logs to a file.

The parent forks and waits on a pipe for the child's word: ``ok``, or the one line
saying why it failed. Lines ``progress: TEXT`` before the word (a magnet's metadata
fetch) are shown on the parent's terminal as they come."""

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

Ready = Callable[[str | None], None]      # ready(None): mounted; ready(why): failed
Progress = Callable[[str], None]


def daemonise(serve: Callable[[Ready, Progress], int], *, mountpoint: str, logfile: Path,
              log_level: str, extra_wait: float = 0.0) -> int:
    """Fork; the child serves (``serve(ready, progress)`` until unmounted), the parent
    waits for its word that the mount is ready (or why it failed) and exits with
    that. A magnet mount's daemon fetches the metadata first: ``extra_wait`` seconds
    more, while the daemon's progress lines are shown on a terminal."""
    r, w = os.pipe()
    wait = READY_TIMEOUT + extra_wait
    pid = os.fork()
    if pid:
        os.close(w)
        word = _read_word(r, wait, terminal_progress())
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
    # The child: a new session, no terminal, logs to a file.
    os.close(r)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    setup_logging(log_level, filename=logfile)

    def ready(error: str | None) -> None:
        nonlocal w
        if w is not None:
            os.write(w, b"ok\n" if error is None else error.encode() + b"\n")
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
        from torrentfs.cli.failure import describe
        log.exception("daemon failed")
        ready(f"mount failed: {describe(e)}")
    finally:
        os._exit(code)


def _read_word(fd: int, timeout: float, progress=None) -> str | None:
    """Everything written to the pipe until its writer closes it, or None if that
    takes longer than ``timeout`` seconds. Lines ``progress: TEXT`` are passed to
    ``progress`` as they come (when given) and are not part of the word."""
    import select
    deadline = time.monotonic() + timeout
    data = b""
    word: list[str] = []
    shown = False
    try:
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([pipe], [], [], left)[0]:
                    return None
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
