"""Start real BitTorrent programs nobody here wrote, for integration tests.

Each helper that starts a process is a context manager: it waits for the
process to be ready within a bounded deadline and, on exit (also on failure),
stops it by PID: SIGTERM, a bounded wait, then SIGKILL. Process output goes to
a log file whose tail is put into every error raised here.

- opentracker (Debian's, whitelist mode) -> `opentracker()`
- libtorrent 2.0 via tests/harness/peers/lt_peer.py under /usr/bin/python3
  -> `lt_seeder()`, `lt_leecher()`, `lt_leeching()`, `lt_create()`, and DHT-only
  nodes `lt_dht_node()` (seeders and leechers join a DHT through `dht_nodes`)
- a network namespace joined by a veth pair -> `netns_host()`
- transmission-cli 3.00 inside such a namespace -> `transmission_seeder()`

libtorrent keeps one connection per IP, so each libtorrent peer gets its own
loopback address (127.0.0.2, 127.0.0.3, ...). transmission ignores tracker
peers in 127.0.0.0/8, so it runs in a namespace with a veth address.
Nothing here imports libtorrent or torrentfs.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

SYSTEM_PYTHON = "/usr/bin/python3"  # has Debian's python3-libtorrent
LT_PEER = Path(__file__).resolve().parent / "peers" / "lt_peer.py"
NETNS_SUBNET = "10.231"  # namespaces get 10.231.N.0/24

_PROXY_VARS = {"http_proxy", "https_proxy", "all_proxy", "ftp_proxy", "no_proxy"}
_no_proxy_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# ---------------------------------------------------------------- utilities

def wait_until(predicate: Callable[[], Any], timeout: float,
               interval: float = 0.05, message: str | None = None) -> Any:
    """Poll `predicate` until it returns a truthy value, which is returned.

    Raises TimeoutError after `timeout` seconds. Exceptions raised by the
    predicate propagate (use that to fail fast, e.g. when a process died).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise TimeoutError(message or f"condition not met within {timeout}s")
        time.sleep(interval)


def free_port(host: str = "127.0.0.1", udp: bool = False) -> int:
    """A port that is free on `host` for TCP (and for UDP too if `udp`)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
            if not udp:
                return port
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no free port found on {host}")


def can_connect(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def child_env() -> dict[str, str]:
    """The environment for child processes, without proxy variables."""
    return {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> int | None:
    """Stop `proc` by PID: SIGTERM, wait up to `timeout`, then SIGKILL."""
    if proc.poll() is None:
        try:
            proc.terminate()
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


def log_tail(path: Path | None, lines: int = 30) -> str:
    """The last lines of a log file (status lines split on CR), for errors."""
    if path is None or not path.exists():
        return "(no log)"
    text = path.read_bytes().decode("utf-8", "replace").replace("\r", "\n")
    kept = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    return "\n".join(kept[-lines:])


@contextlib.contextmanager
def _workdir(workdir: Path | str | None, prefix: str) -> Iterator[Path]:
    """`workdir` (created if needed, kept), or a temporary one removed at exit."""
    if workdir is not None:
        path = Path(workdir)
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def _running(argv: Sequence[str], log_path: Path, **popen_kw) -> Iterator[subprocess.Popen]:
    """Popen with output to `log_path`; always stopped by PID on exit."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, env=child_env(), **popen_kw)
    try:
        yield proc
    finally:
        stop_process(proc)


def _check_alive(proc: subprocess.Popen, what: str, log_path: Path) -> None:
    if proc.poll() is not None:
        raise RuntimeError(f"{what} exited with {proc.returncode}:\n{log_tail(log_path)}")


def _wait_ready(proc, what, log_path, predicate, timeout):
    """Wait for `predicate` while `proc` lives; errors carry the log tail."""
    def check():
        _check_alive(proc, what, log_path)
        return predicate()
    try:
        return wait_until(check, timeout, interval=0.05)
    except TimeoutError:
        raise TimeoutError(f"{what} not ready within {timeout}s:\n{log_tail(log_path)}") from None


# ---------------------------------------------------------------- bencode

def bdecode(data: bytes) -> Any:
    """Decode bencoded bytes (ints, bytes, lists, dicts with bytes keys)."""
    value, end = _bdecode_at(data, 0)
    if end != len(data):
        raise ValueError("trailing data after bencoded value")
    return value


