"""The resident process ("zygote"): a mount's daemon forked from a process that has
imported it all already (issue 13: mount -> listed was mostly imports).

Without it, ``torrentfs mount`` forks an early child (``prefork``) that imports trio,
pyfuse3 and the engine (~0.15-0.2 s of CPU) before it can mount. With it, a
per-user process that did those imports once (``mount.preload``, the daemon's
set-up, httpx) waits on a unix socket, and the launcher (``prefork.start``, before
the command line's own imports) asks it for a child instead of forking one:

1. The launcher connects to ``socket_path()`` (a folder of the user's alone, the
   socket 0600, its name from the interpreter, the package's folder, the
   environment variables the interpreter reads at start and the namespaces, so a
   different install, ``PYTHONPATH`` or ``ip netns exec`` has its own) and checks that the peer runs as the same user.
2. It sends one request (``marshal``: the op, the interpreter's version, its
   environment, cwd and file limits) with the write end of the pipe the daemon's
   word comes up (``SCM_RIGHTS``).
3. The zygote checks that none of its modules changed on disk since it imported
   them (an upgrade, a ``git pull``) and that it can give the child the caller's
   limits; then it forks. The child is exactly today's early child after its
   imports: in its own session, with the caller's environment, cwd and limits, it
   takes its work from the same socket (``prefork.receive``: the pickled ``serve``,
   the torrent's lock, umask, gc state) and serves (``daemon.serve_child``).
4. The zygote answers ``pid N`` with a pidfd of the child (the launcher waits for
   and signals a process that is not its child through it), or ``refused: WHY``.

A stale zygote refuses, removes its socket and ends; anything that goes wrong on
the launcher's side (no socket, refused, a protocol error, a timeout) makes
``request`` return None, and the launcher forks as it always did: a mount never
fails for the zygote. The zygote is single-threaded and never runs trio (a fork
of it is safe), reaps its children, and ends after ``idle`` seconds without a
request. Ending it leaves the mounts it forked alone.

Only the standard library is imported here at the top: the launcher imports this
before anything else.
"""

from __future__ import annotations

import marshal
import os
import socket
import struct
import sys

SOCKET_ENV_OFF = "TORRENTFS_RESIDENT"   # 0/no/off/false: never use or start one
IDLE_DEFAULT = 600.0                    # s without a request before it ends
CONNECT_TIMEOUT = 2.0                   # s for the zygote to answer (it does in ms)
REQUEST_MAX = 1 << 20
SUN_PATH_MAX = 107                      # bytes of a unix socket's path: longer, no zygote
LIMITS = ("RLIMIT_NOFILE", "RLIMIT_CORE", "RLIMIT_STACK", "RLIMIT_AS", "RLIMIT_DATA",
          "RLIMIT_FSIZE")
_OFF = ("0", "no", "off", "false")


def package_dir() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _start_env(environ) -> list[tuple[str, str]]:
    """The variables the interpreter (and the dynamic loader) read when it starts:
    a child forked from a zygote started under others would not see them."""
    return sorted((k, v) for k, v in environ.items() if k.startswith(("PYTHON", "LD_")))


NAMESPACES = ("mnt", "net", "pid", "user", "uts", "ipc", "cgroup")


def namespaces() -> list[int]:
    """This process's namespaces: a child forked by a zygote is in the zygote's
    (``ip netns exec`` or ``unshare`` gets a zygote of its own)."""
    found = []
    for name in NAMESPACES:
        try:
            found.append(os.stat(f"/proc/self/ns/{name}").st_ino)
        except OSError:
            found.append(0)
    return found


def runtime_dir(environ=os.environ) -> str:
    """The user's runtime folder for torrentfs (as ``registry.runtime_dir`` finds it,
    without its imports), made by neither: ``secure_dir`` checks or makes it."""
    uid = os.getuid()
    base = environ.get("XDG_RUNTIME_DIR")
    if base and os.path.isabs(base) and os.path.isdir(base):
        return os.path.join(base, "torrentfs")
    run = f"/run/user/{uid}"
    if os.path.isdir(run) and os.stat(run).st_uid == uid and os.access(run, os.W_OK):
        return os.path.join(run, "torrentfs")
    return f"/tmp/torrentfs-{uid}"


