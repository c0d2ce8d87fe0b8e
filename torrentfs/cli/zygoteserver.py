"""The resident process ("zygote") itself: imports the command line and what a
mount's daemon needs once, then forks a child per ``run`` request on its socket,
which runs the command (``zygote`` has the protocol and the launcher's side).
Single-threaded, never runs trio: fork is safe here.

One per socket path: the first holds an flock on ``resident-*.lock`` (which says
its pid and settings for ``torrentfs resident status``), a second one ends at once.
It ends on ``stop``, SIGTERM, ``idle`` s without a request, or when its code is
found stale (a module changed on disk since it was imported: it refuses that
request and ends, and the launcher runs the command itself). Its children are the
commands' processes, which it reaps; the daemons are theirs, as without it.
"""

from __future__ import annotations

import fcntl
import gc
import json
import marshal
import os
import select
import signal
import socket
import struct
import sys
import threading
import time

from torrentfs.cli.zygote import (
    LIMITS,
    REQUEST_MAX,
    RunLocally,
    namespaces,
    package_dir,
    secure_dir,
)


def preload() -> None:
    """Everything the mount command and its daemon import before the mount is
    listed (and the http client's lazy imports), once for every child."""
    from torrentfs.cli.mount import preload as mount_preload
    mount_preload()
    import difflib  # noqa: F401  - the config file's, when there is one
    import encodings.idna  # noqa: F401  - a tracker's host name, at the first announce
    import tomllib  # noqa: F401

    import torrentfs.cli.config  # noqa: F401
    import torrentfs.cli.daemon  # noqa: F401
    import torrentfs.cli.main  # noqa: F401
    import torrentfs.disk.lock  # noqa: F401  - the lock handed over (unpickled)
    import torrentfs.net.tracker  # noqa: F401
    try:
        from torrentfs.net.httpclient import client
        client()  # httpcore's transports, imported when a client is made
    except Exception:  # noqa: BLE001 - a daemon's own client says what is wrong
        pass


def module_times() -> dict[str, int]:
    """The mtime of the file of every module imported so far."""
    times = {}
    for m in list(sys.modules.values()):
        f = getattr(m, "__file__", None)
        if f:
            try:
                times[f] = os.stat(f).st_mtime_ns
            except OSError:
                pass
    return times