def _bdecode_at(data: bytes, i: int) -> tuple[Any, int]:
    c = data[i:i + 1]
    if c == b"i":
        j = data.index(b"e", i)
        return int(data[i + 1:j]), j + 1
    if c in (b"l", b"d"):
        i += 1
        items = []
        while data[i:i + 1] != b"e":
            if not data[i:i + 1]:
                raise ValueError("truncated bencode")
            v, i = _bdecode_at(data, i)
            items.append(v)
        if c == b"l":
            return items, i + 1
        return dict(zip(items[::2], items[1::2])), i + 1
    if c.isdigit():
        j = data.index(b":", i)
        n = int(data[i:j])
        return data[j + 1:j + 1 + n], j + 1 + n
    raise ValueError(f"bad bencode at offset {i}")


def info_hash_of(torrent_path: Path | str) -> bytes:
    """The v1 info-hash (20 bytes) of a .torrent file."""
    data = Path(torrent_path).read_bytes()
    if data[:1] != b"d":
        raise ValueError("not a bencoded dict")
    i = 1
    while data[i:i + 1] != b"e":
        key, i = _bdecode_at(data, i)
        start = i
        _, i = _bdecode_at(data, i)
        if key == b"info":
            return hashlib.sha1(data[start:i]).digest()
    raise ValueError("no info dict")


def _has_trackers(torrent_path: Path | str) -> bool:
    meta = bdecode(Path(torrent_path).read_bytes())
    return bool(meta.get(b"announce") or meta.get(b"announce-list"))


def _hash_bytes(info_hash: bytes | str) -> bytes:
    if isinstance(info_hash, str):
        info_hash = bytes.fromhex(info_hash)
    if len(info_hash) != 20:
        raise ValueError("an info-hash has 20 bytes")
    return info_hash


# ---------------------------------------------------------------- opentracker

@dataclass
class Tracker:
    """A running opentracker; see `opentracker()`."""
    host: str
    port: int
    hosts: list[str]
    proc: subprocess.Popen
    workdir: Path
    log_path: Path
    whitelist: list[bytes] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def announce_url(self) -> str:
        return self.announce_url_for(self.host)

    @property
    def udp_url(self) -> str:
        return f"udp://{self.host}:{self.port}/announce"

    def announce_url_for(self, host: str) -> str:
        """The HTTP announce URL on another address it listens on."""
        return f"http://{host}:{self.port}/announce"

    def _get(self, path: str, query: dict[str, Any]) -> dict:
        # Every byte of a bytes value as %XX: opentracker does not read '+'
        # as a space, which urlencode() would produce for 0x20.
        url = f"http://{self.host}:{self.port}/{path}?" + "&".join(
            f"{k}=" + ("".join(f"%{b:02X}" for b in v) if isinstance(v, bytes)
                       else urllib.parse.quote(str(v), safe=""))
            for k, v in query.items())
        with _no_proxy_opener.open(url, timeout=5) as resp:
            return bdecode(resp.read())

    def is_authorized(self, info_hash: bytes | str) -> bool:
        """True if the tracker serves this info-hash (it is whitelisted).

        opentracker checks its whitelist only for non-'stopped' announces, so
        this announces a dummy leecher (port 1, numwant=0) and, if accepted,
        removes it again at once with a 'stopped' announce.
        """
        query = {"info_hash": _hash_bytes(info_hash), "peer_id": b"-TFSHRN-000000000000",
                 "port": 1, "uploaded": 0, "downloaded": 0, "left": 1,
                 "numwant": 0, "compact": 1}
        if b"failure reason" in self._get("announce", query):
            return False
        self._get("announce", dict(query, event="stopped"))
        return True

    def scrape(self, info_hash: bytes | str) -> dict[str, int]:
        """{'complete', 'incomplete', 'downloaded'} for one info-hash."""
        h = _hash_bytes(info_hash)
        reply = self._get("scrape", {"info_hash": h})
        stats = reply.get(b"files", {}).get(h, {})
        return {k: stats.get(k.encode(), 0) for k in ("complete", "incomplete", "downloaded")}

    def wait_peers(self, info_hash: bytes | str, n: int = 1, timeout: float = 20.0) -> None:
        """Wait until at least `n` peers have announced this info-hash.

        Counts seeds and leechers: a client may announce while still checking
        its data (as a leecher) and only count as a seed after its next
        announce, many minutes later.
        """
        def enough():
            _check_alive(self.proc, "opentracker", self.log_path)
            stats = self.scrape(info_hash)
            return stats["complete"] + stats["incomplete"] >= n
        wait_until(enough, timeout, interval=0.1,
                   message=f"fewer than {n} peers announced within {timeout}s")

    def add(self, info_hash: bytes | str, timeout: float = 10.0) -> None:
        """Whitelist one more info-hash: rewrite the file, SIGHUP, wait for it."""
        h = _hash_bytes(info_hash)
        if h not in self.whitelist:
            self.whitelist.append(h)
        _write_whitelist(self.workdir / "whitelist.txt", self.whitelist)
        last_hup = 0.0

        def reloaded():
            nonlocal last_hup
            if time.monotonic() - last_hup >= 1.0:  # resending is harmless
                self.proc.send_signal(signal.SIGHUP)  # opentracker rereads its whitelist
                last_hup = time.monotonic()
            return self.is_authorized(h)
        _wait_ready(self.proc, "opentracker", self.log_path, reloaded, timeout)