def socket_path(environ=os.environ) -> str:
    """Where the zygote for this interpreter, package and start environment listens."""
    import zlib
    key = repr((os.path.realpath(sys.executable), package_dir(), _start_env(environ),
                sys.hexversion, namespaces())).encode()
    return os.path.join(runtime_dir(environ),
                        f"resident-{zlib.crc32(key):08x}{zlib.adler32(key):08x}.sock")


def secure_dir(path: str, make: bool = False) -> bool:
    """``path`` is a folder of this user's alone (made 0700 if ``make``)."""
    if make:
        try:
            os.makedirs(path, 0o700, exist_ok=True)
        except OSError:
            return False
    try:
        st = os.lstat(path)
    except OSError:
        return False
    import stat
    return (stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
            and not st.st_mode & 0o077)


def enabled(argv: list[str], environ=os.environ) -> bool:
    """Worth asking a zygote: ``mount`` typed as a command (not mount(8)'s form, not
    a systemd unit's process: a unit's daemon belongs in its unit's cgroup), and not
    turned off (``--no-resident``, ``$TORRENTFS_RESIDENT=0``)."""
    return (bool(argv) and argv[0] == "mount" and "--no-resident" not in argv
            and environ.get(SOCKET_ENV_OFF, "").lower() not in _OFF
            and "INVOCATION_ID" not in environ)


# -- the launcher's side -------------------------------------------------------------

class Reply:
    def __init__(self, sock: socket.socket, line: str, fds: list[int]) -> None:
        self.sock, self.line, self.fds = sock, line, fds


def ask(op: str, fds: list[int] = (), path: str | None = None, **extra) -> Reply | None:
    """Send ``op`` to the zygote: its reply (the socket still open) or None (no
    zygote, not ours, or anything else wrong). The caller closes ``reply.sock``."""
    path = path or socket_path()
    if len(os.fsencode(path)) > SUN_PATH_MAX or not secure_dir(os.path.dirname(path)):
        return None
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    received: list[int] = []
    try:
        s.settimeout(CONNECT_TIMEOUT)
        s.connect(path)
        _pid, uid, _gid = struct.unpack("3i", s.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        if uid != os.getuid():
            raise OSError("not ours")
        body = marshal.dumps({"op": op, "version": sys.hexversion, **extra})
        socket.send_fds(s, [struct.pack(">I", len(body)) + body], list(fds))
        data = b""
        while not data.endswith(b"\n"):
            chunk, got, _flags, _addr = socket.recv_fds(s, 65536, 2)
            received += got
            if not chunk:
                raise OSError("closed")
            data += chunk
            if len(data) > REQUEST_MAX:
                raise OSError("too long")
        s.settimeout(None)
        return Reply(s, data.decode(errors="replace").strip(), received)
    except (OSError, ValueError, struct.error):
        s.close()
        for fd in received:
            os.close(fd)
        return None


def request_child(w: int, path: str | None = None) -> tuple[int, int, socket.socket] | None:
    """Ask the zygote for an early child whose word goes up the pipe ``w``:
    (its pid, a pidfd of it, the socket its work goes down), or None."""
    import resource
    limits = {name: resource.getrlimit(getattr(resource, name)) for name in LIMITS
              if hasattr(resource, name)}
    try:
        cwd = os.getcwd()
    except OSError:
        return None
    reply = ask("fork", [w], path, env=dict(os.environ), cwd=cwd, limits=limits,
                package=package_dir(), namespaces=namespaces())
    if reply is None:
        return None
    try:
        word, _, pid = reply.line.partition(" ")
        if word == "pid" and len(reply.fds) == 1 and pid.isdigit():
            return int(pid), reply.fds[0], reply.sock
    except ValueError:
        pass
    reply.sock.close()
    for fd in reply.fds:
        os.close(fd)
    return None


def server_argv(path: str, idle: float) -> list[str]:
    """The command line of a zygote listening on ``path`` (``zygoteserver.main``)."""
    code = ("import sys; from torrentfs.cli.zygoteserver import main; "
            "sys.exit(main(sys.argv[1:]))")
    return [sys.executable, "-c", code, path, str(idle), package_dir()]


def spawn(idle: float = IDLE_DEFAULT, path: str | None = None):
    """Start a zygote in the background (it ends at once if one is there or on its
    way): its Popen, or None if its socket's path is too long to bind."""
    import subprocess
    path = path or socket_path()
    if len(os.fsencode(path)) > SUN_PATH_MAX:
        return None
    return subprocess.Popen(server_argv(path, idle), cwd="/",
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            close_fds=True)
