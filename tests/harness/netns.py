"""Network namespaces for integration tests, and the programs run inside them.

- a network namespace joined by a veth pair -> `netns_host()`
- transmission-cli 3.00 inside such a namespace -> `transmission_seeder()`,
  `transmission_download()` (transmission ignores tracker peers in 127.0.0.0/8, so it
  runs in a namespace with a veth address)
- a cluster of namespaces on one Linux bridge, with per-host upload caps (tbf) ->
  `cluster()`

Like swarm.py, each helper that starts something is a context manager that waits for
it within a bounded deadline and, on exit (also on failure), stops it by PID and
deletes the namespaces, veths and bridges it made. Needs root.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from tests.harness.swarm import (
    Peer,
    _has_trackers,
    _running,
    _wait_ready,
    _workdir,
    can_connect,
    child_env,
    wait_until,
)

NETNS_SUBNET = "10.231"  # namespaces get 10.231.N.0/24


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
                  prefix: str, encryption_required: bool = False
                  ) -> Iterator[tuple[list[str], Path]]:
    """A fresh config dir (TRANSMISSION_SETTINGS) and the argv that runs
    transmission-cli 3.00 in `netns_host` on `torrent_path` with `data_dir` as its
    download dir; yields (argv, log path). With `encryption_required` it encrypts
    every connection and refuses plain ones (-er)."""
    with _workdir(workdir, prefix) as wd:
        config = wd / "transmission-config"
        if config.exists():
            shutil.rmtree(config)
        config.mkdir()
        settings = dict(TRANSMISSION_SETTINGS, **{
            "peer-port": port, "bind-address-ipv4": netns_host.ns_ip,
            "download-dir": str(data_dir),
            "encryption": 2 if encryption_required else 0})
        (config / "settings.json").write_text(json.dumps(settings, indent=1))
        # stdbuf -o0: its status line goes to a file, which stdio would
        # otherwise buffer for ~10 s (stdbuf execs it: the PID stays the same).
        yield (netns_host.argv(["stdbuf", "-o0",
                                "transmission-cli", "--config-dir", str(config),
                                "--download-dir", str(data_dir), "--port", str(port),
                                "--encryption-required" if encryption_required
                                else "--encryption-tolerated", "--no-portmap",
                                "--no-downlimit", "--no-uplimit", str(torrent_path)]),
               wd / "transmission.log")


@contextlib.contextmanager
def transmission_seeder(torrent_path: Path | str, data_dir: Path | str,
                        netns_host: NetnsHost, port: int = 51413, *,
                        workdir: Path | str | None = None, timeout: float = 60.0,
                        announce_timeout: float = 10.0,
                        encryption_required: bool = False) -> Iterator[Peer]:
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
                       "transmission-", encryption_required) as (argv, log_path):
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
                          timeout: float = 120.0, encryption_required: bool = False) -> str:
    """Download with transmission-cli 3.00 inside `netns_host` into `save_dir`,
    finding peers through the torrent's trackers (which must be reachable from the
    namespace). Returns once it says it is seeding (it verified every piece); raises
    TimeoutError with its log's tail if that takes longer than `timeout`. The process
    is always stopped. Returns the log text."""
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    with _transmission(torrent_path, save_dir, netns_host, port, workdir,
                       "transmission-dl-", encryption_required) as (argv, log_path):
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
    ll_ip: str | None = None   # its IPv6 link-local address (fixed: from its fixed MAC)

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

    def qdisc_drops(self, i: int) -> int:
        """Packets host i's upload qdisc (the tbf of `limit_egress`) has dropped: a
        full queue, so TCP retransmits (0 without a cap)."""
        h = self.hosts[i]
        res = subprocess.run(["tc", "-n", h.ns, "-s", "-j", "qdisc", "show", "dev", h.ns_if],
                             capture_output=True, text=True, timeout=10)
        with contextlib.suppress(ValueError, TypeError):
            return sum(int(q.get("drops", 0)) for q in json.loads(res.stdout or "[]"))
        return 0

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
            # A fixed MAC: a bridge otherwise takes its lowest port's as ports join.
            _ip("link", "set", bridge, "address", f"02:32:{subnet:02x}:ff:ff:ff")
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
            _ip("link", "add", br_if, "type", "veth", "peer", "name", h.ns_if,
                "address", _cluster_mac(c.subnet, i), "netns", ns)
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
        # Every host's IPv6 link-local address is past duplicate address detection
        # (about a second after its link came up): until then nothing can be sent
        # from it, and an LSD announcement sent at a daemon's start would be lost,
        # with the next one five minutes away.
        for h in c.hosts:
            wait_until(lambda: _link_local(h.ns, h.ns_if) is not None and not _ip(
                           "-n", h.ns, "-6", "addr", "show", "dev", h.ns_if, "tentative",
                           check=False).stdout.strip(),
                       timeout=15, interval=0.1,
                       message=f"{h.ns}/{h.ns_if}: no IPv6 link-local address past DAD")
        _pin_neighbours(c)
        yield c
    finally:
        _cluster_cleanup(c)


def _cluster_mac(subnet: int, i: int) -> str:
    """Host i's fixed, locally administered MAC in cluster K: 02:32:KK:00:II:II."""
    return f"02:32:{subnet:02x}:00:{i >> 8:02x}:{i & 0xff:02x}"


def _link_local(ns: str | None, dev: str) -> str | None:
    """The fe80:: address of `dev` (in namespace `ns`, or the root one), if any."""
    res = _ip(*(("-n", ns) if ns else ()), "-j", "-6", "addr", "show", "dev", dev,
              "scope", "link", check=False)
    with contextlib.suppress(ValueError, IndexError, KeyError):
        for a in json.loads(res.stdout)[0]["addr_info"]:
            return a["local"]
    return None


def _pin_neighbours(c: Cluster) -> None:
    """Permanent neighbour entries (IPv4 and IPv6 link-local) between every pair of
    hosts, and between the hosts and the bridge. The kernel's ARP and ND tables are
    shared by every namespace and hold gc_thresh3 (1024) learned entries each: 65
    hosts that all talk to each other need 65 x 64 of them per family, and past the
    limit packets are dropped ("neighbour table overflow"). Permanent entries do not
    count against it (Linux >= 4.19), and no ARP or ND is needed at all."""
    bridge_mac = json.loads(_ip("-j", "link", "show", c.bridge).stdout)[0]["address"]
    for h in c.hosts:
        h.ll_ip = _link_local(h.ns, h.ns_if)
    ends = [(h.ip, h.ll_ip, _cluster_mac(c.subnet, h.index)) for h in c.hosts]
    ends.append((c.bridge_ip, _link_local(None, c.bridge), bridge_mac))
    for h in c.hosts:
        me = _cluster_mac(c.subnet, h.index)
        lines = [f"neigh replace {addr} lladdr {mac} dev {h.ns_if} nud permanent"
                 for ip, ll, mac in ends if mac != me
                 for addr in (ip, ll) if addr]
        res = subprocess.run(["ip", "-n", h.ns, "-batch", "-"], input="\n".join(lines) + "\n",
                             capture_output=True, text=True, timeout=30)
        if res.returncode != 0:
            raise RuntimeError(f"neighbour entries in {h.ns}: {res.stderr.strip()}")
    lines = [f"neigh replace {addr} lladdr {mac} dev {c.bridge} nud permanent"
             for ip, ll, mac in ends[:-1] for addr in (ip, ll) if addr]
    res = subprocess.run(["ip", "-batch", "-"], input="\n".join(lines) + "\n",
                         capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        raise RuntimeError(f"neighbour entries on {c.bridge}: {res.stderr.strip()}")


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
