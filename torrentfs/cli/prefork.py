"""The mount's daemon, forked before the command line is even parsed.

``torrentfs mount`` used to parse its command line, read the torrent and check the
mountpoint, and only then fork the daemon, which then imported trio, pyfuse3 and the
engine (about 0.1 s of CPU) before it could mount. Now the program forks at once
(``start``, from ``launch``, before the CLI's own imports): while the parent parses
and checks on one core, the child imports what the daemon needs on the other, then
waits. ``daemonise`` hands it the work (``hand_over``): the pickled ``serve`` with the
torrent's lock file descriptor (``SCM_RIGHTS``, so the lock is the same open file, as
a fork would share it) and the parent's umask and gc state. Whatever else ends the
command (an error, ``--foreground``, ``--watch``, another command) ends the child
(``cancel``), at once, by its pid. A child that cannot take the work (it died, or the
work does not pickle) leaves ``daemonise`` to fork as before.

The child is in its own session from the start (Ctrl-C at the terminal is the
parent's to handle) and has no terminal output: it says nothing until it serves, and
then logs to its file like any daemon.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
from pathlib import Path
from typing import Callable

HANDOVER_MAX = 64 << 20  # a bigger payload is cheaper shared by a fork (callers say when
                         # pickling would cost more than it saves: ``mount.EARLY_FILES``)
TORRENT_MAX = 1 << 20    # a bigger .torrent (100,000 files: 0.6 s to parse, 0.4 s to pickle
                         # and as much to unpickle) is mounted by a child forked after it

_child: _Child | None = None
resident_allowed = False  # the command may leave a resident process (``mount``: ``zygote``)


class _Child:
    def __init__(self, pid: int, sock: socket.socket, word: int) -> None:
        self.pid = pid
        self.sock = sock      # the work goes down it
        self.word = word      # the daemon's word ("ok" or why not) comes up this pipe


def wanted(argv: list[str]) -> bool:
    """Worth forking early: ``mount`` (or the ``SOURCE MOUNTPOINT`` form mount(8)
    uses) that may daemonise, of a .torrent of at most ``TORRENT_MAX`` bytes. A
    guess: the parsed command line decides."""
    if not argv or any(a in ("-f", "--foreground", "--watch", "-h", "--help", "--version")
                       for a in argv):
        return False
    if not (argv[0] == "mount" or (len(argv) >= 2 and not argv[0].startswith("-")
                                   and (argv[0].endswith(".torrent")
                                        or argv[0].startswith("magnet:")))):
        return False
    for a in argv:
        if a.endswith(".torrent"):
            try:
                return os.stat(a).st_size <= TORRENT_MAX
            except OSError:
                return True  # the parent says what is wrong with it
    return True


def start(argv: list[str], child_main: Callable[[socket.socket, int], None]) -> None:
    """Fork the daemon-to-be if ``argv`` may mount in the background; the child
    runs ``child_main(socket, w)`` (``launch``) and must not return: it imports,
    takes its work from the socket (``receive``) and serves it, its word going up
    the pipe ``w``."""
    global _child
    if _child is not None or not wanted(argv):
        return
    parent_sock, child_sock = socket.socketpair()
    r, w = os.pipe()
    try:
        pid = os.fork()
    except OSError:  # no fork now: daemonise forks later, as before
        for fd in (r, w):
            os.close(fd)
        parent_sock.close()
        child_sock.close()
        return
    if pid == 0:
        parent_sock.close()
        os.close(r)
        try:
            os.setsid()  # Ctrl-C at the terminal is the parent's to handle
            devnull = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(devnull, fd)
            child_main(child_sock, w)
        finally:
            os._exit(1)
    child_sock.close()
    os.close(w)
    _child = _Child(pid, parent_sock, r)


def cancel() -> None:
    """End the early child, if any, that was not handed the work."""
    global _child
    child, _child = _child, None
    if child is None:
        return
    child.sock.close()
    os.close(child.word)
    try:
        os.kill(child.pid, signal.SIGKILL)
        os.waitpid(child.pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def hand_over(serve, logfile, log_level: str) -> tuple[int, int] | None:
    """Give ``serve`` (a picklable callable; a ``lock`` keyword's file descriptor
    goes along) to the early child: (its pid, the pipe its word comes up), or None
    (no such child, or it cannot take it: then it is ended)."""
    import gc
    import pickle
    global _child
    child = _child
    if child is None:
        return None
    lock = getattr(serve, "keywords", {}).get("lock")
    fds = [lock.fd] if lock is not None and lock.fd is not None else []
    umask = os.umask(0)
    os.umask(umask)
    try:
        payload = pickle.dumps((serve, str(logfile), log_level, umask, gc.isenabled(),
                                bool(fds)), protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError):
        cancel()
        return None
    if len(payload) > HANDOVER_MAX:
        cancel()
        return None
    try:
        head = struct.pack(">Q", len(payload))
        socket.send_fds(child.sock, [head + payload[:65536]], fds)
        if len(payload) > 65536:
            child.sock.sendall(payload[65536:])
    except OSError:  # the child is gone (it failed its imports): fork as before
        cancel()
        return None
    child.sock.close()
    _child = None
    return child.pid, child.word


def receive(sock: socket.socket):
    """The early child's side: the work ``hand_over`` sent, as (serve, logfile,
    log_level) with the parent's umask and gc state set here and the lock's file
    descriptor in place; None if the parent closed the socket instead."""
    import pickle
    data, fds, _flags, _addr = socket.recv_fds(sock, 65536 + 8, 1)
    buf = bytearray(data)
    while 0 < len(buf) < 8:
        chunk = sock.recv(8 - len(buf))
        if not chunk:
            break
        buf += chunk
    if len(buf) < 8:
        for fd in fds:
            os.close(fd)
        return None
    (size,) = struct.unpack(">Q", buf[:8])
    del buf[:8]
    while len(buf) < size:
        chunk = sock.recv(min(1 << 20, size - len(buf)))
        if not chunk:
            return None
        buf += chunk
    sock.close()
    serve, logfile, log_level, umask, gc_enabled, has_fd = pickle.loads(buf)
    os.umask(umask)
    import gc
    if gc_enabled:
        gc.enable()
    else:
        gc.disable()
    if has_fd:
        serve.keywords["lock"].fd = fds[0]
    return serve, Path(logfile), log_level