def _write_whitelist(path: Path, hashes: list[bytes]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(h.hex() + "\n" for h in hashes))
    tmp.chmod(0o644)
    os.replace(tmp, path)


@contextlib.contextmanager
def opentracker(whitelist: Sequence[bytes | str] = (), host: str = "127.0.0.1",
                extra_hosts: Sequence[str] = (), port: int | None = None,
                workdir: Path | str | None = None, timeout: float = 10.0) -> Iterator[Tracker]:
    """Run Debian's opentracker serving only the whitelisted info-hashes.

    Listens on TCP and UDP `port` (a free one by default) on `host` and every
    address in `extra_hosts` (e.g. a netns_host's `.host_ip`). It chroots into
    its work directory and runs as 'nobody'. Ready once it answers HTTP
    (for a whitelisted hash: once it says that hash is authorized). With an
    empty whitelist it logs a harmless "Can't open accesslist file" (it
    cannot map an empty file). Use `.add()` to whitelist more later.
    """
    hashes = [_hash_bytes(h) for h in whitelist]
    hosts = [host, *[h for h in extra_hosts if h != host]]
    with _workdir(workdir, "opentracker-") as wd:
        wd.chmod(0o755)  # opentracker drops to 'nobody' inside this chroot
        if port is None:
            port = free_port(host, udp=True)
        _write_whitelist(wd / "whitelist.txt", hashes)
        conf = wd / "opentracker.conf"
        conf.write_text("".join(f"listen.tcp_udp {h}:{port}\n" for h in hosts)
                        + "access.whitelist whitelist.txt\n"  # read inside the chroot
                        + f"tracker.rootdir {wd}\n"
                        + "tracker.user nobody\n")
        log_path = wd / "opentracker.log"
        # cwd=wd: relative paths mean the same before and after its chroot.
        with _running(["opentracker", "-f", str(conf)], log_path, cwd=wd) as proc:
            tracker = Tracker(host=host, port=port, hosts=hosts, proc=proc,
                              workdir=wd, log_path=log_path, whitelist=hashes)
            # Ready = it answers HTTP: by then its main loop runs and SIGHUP is
            # blocked for sigwait (a TCP connect alone can come before that,
            # and an early SIGHUP would be lost or kill it).
            def ready():
                if not all(can_connect(h, port) for h in hosts):
                    return False
                authorized = tracker.is_authorized(hashes[0] if hashes else bytes(20))
                return authorized or not hashes
            _wait_ready(proc, "opentracker", log_path, ready, timeout)
            yield tracker


# ---------------------------------------------------------------- libtorrent

@dataclass
class Peer:
    """A running seeder: where it listens and its process."""
    ip: str
    port: int
    proc: subprocess.Popen
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def endpoint(self) -> str:
        return f"{self.ip}:{self.port}"

    def log(self) -> str:
        return log_tail(self.log_path, 200)


def _lt_argv(*args: str) -> list[str]:
    return [SYSTEM_PYTHON, str(LT_PEER), *args]


def _dht_args(dht_nodes: Sequence[str]) -> list[str]:
    return [arg for node in dht_nodes for arg in ("--dht-node", node)]


@contextlib.contextmanager
def lt_dht_node(ip: str, port: int = 0, dht_nodes: Sequence[str] = (), *,
                workdir: Path | str | None = None, timeout: float = 30.0) -> Iterator[Peer]:
    """Run a libtorrent DHT node with no torrent on ip:port (UDP; 0 = any), joined
    through `dht_nodes` ('IP:PORT'; none for the first node of a swarm). Its log
    has a line 'incoming dht announce ...' for each announce_peer it takes in."""
    with _workdir(workdir, "lt-dht-") as wd:
        ready = wd / f"lt-dht-{ip}-{port}.ready"
        ready.unlink(missing_ok=True)
        log_path = wd / f"lt-dht-{ip}.log"
        argv = _lt_argv("dht", "--listen", f"{ip}:{port}", "--ready-file", str(ready),
                        *_dht_args(dht_nodes))
        with _running(argv, log_path) as proc:
            _wait_ready(proc, f"lt DHT node {ip}", log_path, ready.exists, timeout)
            yield Peer(ip=ip, port=int(ready.read_text()), proc=proc, log_path=log_path)


