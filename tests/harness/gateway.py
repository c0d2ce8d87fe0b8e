"""A home router nobody here wrote, for port mapping tests: Debian's miniupnpd
(nftables backend) in a network namespace of the test's own.

`miniupnpd_router()` makes two namespaces: "router" with an external interface
(ext0, a public-looking address, 5.6.7.8/24: the namespace has no way out, so
the address reaches nothing) and an internal one (int0, 10.240.1.1/24) joined by a
veth pair to "client" (10.240.1.2/24, default route via the router). It loads the
nftables chains miniupnpd adds its rules to (table inet filter:
prerouting_miniupnpd, postrouting_miniupnpd, miniupnpd) and starts miniupnpd with
NAT-PMP and/or UPnP IGD on int0 (its NAT-PMP port speaks PCP too; with pcp=False a
rule drops PCP requests, version 2, so the router acts as a NAT-PMP-only one that
ignores PCP). `Router.client_argv(argv)` runs a command in the
client namespace; `Router.redirects()` lists the port forwards miniupnpd has made
(its nftables rules). On exit miniupnpd and anything left in the namespaces are
stopped by PID and the namespaces deleted. Needs root, miniupnpd-nftables and
nftables (scripts/install).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from tests.harness.swarm import _running, _wait_ready, _workdir, log_tail, wait_until

EXT_IP = "5.6.7.8"
ROUTER_IP = "10.240.1.1"
CLIENT_IP = "10.240.1.2"

NFT_RULES = """\
table inet filter {
  chain forward { type filter hook forward priority 0; policy accept; jump miniupnpd; }
  chain miniupnpd { }
  chain prerouting { type nat hook prerouting priority -100; policy accept;
                     jump prerouting_miniupnpd; }
  chain postrouting { type nat hook postrouting priority 100; policy accept;
                      jump postrouting_miniupnpd; }
  chain prerouting_miniupnpd { }
  chain postrouting_miniupnpd { }
}
"""

# Drops PCP (version 2) datagrams to port 5351; NAT-PMP (version 0) passes.
NFT_NO_PCP = """\
table inet nopcp {
  chain input { type filter hook input priority -10; policy accept;
                udp dport 5351 @th,64,8 0x2 counter drop; }
}
"""

_counter = itertools.count()


@dataclass
class Router:
    router_ns: str
    client_ns: str
    log_path: Path

    def client_argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.client_ns, *argv]

    def redirects(self) -> list[tuple[str, int]]:
        """(protocol, external port) of each DNAT rule miniupnpd has in place."""
        res = subprocess.run(["ip", "netns", "exec", self.router_ns, "nft", "list", "chain",
                              "inet", "filter", "prerouting_miniupnpd"],
                             capture_output=True, text=True, timeout=10)
        # miniupnpd 2.3 writes the protocol as a raw match: @nh,72,8 0x6 (TCP) / 0x11
        names = {"0x6": "TCP", "0x11": "UDP", "tcp": "TCP", "udp": "UDP"}
        return [(names[proto], int(port)) for proto, port in
                re.findall(r"(?:@nh,72,8 (0x6|0x11) th|\b(?:tcp|udp)) dport (\d+)\b[^\n]*dnat",
                           res.stdout)]

    def log(self) -> str:
        return log_tail(self.log_path, 200)


def _ip(*args: str) -> None:
    res = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if res.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {res.stderr.strip()}")


def _kill_all(ns: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        res = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True,
                             timeout=10)
        pids = [int(p) for p in res.stdout.split()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not subprocess.run(["ip", "netns", "pids", ns],
                                                  capture_output=True, text=True,
                                                  timeout=10).stdout.split(), 5)


@contextlib.contextmanager
def miniupnpd_router(*, natpmp: bool = True, upnp: bool = True, pcp: bool = True,
                     workdir: Path | str | None = None, timeout: float = 15.0
                     ) -> Iterator[Router]:
    """A miniupnpd router and a client namespace behind it (module docstring)."""
    tag = f"{os.getpid()}-{next(_counter)}"
    rt, cl = f"tfgw-rt-{tag}", f"tfgw-cl-{tag}"
    made: list[str] = []
    with _workdir(workdir, "miniupnpd-") as wd:
        try:
            for ns in (rt, cl):
                _ip("netns", "add", ns)
                made.append(ns)
            _ip("-n", rt, "link", "add", "int0", "type", "veth", "peer", "name", "veth0",
                "netns", cl)
            _ip("-n", rt, "link", "add", "ext0", "type", "veth", "peer", "name", "ext1")
            for args in (("addr", "add", f"{ROUTER_IP}/24", "dev", "int0"),
                         ("addr", "add", f"{EXT_IP}/24", "dev", "ext0"),
                         ("link", "set", "lo", "up"), ("link", "set", "int0", "up"),
                         ("link", "set", "ext0", "up"), ("link", "set", "ext1", "up")):
                _ip("-n", rt, *args)
            for args in (("addr", "add", f"{CLIENT_IP}/24", "dev", "veth0"),
                         ("link", "set", "lo", "up"), ("link", "set", "veth0", "up"),
                         ("route", "add", "default", "via", ROUTER_IP)):
                _ip("-n", cl, *args)
            rules = wd / "rules.nft"
            rules.write_text(NFT_RULES + ("" if pcp else NFT_NO_PCP))
            subprocess.run(["ip", "netns", "exec", rt, "nft", "-f", str(rules)], check=True,
                           capture_output=True, timeout=10)
            conf = wd / "miniupnpd.conf"
            conf.write_text("\n".join([
                "ext_ifname=ext0", "listening_ip=int0", "http_port=0",
                f"enable_natpmp={'yes' if natpmp else 'no'}",
                f"enable_upnp={'yes' if upnp else 'no'}",
                "secure_mode=yes", "system_uptime=yes",
                "uuid=3d3cec3a-8cf0-11e0-98ee-001a6bd2d07b",
                "allow 1024-65535 10.240.1.0/24 1024-65535",
                "deny 0-65535 0.0.0.0/0 0-65535", ""]))
            log_path = wd / "miniupnpd.log"
            argv = ["ip", "netns", "exec", rt, "miniupnpd", "-f", str(conf), "-d",
                    "-P", str(wd / "miniupnpd.pid")]
            with _running(argv, log_path) as proc:
                ready = "Listening for NAT-PMP" if natpmp else "HTTP listening on port"
                _wait_ready(proc, "miniupnpd", log_path,
                            lambda: ready in log_path.read_text(errors="replace"), timeout)
                yield Router(rt, cl, log_path)
        finally:
            for ns in made:
                _kill_all(ns)
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