class Zygote:
    def __init__(self, path: str, idle: float) -> None:
        self.path, self.idle = path, idle
        self.started = time.time()
        self.last = time.monotonic()
        self.children: set[int] = set()
        self.served = 0
        self.cpu = 0.0  # s of CPU of the commands run and reaped
        self.stopping = False
        self.lock = -1
        self.listener: socket.socket | None = None
        self.wake_r = self.wake_w = -1
        self.times: dict[str, int] = {}

    # -- set-up and the loop --------------------------------------------------------

    def take_lock(self) -> bool:
        self.lock = os.open(self.path[:-len(".sock")] + ".lock",
                            os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.lock)
            return False
        return True

    def listen(self) -> None:
        try:
            os.unlink(self.path)  # a dead zygote's (we hold the lock)
        except FileNotFoundError:
            pass
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)  # under umask 077
        os.chmod(self.path, 0o600)
        self.listener.listen(64)
        info = json.dumps({"pid": os.getpid(), "socket": self.path, "idle": self.idle,
                           "started": self.started, "package": package_dir(),
                           "python": sys.executable})
        os.ftruncate(self.lock, 0)
        os.pwrite(self.lock, info.encode() + b"\n", 0)

    def loop(self) -> None:
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(self.wake_w)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, self._signal)
        while not self.stopping:
            self.reap()
            left = self.last + self.idle - time.monotonic()
            if left <= 0:
                break
            ready = select.select([self.listener, self.wake_r], [], [], left)[0]
            if self.wake_r in ready:
                try:
                    os.read(self.wake_r, 512)
                except BlockingIOError:
                    pass
            if self.listener in ready:
                try:
                    conn, _ = self.listener.accept()
                except OSError:
                    continue
                with conn:
                    self.handle(conn)
        self.reap()

    def _signal(self, signum, frame) -> None:
        if signum != signal.SIGCHLD:
            self.stopping = True

    def close(self) -> None:
        if self.listener is not None:
            try:
                os.unlink(self.path)  # while we hold the lock: nobody else's
            except FileNotFoundError:
                pass
            self.listener.close()
        os.close(self.lock)

    def reap(self) -> None:
        for pid in list(self.children):
            try:
                done, _, usage = os.wait4(pid, os.WNOHANG)
            except ChildProcessError:
                done, usage = pid, None
            if done:
                self.children.discard(pid)
                if usage is not None:
                    self.cpu += usage.ru_utime + usage.ru_stime

    # -- requests ----------------------------------------------------------------------

    def handle(self, conn: socket.socket) -> None:
        fds: list[int] = []
        try:
            conn.settimeout(2.0)
            _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(
                socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
            if uid != os.getuid():
                return
            data, fds, _flags, _addr = socket.recv_fds(conn, 65536, 4)
            buf = bytearray(data)
            while len(buf) < 4 or len(buf) < 4 + struct.unpack(">I", buf[:4])[0]:
                chunk = conn.recv(65536)
                if not chunk or len(buf) > REQUEST_MAX:
                    return
                buf += chunk
            req = marshal.loads(bytes(buf[4:]))
            if not isinstance(req, dict) or req.get("version") != sys.hexversion:
                conn.sendall(b"refused: another Python\n")
                return
            op = req.get("op")
            if op == "status":
                conn.sendall(b"ok " + json.dumps(self.status()).encode() + b"\n")
            elif op == "stop":
                self.stopping = True
                conn.sendall(b"ok\n")
            elif op == "run" and len(fds) == 3:
                self.last = time.monotonic()  # only mounts keep it alive
                self.run(conn, fds, req)
            else:
                conn.sendall(b"refused: bad request\n")
        except (OSError, ValueError, EOFError, TypeError, struct.error):
            pass
        finally:
            for fd in fds:
                os.close(fd)

    def status(self) -> dict:
        self.reap()
        return {"pid": os.getpid(), "socket": self.path, "idle": self.idle,
                "started": self.started, "served": self.served, "commands_cpu": self.cpu,
                "children": sorted(self.children),
                "idle_left": max(0.0, self.last + self.idle - time.monotonic())}

    def refusal(self, req: dict) -> str | None:
        """Why this zygote cannot fork the child asked for, or None."""
        if req.get("package") != package_dir():
            return "another package"
        if req.get("namespaces") != namespaces():
            return "namespaces"
        if module_times() != self.times:
            return "stale"  # code changed under us: fork as before, and retire
        if threading.active_count() != 1:
            return "threads"
        if not os.path.isdir(req.get("cwd", "")):
            return "cwd"
        import resource
        for name, (_soft, hard) in req.get("limits", {}).items():
            if name not in LIMITS or not hasattr(resource, name):
                return "limits"
            _ours, our_hard = resource.getrlimit(getattr(resource, name))
            if os.geteuid() != 0 and _above(hard, our_hard):
                return "limits"  # the child could not raise its hard limit to it
        return None

    def run(self, conn: socket.socket, fds: list[int], req: dict) -> None:
        """Fork the command's process (``command``), unless refused. ``fds`` (the
        caller's stdio) are closed here either way."""
        why = self.refusal(req)
        if why is not None:
            if why == "stale":
                self.stopping = True
            conn.sendall(f"refused: {why}\n".encode())
            return
        pid = os.fork()
        if pid == 0:
            try:
                self.command(conn, fds, req)
            finally:
                os._exit(1)
        self.children.add(pid)
        self.served += 1

    def command(self, conn: socket.socket, fds: list[int], req: dict) -> None:
        """The forked child: takes the caller's stdio, environment, cwd, umask and
        limits, says its pid, runs the command and says its exit code."""
        signal.set_wakeup_fd(-1)
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        code = 1
        try:
            self.listener.close()
            for fd in (self.lock, self.wake_r, self.wake_w):
                os.close(fd)
            for i, fd in enumerate(fds):
                os.dup2(fd, i)
                os.close(fd)
            fds.clear()
            _stdio()
            import resource
            for name, limit in req.get("limits", {}).items():
                try:
                    resource.setrlimit(getattr(resource, name), tuple(limit))
                except (OSError, ValueError):
                    pass
            try:
                os.chdir(req["cwd"])
            except OSError:
                os.chdir("/")
            os.environ.clear()
            os.environ.update(req["env"])
            os.umask(req["umask"])
            conn.settimeout(None)
            pidfd = os.pidfd_open(os.getpid())
            socket.send_fds(conn, [f"pid {os.getpid()}\n".encode()], [pidfd])
            os.close(pidfd)
            from torrentfs.cli import zygote
            zygote.caller = conn  # the daemon's wait watches it: a killed launcher
            os.register_at_fork(after_in_child=_forget_caller)  # not the daemon's
            from torrentfs.cli.main import main as cli_main
            code = cli_main(req["argv"])
        except RunLocally:
            _flush()
            conn.sendall(b"local\n")
            os._exit(0)
        except SystemExit as e:  # argparse's usage error (2)
            if isinstance(e.code, str):
                print(e.code, file=sys.stderr)
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except KeyboardInterrupt:
            code = 130
        _flush()
        try:
            conn.sendall(f"exit {code}\n".encode())
        except OSError:
            pass
        os._exit(code)


def _stdio() -> None:
    """sys.stdin, stdout and stderr on the caller's (fds 0, 1, 2), buffered as
    Python buffers them at start for what they are."""
    enc = sys.stdout.encoding
    sys.stdin = open(0, "r", encoding=enc, closefd=False)
    sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1, encoding=enc,
                      closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding=enc, errors="backslashreplace",
                      closefd=False)


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass


def _forget_caller() -> None:
    """In a process the command forks (its daemon): the launcher's socket is not
    its to hold or watch."""
    from torrentfs.cli import zygote
    if zygote.caller is not None:
        zygote.caller.close()
        zygote.caller = None


def _name_process() -> None:
    """``torrentfs`` as this process's name (``ps``, ``pgrep torrentfs``), as a
    daemon started by the ``torrentfs`` script has: the daemons forked from here
    inherit it."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(15, b"torrentfs", 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def _above(a: int, b: int) -> bool:
    """Limit ``a`` is above limit ``b`` (RLIM_INFINITY above all)."""
    import resource
    inf = resource.RLIM_INFINITY
    return a != b and (a == inf or (b != inf and a > b))


def serve_forever(path: str, idle: float) -> int:
    """The zygote's life: 0 when it ends (also when another holds the socket)."""
    os.umask(0o077)
    os.chdir("/")
    if not secure_dir(os.path.dirname(path), make=True):
        return 1
    z = Zygote(path, idle)
    if not z.take_lock():
        return 0  # another is there or on its way
    _name_process()
    try:
        gc.disable()
        preload()
        gc.freeze()  # shared by the children, never walked again
        gc.enable()
        z.times = module_times()
        z.listen()
        z.loop()
    finally:
        z.close()
    return 0


def main(argv: list[str]) -> int:
    """``python -c ... PATH IDLE PACKAGE`` (``zygote.server_argv``): the zygote."""
    path, idle, package = argv[0], float(argv[1]), argv[2]
    if package != package_dir():  # another install came first on sys.path
        return 1
    return serve_forever(path, idle)