@contextlib.contextmanager
def lt_seeder(torrent_path: Path | str, data_dir: Path | str, ip: str = "127.0.0.2",
              port: int = 0, *, utp: bool = False, upload_rate: int | None = None,
              lsd: bool = False, wrap: Callable[[list[str]], list[str]] | None = None,
              dht_nodes: Sequence[str] = (),
              workdir: Path | str | None = None, timeout: float = 60.0) -> Iterator[Peer]:
    """Run a libtorrent seeder of the data in `data_dir` on ip:port (0 = any).

    Ready once libtorrent has checked the data, is seeding and has had a
    tracker reply (if the torrent names trackers; it waits at most ~10 s for
    that). `upload_rate` caps its upload in bytes/s. `lsd` turns on local
    service discovery (BEP 14), announcing every few seconds. `wrap` rewrites
    the command line, e.g. `lambda argv: cluster.argv_in(i, argv)` to run it in
    a cluster's namespace.
    With `dht_nodes` it joins the DHT through them and announces itself there
    (at once, then every 5 s).
    """
    with _workdir(workdir, "lt-seed-") as wd:
        ready = wd / f"lt-seed-{ip}-{port}.ready"
        ready.unlink(missing_ok=True)
        log_path = wd / f"lt-seed-{ip}.log"
        argv = _lt_argv("seed", "--torrent", str(torrent_path), "--save-path", str(data_dir),
                        "--listen", f"{ip}:{port}", "--ready-file", str(ready))
        if utp:
            argv.append("--utp")
        if upload_rate:
            argv += ["--upload-rate", str(upload_rate)]
        argv += _dht_args(dht_nodes)
        if lsd:
            argv.append("--lsd")
        if wrap is not None:
            argv = wrap(argv)
        with _running(argv, log_path) as proc:
            _wait_ready(proc, f"lt seeder {ip}", log_path, ready.exists, timeout)
            yield Peer(ip=ip, port=int(ready.read_text()), proc=proc, log_path=log_path)


def _leech_argv(torrent_path, save_dir, ip, port, peers, utp, timeout, magnet,
                download_rate=None, dht_nodes=()) -> list[str]:
    source = ["--magnet", magnet] if magnet else ["--torrent", str(torrent_path)]
    argv = _lt_argv("leech", *source, "--save-path", str(save_dir),
                    "--listen", f"{ip}:{port}", "--timeout", str(timeout))
    for p in peers:
        argv += ["--peer", p]
    if utp:
        argv.append("--utp")
    if download_rate:
        argv += ["--download-rate", str(download_rate)]
    argv += _dht_args(dht_nodes)
    return argv


def lt_leecher(torrent_path: Path | str | None, save_dir: Path | str, ip: str = "127.0.0.9",
               port: int = 0, peers: Sequence[str] = (), *, utp: bool = False,
               dht_nodes: Sequence[str] = (),
               timeout: float = 60.0, magnet: str | None = None
               ) -> subprocess.CompletedProcess:
    """Download with libtorrent into `save_dir`; returns when done or timed out.

    `peers` are 'IP:PORT' strings to connect to besides the tracker's; with
    `dht_nodes` it also looks for peers on the DHT joined through them. With
    `magnet` (and no torrent) libtorrent starts from the magnet link. The
    result's returncode is 0 only when complete and rechecked; the status is
    in its stderr. The process is killed if it overruns `timeout` by 15 s.
    """
    argv = _leech_argv(torrent_path, save_dir, ip, port, peers, utp, timeout, magnet,
                       dht_nodes=dht_nodes)
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=child_env(), timeout=timeout + 15)


@contextlib.contextmanager
def lt_leeching(torrent_path: Path | str, save_dir: Path | str, ip: str, peers: Sequence[str],
                *, download_rate: int | None = None, workdir: Path | str | None = None,
                timeout: float = 30.0) -> Iterator[Peer]:
    """A libtorrent leecher running in the background (stopped on exit), ready once
    it is connected to one of `peers`; `download_rate` (bytes/s) keeps it a leecher
    for a while."""
    with _workdir(workdir, "lt-leech-") as wd:
        ready = wd / f"lt-leech-{ip}.ready"
        ready.unlink(missing_ok=True)
        log_path = wd / f"lt-leech-{ip}.log"
        argv = _leech_argv(torrent_path, save_dir, ip, 0, peers, False, 600, None,
                           download_rate) + ["--ready-file", str(ready), "--bind-outgoing"]
        with _running(argv, log_path) as proc:
            _wait_ready(proc, f"lt leecher {ip}", log_path, ready.exists, timeout)
            yield Peer(ip=ip, port=int(ready.read_text()), proc=proc, log_path=log_path)


