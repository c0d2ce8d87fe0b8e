"""Start real BitTorrent programs nobody here wrote, for integration tests.

Each helper that starts a process is a context manager: it waits for the
process to be ready within a bounded deadline and, on exit (also on failure),
stops it by PID: SIGTERM, a bounded wait, then SIGKILL. Process output goes to
a log file whose tail is put into every error raised here.

- opentracker (Debian's, whitelist mode) -> `opentracker()`
- libtorrent 2.0 via tests/harness/peers/lt_peer.py under /usr/bin/python3
  -> `lt_seeder()`, `lt_leecher()`, `lt_leeching()`, `lt_create()`, and DHT-only
  nodes `lt_dht_node()` (seeders and leechers join a DHT through `dht_nodes`)
- network namespaces, transmission inside one, clusters on a bridge: netns.py

libtorrent keeps one connection per IP, so each libtorrent peer gets its own
loopback address (127.0.0.2, 127.0.0.3, ...).
Nothing here imports libtorrent or torrentfs.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

SYSTEM_PYTHON = "/usr/bin/python3"  # has Debian's python3-libtorrent
LT_PEER = Path(__file__).resolve().parent / "peers" / "lt_peer.py"

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


def hostport(ip: str, port: int) -> str:
    """'IP:PORT', or '[IPv6]:PORT'."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


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
    """The environment for child processes, without proxy variables, and with no
    resident process (``torrentfs mount`` would leave one) unless asked for."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in _PROXY_VARS}
    env.setdefault("TORRENTFS_RESIDENT", "0")
    return env


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
        return hostport(self.ip, self.port)

    def log(self) -> str:
        return log_tail(self.log_path, 200)


def _lt_argv(*args: str) -> list[str]:
    return [SYSTEM_PYTHON, str(LT_PEER), *args]


def _dht_args(dht_nodes: Sequence[str]) -> list[str]:
    return [arg for node in dht_nodes for arg in ("--dht-node", node)]


@contextlib.contextmanager
def lt_dht_node(ip: str, port: int = 0, dht_nodes: Sequence[str] = (), *,
                also_ip: str | None = None,
                workdir: Path | str | None = None, timeout: float = 30.0) -> Iterator[Peer]:
    """Run a libtorrent DHT node with no torrent on ip:port (UDP; 0 = any), joined
    through `dht_nodes` ('IP:PORT'; none for the first node of a swarm). Its log
    has a line 'incoming dht announce ...' for each announce_peer it takes in.
    With `also_ip` it listens there too, on the same port (give one: libtorrent
    runs one DHT node per address, an IPv4 and an IPv6 one, as BEP 32 has it)."""
    with _workdir(workdir, "lt-dht-") as wd:
        ready = wd / f"lt-dht-{ip}-{port}.ready"
        ready.unlink(missing_ok=True)
        log_path = wd / f"lt-dht-{ip}.log"
        listen = hostport(ip, port)
        if also_ip is not None:
            listen += "," + hostport(also_ip, port)
        argv = _lt_argv("dht", "--listen", listen, "--ready-file", str(ready),
                        *_dht_args(dht_nodes))
        with _running(argv, log_path) as proc:
            _wait_ready(proc, f"lt DHT node {ip}", log_path, ready.exists, timeout)
            yield Peer(ip=ip, port=int(ready.read_text()), proc=proc, log_path=log_path)


@contextlib.contextmanager
def lt_seeder(torrent_path: Path | str, data_dir: Path | str, ip: str = "127.0.0.2",
              port: int = 0, *, utp: bool = False, tcp: bool = True,
              upload_rate: int | None = None, tick_ms: int | None = None,
              lsd: bool = False, wrap: Callable[[list[str]], list[str]] | None = None,
              dht_nodes: Sequence[str] = (), encryption: str | None = None,
              peers: Sequence[str] = (),
              workdir: Path | str | None = None, timeout: float = 60.0) -> Iterator[Peer]:
    """Run a libtorrent seeder of the data in `data_dir` on ip:port (0 = any).

    Ready once libtorrent has checked the data, is seeding and has had a
    tracker reply (if the torrent names trackers; it waits at most ~10 s for
    that). `upload_rate` caps its upload in bytes/s; `tick_ms` is how often
    libtorrent hands out that cap's quota (its tick_interval, 500 ms by default). `lsd` turns on local
    service discovery (BEP 14), announcing every few seconds. `wrap` rewrites
    the command line, e.g. `lambda argv: cluster.argv_in(i, argv)` to run it in
    a cluster's namespace.
    With `dht_nodes` it joins the DHT through them and announces itself there
    (at once, then every 5 s). `encryption="forced"`: MSE/PE with RC4 only, in and
    out (plain connections refused). It connects to `peers` ('IP:PORT') once
    seeding, and again every 5 s.
    """
    with _workdir(workdir, "lt-seed-") as wd:
        ready = wd / f"lt-seed-{ip}-{port}.ready"
        ready.unlink(missing_ok=True)
        log_path = wd / f"lt-seed-{ip}.log"
        argv = _lt_argv("seed", "--torrent", str(torrent_path), "--save-path", str(data_dir),
                        "--listen", hostport(ip, port), "--ready-file", str(ready))
        if utp:
            argv.append("--utp")
        if not tcp:
            argv.append("--no-tcp")
        if upload_rate:
            argv += ["--upload-rate", str(upload_rate)]
        if tick_ms:
            argv += ["--tick-ms", str(tick_ms)]
        argv += _dht_args(dht_nodes)
        for p in peers:
            argv += ["--peer", p]
        if encryption:
            argv += ["--encryption", encryption]
        if lsd:
            argv.append("--lsd")
        if wrap is not None:
            argv = wrap(argv)
        with _running(argv, log_path) as proc:
            _wait_ready(proc, f"lt seeder {ip}", log_path, ready.exists, timeout)
            yield Peer(ip=ip, port=int(ready.read_text()), proc=proc, log_path=log_path)


def _leech_argv(torrent_path, save_dir, ip, port, peers, utp, timeout, magnet,
                download_rate=None, dht_nodes=(), tcp=True) -> list[str]:
    source = ["--magnet", magnet] if magnet else ["--torrent", str(torrent_path)]
    argv = _lt_argv("leech", *source, "--save-path", str(save_dir),
                    "--listen", hostport(ip, port), "--timeout", str(timeout))
    for p in peers:
        argv += ["--peer", p]
    if utp:
        argv.append("--utp")
    if not tcp:
        argv.append("--no-tcp")
    if download_rate:
        argv += ["--download-rate", str(download_rate)]
    argv += _dht_args(dht_nodes)
    return argv


def lt_leecher(torrent_path: Path | str | None, save_dir: Path | str, ip: str = "127.0.0.9",
               port: int = 0, peers: Sequence[str] = (), *, utp: bool = False,
               tcp: bool = True, dht_nodes: Sequence[str] = (),
               encryption: str | None = None,
               timeout: float = 60.0, magnet: str | None = None
               ) -> subprocess.CompletedProcess:
    """Download with libtorrent into `save_dir`; returns when done or timed out.

    `peers` are 'IP:PORT' strings to connect to besides the tracker's; with
    `dht_nodes` it also looks for peers on the DHT joined through them. With
    `magnet` (and no torrent) libtorrent starts from the magnet link. The
    result's returncode is 0 only when complete and rechecked; the status is
    in its stderr. The process is killed if it overruns `timeout` by 15 s.
    `encryption="forced"`: MSE/PE with RC4 only, in and out.
    """
    argv = _leech_argv(torrent_path, save_dir, ip, port, peers, utp, timeout, magnet,
                       dht_nodes=dht_nodes, tcp=tcp)
    if encryption:
        argv += ["--encryption", encryption]
    return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          env=child_env(), timeout=timeout + 15)


@contextlib.contextmanager
def lt_leeching(torrent_path: Path | str, save_dir: Path | str, ip: str, peers: Sequence[str],
                *, download_rate: int | None = None, utp: bool = False, tcp: bool = True,
                pex: bool = True, workdir: Path | str | None = None,
                timeout: float = 30.0) -> Iterator[Peer]:
    """A libtorrent leecher running in the background (stopped on exit), ready once
    it is connected to one of `peers` (at once with none); `download_rate`
    (bytes/s) keeps it a leecher for a while; `utp`, `tcp` as for `lt_seeder`;
    `pex=False` keeps it from telling peers of each other."""
    with _workdir(workdir, "lt-leech-") as wd:
        ready = wd / f"lt-leech-{ip}.ready"
        ready.unlink(missing_ok=True)
        log_path = wd / f"lt-leech-{ip}.log"
        argv = _leech_argv(torrent_path, save_dir, ip, 0, peers, utp, 600, None,
                           download_rate, tcp=tcp) + ["--ready-file", str(ready),
                                                      "--bind-outgoing"]
        if not pex:
            argv.append("--no-pex")
        with _running(argv, log_path) as proc:
            _wait_ready(proc, f"lt leecher {ip}", log_path, ready.exists, timeout)
            yield Peer(ip=ip, port=int(ready.read_text()), proc=proc, log_path=log_path)


def lt_info_hashes(torrent_path: Path | str) -> tuple[bytes, bytes]:
    """libtorrent's (v1, v2) info-hashes of a .torrent (all zeros for one it lacks)."""
    res = subprocess.run(_lt_argv("hashes", "--torrent", str(torrent_path)),
                         stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         env=child_env(), timeout=60)
    if res.returncode != 0:
        raise RuntimeError(f"lt_peer hashes failed ({res.returncode}):\n{res.stderr}")
    v1, v2 = res.stdout.split()
    return bytes.fromhex(v1), bytes.fromhex(v2)


def lt_create(path: Path | str, out: Path | str, tracker: str | Sequence[str] | None = None,
              piece_size: int | None = None, version: str = "v1",
              symlinks: bool = False) -> bytes:
    """Write a .torrent of a file or directory; return its info-hash (the 20 bytes
    trackers and handshakes use: for ``version="v2"`` the v2 info-hash cut short).
    ``version``: "v1" (v1-only), "v2" (BEP 52 only) or "hybrid" (libtorrent's default).
    ``symlinks``: symlinks under ``path`` become BEP 47 links (else followed)."""
    trackers = [tracker] if isinstance(tracker, str) else list(tracker or ())
    argv = _lt_argv("create", "--path", str(path), "--out", str(out))
    for url in trackers:
        argv += ["--tracker", url]
    if piece_size:
        argv += ["--piece-size", str(piece_size)]
    argv += ["--version", version] + (["--symlinks"] if symlinks else [])
    res = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                         env=child_env(), timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"lt_peer create failed ({res.returncode}):\n{res.stderr}")
    return bytes.fromhex(res.stdout.split()[0])
