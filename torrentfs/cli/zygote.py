"""The resident process ("zygote"): a mount command run in a process that has
imported it all already (issue 13: mount -> listed was mostly imports).

Without it, ``torrentfs mount`` starts an interpreter that imports the command line
(~35 ms) while an early child (``prefork``) imports trio, pyfuse3 and the engine
(~0.15-0.2 s of CPU) before it can mount. With it, a per-user process that did all
those imports once (the CLI, ``mount.preload``, the daemon's set-up, httpx) waits on
a unix socket, and the launcher (``launch``, before the command line's imports)
hands it the command instead of running it:

1. The launcher connects to ``socket_path()`` (a folder of the user's alone, the
   socket 0600, its name from the interpreter, the package's folder, the
   environment variables the interpreter reads at start, the locale and the
   namespaces, so a different install, ``PYTHONPATH`` or ``ip netns exec`` has its
   own) and checks that the peer runs as the same user.
2. It sends one request (``marshal``: the op, the interpreter's version, argv, its
   environment, cwd, umask and file limits) with its stdin, stdout and stderr
   (``SCM_RIGHTS``).
3. The zygote checks that none of its modules changed on disk since it imported
   them (an upgrade, a ``git pull``) and that it can give the child the caller's
   limits; then it forks. The child takes the caller's stdio, environment, cwd,
   umask and limits, answers ``pid N`` with a pidfd of itself, runs the command
   (``cli.main.main(argv)``: the parse, the checks, the daemon forked as in a late
   fork and waited for) and ends with ``exit CODE``. A command given back
   (``RunLocally``: ``--no-resident`` from the config file) ends with ``local``.
4. Meanwhile the launcher forwards SIGINT, SIGTERM and SIGHUP to the command's
   process (Ctrl-C works as before) and exits with its code. A launcher that goes
   away (SIGKILL) is seen by the command's process as Ctrl-C (``caller``: the
   socket ``daemon._read_word`` also watches): its mount is not left behind.

A stale zygote refuses (``refused: WHY``), removes its socket and ends; anything
that goes wrong before the command's process answers (no socket, refused, a
protocol error, a timeout) makes ``run_command`` return None, and the launcher runs
the command itself as it always did: a mount never fails for the zygote. The zygote
is single-threaded and never runs trio (a fork of it is safe), reaps its children,
and ends after ``idle`` seconds without a command. The daemons are the commands'
children, as without it: ending the zygote leaves the mounts alone.

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
    """The variables the interpreter (and the dynamic loader) read when it starts,
    and the locale (the encoding of stdio is chosen then): a child forked from a
    zygote started under others would not see them."""
    return sorted((k, v) for k, v in environ.items()
                  if k.startswith(("PYTHON", "LD_", "LC_")) or k == "LANG")


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

caller: socket.socket | None = None  # in a command's process: the launcher's socket


class RunLocally(SystemExit):
    """Raised by a command run in the zygote that must run in the launcher instead
    (nothing printed yet): the launcher runs it itself."""


class Reply:
    def __init__(self, sock: socket.socket, line: str, fds: list[int], rest: bytes) -> None:
        self.sock, self.line, self.fds, self.rest = sock, line, fds, rest


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
        while b"\n" not in data:
            chunk, got, _flags, _addr = socket.recv_fds(s, 65536, 2)
            received += got
            if not chunk:
                raise OSError("closed")
            data += chunk
            if len(data) > REQUEST_MAX:
                raise OSError("too long")
        s.settimeout(None)
        line, _, rest = data.partition(b"\n")
        return Reply(s, line.decode(errors="replace").strip(), received, rest)
    except (OSError, ValueError, struct.error):
        s.close()
        for fd in received:
            os.close(fd)
        return None


def run_command(argv: list[str], path: str | None = None,
                stdio: tuple[int, int, int] = (0, 1, 2)) -> int | None:
    """Run the command ``argv`` in a child of the zygote, with this process's
    environment, cwd, umask, limits and ``stdio``: its exit code, or None if it
    did not run there (no zygote, refused, given back): the caller runs it. A
    negative code -N: it was killed by the signal N the launcher passed on."""
    import resource
    import signal
    limits = {name: resource.getrlimit(getattr(resource, name)) for name in LIMITS
              if hasattr(resource, name)}
    try:
        cwd = os.getcwd()
    except OSError:
        return None
    umask = os.umask(0o077)
    os.umask(umask)
    forwarded: list[int] = []
    pidfd: list[int] = []

    def forward(signum, frame) -> None:  # Ctrl-C, kill: the command's to handle
        forwarded.append(signum)
        if pidfd:
            try:
                signal.pidfd_send_signal(pidfd[0], signum)
            except OSError:
                pass

    previous = {sig: signal.signal(sig, forward)
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    data = b""
    try:
        reply = ask("run", list(stdio), path, argv=list(argv), env=dict(os.environ),
                    cwd=cwd, umask=umask, limits=limits, package=package_dir(),
                    namespaces=namespaces())
        if reply is None:
            word = ""
        else:
            word, _, pid = reply.line.partition(" ")
            if word != "pid" or len(reply.fds) != 1 or not pid.isdigit():
                reply.sock.close()
                for fd in reply.fds:
                    os.close(fd)
                word = ""
        if not word:  # not run there: the caller runs it, unless it was told to stop
            if forwarded:
                return 130 if forwarded[-1] == signal.SIGINT else -forwarded[-1]
            return None
        signals = set(previous)
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        pidfd.append(reply.fds[0])
        for signum in forwarded:  # came while it was asked
            try:
                signal.pidfd_send_signal(pidfd[0], signum)
            except OSError:
                pass
        signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
        sock, data = reply.sock, reply.rest
        try:
            while b"\n" not in data:
                chunk = sock.recv(256)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        finally:
            sock.close()
            os.close(pidfd.pop())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    word, _, code = data.partition(b"\n")[0].decode(errors="replace").partition(" ")
    if word == "exit" and code.lstrip("-").isdigit():
        return int(code)
    if word == "local" and not forwarded:
        return None
    if word == "local":  # Ctrl-C before anything was done
        return 130 if forwarded[-1] == signal.SIGINT else -forwarded[-1]
    if forwarded:  # it was killed by the signal it was sent: so is the launcher
        return -forwarded[-1]
    print("torrentfs: error: the command ended unexpectedly in the resident process "
          "(torrentfs resident stop, or mount with --no-resident)", file=sys.stderr)
    return 1


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