def lt_create(path: Path | str, out: Path | str, tracker: str | Sequence[str] | None = None,
              piece_size: int | None = None) -> bytes:
    """Write a v1-only .torrent of a file or directory; return its info-hash."""
    trackers = [tracker] if isinstance(tracker, str) else list(tracker or ())
    argv = _lt_argv("create", "--path", str(path), "--out", str(out))
    for url in trackers:
        argv += ["--tracker", url]
    if piece_size:
        argv += ["--piece-size", str(piece_size)]
    res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         env=child_env(), timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"lt_peer create failed ({res.returncode}):\n{res.stderr}")
    return bytes.fromhex(res.stdout.strip())


# ---------------------------------------------------------------- netns

@dataclass
class NetnsHost:
    """A network namespace linked to the root one by a veth pair."""
    ns: str
    n: int
    host_if: str
    ns_if: str

    @property
    def host_ip(self) -> str:
        return f"{NETNS_SUBNET}.{self.n}.1"

    @property
    def ns_ip(self) -> str:
        return f"{NETNS_SUBNET}.{self.n}.2"

    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def run(self, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        """subprocess.run inside the namespace (a timeout of 60 s by default)."""
        kw.setdefault("timeout", 60)
        kw.setdefault("env", child_env())
        return subprocess.run(self.argv(argv), **kw)

    def popen(self, argv: Sequence[str], **kw) -> subprocess.Popen:
        """subprocess.Popen inside the namespace; the PID is the command's own
        (`ip netns exec` execs it). Processes left over are killed on exit."""
        kw.setdefault("env", child_env())
        return subprocess.Popen(self.argv(argv), **kw)

    def pids(self) -> list[int]:
        res = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True,
                             text=True, timeout=10)
        return [int(p) for p in res.stdout.split()]


_netns_counter = itertools.count()


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if check and res.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {res.stderr.strip()}")
    return res


@contextlib.contextmanager
def netns_host(name_prefix: str = "tfs") -> Iterator[NetnsHost]:
    """Create a namespace + veth pair with 10.231.N.1 (root) / 10.231.N.2 (ns).

    N is claimed atomically through the root-side veth name 'tfsvN', so
    concurrent callers get different subnets. Loopback and veth are up in
    both. On exit every process left in the namespace is killed and the
    namespace and veth are deleted.
    """
    start = (os.getpid() + next(_netns_counter) * 7) % 250
    host = None
    for k in range(250):
        n = (start + k) % 250 + 1
        ns = f"{name_prefix}-{os.getpid()}-{n}"
        host_if = f"tfsv{n}"
        if _ip("link", "show", host_if, check=False).returncode == 0:
            continue
        if _ip("netns", "add", ns, check=False).returncode != 0:
            continue
        if _ip("link", "add", host_if, "type", "veth", "peer", "name", "veth0",
               "netns", ns, check=False).returncode != 0:
            _ip("netns", "del", ns, check=False)
            continue
        host = NetnsHost(ns=ns, n=n, host_if=host_if, ns_if="veth0")
        break
    if host is None:
        raise RuntimeError("no free 10.231.N.0/24 subnet for a namespace")
    try:
        _ip("addr", "add", f"{host.host_ip}/24", "dev", host.host_if)
        _ip("link", "set", host.host_if, "up")
        _ip("-n", host.ns, "addr", "add", f"{host.ns_ip}/24", "dev", host.ns_if)
        _ip("-n", host.ns, "link", "set", "lo", "up")
        _ip("-n", host.ns, "link", "set", host.ns_if, "up")
        wait_until(lambda: "LOWER_UP" in _ip("link", "show", host.host_if).stdout
                   and "LOWER_UP" in _ip("-n", host.ns, "link", "show", host.ns_if).stdout,
                   timeout=10, message=f"veth {host.host_if} did not come up")
        yield host
    finally:
        _netns_cleanup(host)


def _netns_cleanup(host: NetnsHost) -> None:
    """Kill what runs in the namespace (by PID), delete it and the veth."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        pids = host.pids()
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not host.pids(), wait, interval=0.05)
    _ip("netns", "del", host.ns, check=False)
    if _ip("link", "show", host.host_if, check=False).returncode == 0:
        _ip("link", "del", host.host_if, check=False)


# ---------------------------------------------------------------- transmission

TRANSMISSION_SETTINGS = {
    "dht-enabled": False,
    "lpd-enabled": False,
    "pex-enabled": False,
    "utp-enabled": False,
    "port-forwarding-enabled": False,
    "rpc-enabled": False,
    "blocklist-enabled": False,
    "encryption": 0,  # 0 = tolerated: plain connections preferred, both accepted
    "peer-port-random-on-start": False,
    "ratio-limit-enabled": False,
    "idle-seeding-limit-enabled": False,
    "speed-limit-up-enabled": False,
    "speed-limit-down-enabled": False,
    "alt-speed-enabled": False,
    "start-added-torrents": True,
    "message-level": 3,  # debug: also logs verification and announce replies
}


@contextlib.contextmanager
def _transmission(torrent_path, data_dir, netns_host: NetnsHost, port: int, workdir,
                  prefix: str) -> Iterator[tuple[list[str], Path]]:
    """A fresh config dir (TRANSMISSION_SETTINGS) and the argv that runs
    transmission-cli 3.00 in `netns_host` on `torrent_path` with `data_dir` as its
    download dir; yields (argv, log path)."""
    with _workdir(workdir, prefix) as wd:
        config = wd / "transmission-config"
        if config.exists():
            shutil.rmtree(config)
        config.mkdir()
        settings = dict(TRANSMISSION_SETTINGS, **{
            "peer-port": port, "bind-address-ipv4": netns_host.ns_ip,
            "download-dir": str(data_dir)})
        (config / "settings.json").write_text(json.dumps(settings, indent=1))
        # stdbuf -o0: its status line goes to a file, which stdio would
        # otherwise buffer for ~10 s (stdbuf execs it: the PID stays the same).
        yield (netns_host.argv(["stdbuf", "-o0",
                                "transmission-cli", "--config-dir", str(config),
                                "--download-dir", str(data_dir), "--port", str(port),
                                "--encryption-tolerated", "--no-portmap",
                                "--no-downlimit", "--no-uplimit", str(torrent_path)]),
               wd / "transmission.log")


@contextlib.contextmanager
def transmission_seeder(torrent_path: Path | str, data_dir: Path | str,
                        netns_host: NetnsHost, port: int = 51413, *,
                        workdir: Path | str | None = None, timeout: float = 60.0,
                        announce_timeout: float = 10.0) -> Iterator[Peer]:
    """Run transmission-cli 3.00 in `netns_host`, seeding the data in `data_dir`.

    It gets a fresh config dir (settings.json: no DHT/LSD/PEX/uTP/port
    mapping, plain connections tolerated), so it verifies the data before
    seeding. Ready once its status line says 'Seeding' (verification found
    every piece), its port accepts TCP from the root namespace at
    `.ip` = ns_ip and, if the torrent names trackers, it has logged a
    tracker's announce reply (waited for at most `announce_timeout` seconds,
    then a warning). The trackers must be reachable from the namespace,
    e.g. an opentracker that also listens on `netns_host.host_ip`.
    """
    with _transmission(torrent_path, data_dir, netns_host, port, workdir,
                       "transmission-") as (argv, log_path):
        with _running(argv, log_path) as proc:
            def ready():
                text = log_path.read_bytes()
                return b"Seeding, uploading" in text and can_connect(netns_host.ns_ip, port)

            _wait_ready(proc, "transmission-cli", log_path, ready, timeout)
            if _has_trackers(torrent_path):
                def announced():
                    text = log_path.read_bytes()
                    return b"Announce response" in text or b"from tracker" in text
                try:
                    _wait_ready(proc, "transmission-cli", log_path, announced,
                                announce_timeout)
                except TimeoutError as e:
                    warnings.warn(f"transmission has not announced yet: {e}")
            yield Peer(ip=netns_host.ns_ip, port=port, proc=proc, log_path=log_path)


def transmission_download(torrent_path: Path | str, save_dir: Path | str,
                          netns_host: NetnsHost, port: int = 51414, *,
                          workdir: Path | str | None = None,
                          timeout: float = 120.0) -> str:
    """Download with transmission-cli 3.00 inside `netns_host` into `save_dir`,
    finding peers through the torrent's trackers (which must be reachable from the
    namespace). Returns once it says it is seeding (it verified every piece); raises
    TimeoutError with its log's tail if that takes longer than `timeout`. The process
    is always stopped. Returns the log text."""
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    with _transmission(torrent_path, save_dir, netns_host, port, workdir,
                       "transmission-dl-") as (argv, log_path):
        with _running(argv, log_path) as proc:
            _wait_ready(proc, "transmission-cli download", log_path,
                        lambda: b"Seeding, uploading" in log_path.read_bytes(), timeout)
            return log_path.read_text(errors="replace")


# ---------------------------------------------------------------- cluster

CLUSTER_SUBNET = "10.232"  # cluster K gets 10.232.K.0/24: bridge .1, host i .(10+i)


@dataclass
class ClusterHost:
    """One network namespace of a `cluster()`, joined to its bridge by a veth pair."""
    index: int
    ns: str       # namespace name (/run/netns/<ns>)
    ip: str       # its address on the bridge's subnet
    ns_if: str    # the veth end inside the namespace (its egress = the host's upload)
    br_if: str    # the veth end in the root namespace, enslaved to the bridge

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.ns}"


@dataclass
class Cluster:
    """N hosts on one Linux bridge; see `cluster()`."""
    bridge: str
    bridge_ip: str
    subnet: int   # K of 10.232.K.0/24
    hosts: list[ClusterHost] = field(default_factory=list)

    def argv_in(self, i: int, argv: Sequence[str]) -> list[str]:
        """`argv` run in host i's network namespace only (nsenter --net): unlike
        `ip netns exec` it keeps the root mount namespace, so a FUSE mount made
        by the command is visible to everyone. nsenter execs the command, so
        its PID is the command's own."""
        return ["nsenter", f"--net={self.hosts[i].netns_path}", "--", *argv]

    def popen(self, i: int, argv: Sequence[str], **kw) -> subprocess.Popen:
        """subprocess.Popen in host i's namespace (proxy variables removed)."""
        kw.setdefault("env", child_env())
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(self.argv_in(i, argv), **kw)

    def run(self, i: int, argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
        """subprocess.run in host i's namespace (a timeout of 60 s by default)."""
        kw.setdefault("timeout", 60)
        kw.setdefault("env", child_env())
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(self.argv_in(i, argv), **kw)

    def limit_egress(self, i: int, rate: int, burst: int | None = None,
                     latency_ms: int = 50) -> None:
        """Cap host i's upload at `rate` bytes/s: a tbf qdisc on the namespace side
        of its veth (burst max(32 KiB, rate/10) unless given). `rate` 0 removes it."""
        h = self.hosts[i]
        if not rate:
            subprocess.run(["tc", "-n", h.ns, "qdisc", "del", "dev", h.ns_if, "root"],
                           capture_output=True, timeout=10)
            return
        burst = burst or max(32 * 1024, rate // 10)
        res = subprocess.run(["tc", "-n", h.ns, "qdisc", "replace", "dev", h.ns_if, "root",
                              "tbf", "rate", f"{rate * 8}bit", "burst", str(burst),
                              "latency", f"{latency_ms}ms"],
                             capture_output=True, text=True, timeout=10)
        if res.returncode != 0:
            raise RuntimeError(f"tc tbf on {h.ns}/{h.ns_if} failed: {res.stderr.strip()}")

    def _stats(self, i: int) -> dict:
        h = self.hosts[i]
        res = _ip("-n", h.ns, "-s", "-j", "link", "show", "dev", h.ns_if)
        return json.loads(res.stdout)[0]["stats64"]

    def tx_bytes(self, i: int) -> int:
        """Bytes host i has sent on its veth (everything it uploaded, headers too)."""
        return int(self._stats(i)["tx"]["bytes"])

    def rx_bytes(self, i: int) -> int:
        """Bytes host i has received on its veth."""
        return int(self._stats(i)["rx"]["bytes"])

    def wait_quiet(self, hosts: Sequence[int], quiet: float = 1.0, timeout: float = 20.0,
                   slack: int = 4096) -> bool:
        """Wait until `hosts` have each sent at most `slack` bytes over the last `quiet`
        seconds (their transfers are over). False if that takes over `timeout` s."""
        last = {i: self.tx_bytes(i) for i in hosts}
        since = time.monotonic()
        deadline = since + timeout
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = {i: self.tx_bytes(i) for i in hosts}
            if any(now[i] - last[i] > slack for i in hosts):
                last, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return True
        return False

    def pids(self, i: int) -> list[int]:
        """PIDs of the processes in host i's network namespace."""
        res = subprocess.run(["ip", "netns", "pids", self.hosts[i].ns], capture_output=True,
                             text=True, timeout=10)
        return [int(p) for p in res.stdout.split()]


@contextlib.contextmanager
def cluster(n_hosts: int, prefix: str = "tfc", *, subnet_prefix: str = CLUSTER_SUBNET,
            bridge_prefix: str = "tfcbr", multicast: bool = False) -> Iterator[Cluster]:
    """`n_hosts` network namespaces on one bridge in the root namespace.

    The bridge gets 10.232.K.1/24 and host i 10.232.K.(10+i)/24 on the
    namespace end of a veth pair whose other end is on the bridge; lo and
    both veth ends are up. K (0 when free) is claimed atomically by creating
    the bridge 'tfcbrK', so concurrent clusters get different subnets and
    names; namespaces are '<prefix>-<pid>-<K>-<i>'. `subnet_prefix` and
    `bridge_prefix` replace '10.232' and 'tfcbr' (a test of its own uses its
    own pair, so it never competes with others for K). With `multicast`, each
    namespace routes 224.0.0.0/4 out of its veth and the bridge floods
    multicast to every port (no IGMP snooping). Processes in the root
    namespace (e.g. opentracker on `.bridge_ip`) reach every host, and the
    hosts reach each other through the bridge. On exit, also on failure:
    every process left in a namespace is stopped by PID (SIGTERM, then
    SIGKILL), the namespaces, veths and the bridge are deleted.
    """
    if not 1 <= n_hosts <= 240:
        raise ValueError("1 to 240 hosts")
    if len(f"{bridge_prefix}255h{n_hosts - 1}") > 15:
        raise ValueError(f"bridge prefix {bridge_prefix!r} too long for interface names")
    c: Cluster | None = None
    for subnet in range(256):  # the first free K: 10.232.0.0/24 when nothing else runs
        bridge = f"{bridge_prefix}{subnet}"
        if _ip("link", "add", bridge, "type", "bridge", check=False).returncode == 0:
            c = Cluster(bridge=bridge, bridge_ip=f"{subnet_prefix}.{subnet}.1", subnet=subnet)
            break
    if c is None:
        raise RuntimeError(f"no free {subnet_prefix}.K.0/24 subnet for a cluster")
    try:
        # No STP delay: ports forward as soon as they are up.
        _ip("link", "set", c.bridge, "type", "bridge", "stp_state", "0", "forward_delay", "0")
        if multicast:
            _ip("link", "set", c.bridge, "type", "bridge", "mcast_snooping", "0")
        _ip("addr", "add", f"{c.bridge_ip}/24", "dev", c.bridge)
        _ip("link", "set", c.bridge, "up")
        for i in range(n_hosts):
            ns = f"{prefix}-{os.getpid()}-{c.subnet}-{i}"
            br_if = f"{c.bridge}h{i}"
            _ip("netns", "add", ns)
            h = ClusterHost(index=i, ns=ns, ip=f"{subnet_prefix}.{c.subnet}.{10 + i}",
                            ns_if="eth0", br_if=br_if)
            c.hosts.append(h)
            _ip("link", "add", br_if, "type", "veth", "peer", "name", h.ns_if, "netns", ns)
            _ip("link", "set", br_if, "master", c.bridge)
            _ip("link", "set", br_if, "up")
            _ip("-n", ns, "addr", "add", f"{h.ip}/24", "dev", h.ns_if)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", h.ns_if, "up")
            if multicast:
                _ip("-n", ns, "route", "add", "224.0.0.0/4", "dev", h.ns_if)
        for h in c.hosts:
            wait_until(lambda: "LOWER_UP" in _ip("-n", h.ns, "link", "show", h.ns_if).stdout,
                       timeout=10, message=f"veth {h.ns}/{h.ns_if} did not come up")
        # Every bridge port forwards (STP is off, so at once; waited for anyway).
        for h in c.hosts:
            wait_until(lambda: "forwarding" in subprocess.run(
                           ["bridge", "link", "show", "dev", h.br_if], capture_output=True,
                           text=True, timeout=10).stdout,
                       timeout=15, interval=0.1,
                       message=f"bridge port {h.br_if} does not forward")
        yield c
    finally:
        _cluster_cleanup(c)


def _cluster_cleanup(c: Cluster) -> None:
    """Stop what runs in the namespaces (by PID), delete them, the veths, the bridge."""
    for i, h in enumerate(c.hosts):
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            try:
                pids = c.pids(i)
            except (subprocess.SubprocessError, OSError):
                break
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            with contextlib.suppress(TimeoutError, subprocess.SubprocessError):
                wait_until(lambda: not c.pids(i), wait, interval=0.05)
    for h in c.hosts:
        _ip("netns", "del", h.ns, check=False)  # deletes its veth end, and so the pair
        if _ip("link", "show", h.br_if, check=False).returncode == 0:
            _ip("link", "del", h.br_if, check=False)
    _ip("link", "del", c.bridge, check=False)
