"""Integration: port mapping against a real gateway, Debian's miniupnpd, in network
namespaces of the test's own (tests/harness/gateway.py). `torrentfs seed` behind it
maps its TCP listen port and its DHT's UDP port (PCP when the router speaks it, else
NAT-PMP, else UPnP IGD), logs the external address once, and removes both mappings
when it stops; with --no-port-mapping it asks for nothing. miniupnpd speaks PCP and
NAT-PMP on one port: for NAT-PMP a rule in the router drops PCP requests."""

from __future__ import annotations

import re
import signal
import subprocess

import pytest

from tests.harness.command import TORRENTFS
from tests.harness.gateway import CLIENT_IP, EXT_IP, ROUTER_IP, miniupnpd_router
from tests.harness.payload import make_payload
from tests.harness.swarm import lt_create, stop_process, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

PORT = 40123


def _seed(router, torrent, data, cache, log, *extra):
    return subprocess.Popen(router.client_argv(
        [TORRENTFS, "seed", str(torrent), str(data), "--port", str(PORT), "--cache-dir",
         str(cache), "--no-lsd", "--dht-bootstrap", f"{ROUTER_IP}:9", *extra]),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=open(log, "wb"))


@pytest.mark.parametrize("method", ["PCP", "NAT-PMP", "UPnP"])
def test_seed_maps_its_ports_and_removes_them(tmp_path, method):
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 100_000, seed=171)
    torrent = tmp_path / "t.torrent"
    lt_create(payload, torrent, None, piece_size=16384)
    log = tmp_path / "seed.log"
    with miniupnpd_router(natpmp=method != "UPnP", pcp=method == "PCP",
                          workdir=tmp_path / "gw") as router:
        proc = _seed(router, torrent, data, tmp_path / "cache", log)
        try:
            line = f"port mapping ({method}, gateway {ROUTER_IP}): external address {EXT_IP}; "
            wait_until(lambda: line in log.read_text() or proc.poll() is not None, 30,
                       message=f"no mapping logged:\n{log.read_text()}\n{router.log()}")
            text = log.read_text()
            assert line in text, text + router.log()
            assert f"TCP {PORT} -> {PORT}" in text
            udp = int(re.search(r"DHT node \w+ on UDP port (\d+)", text).group(1))
            assert f"UDP {udp} -> {udp}" in text
            assert text.count("port mapping (") == 1  # one line
            assert sorted(router.redirects()) == sorted([("TCP", PORT), ("UDP", udp)])
            assert f"{CLIENT_IP}:{PORT}" in router.log()
            # miniupnpd's own word for how each mapping came
            assert ("PCP MAP:" in router.log()) == (method == "PCP"), router.log()
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                code = proc.wait(20)
            finally:
                stop_process(proc)
        assert code == 0, log.read_text()
        assert "port mapping: removed 2 mappings" in log.read_text()
        assert router.redirects() == [], router.log()


def test_no_port_mapping_asks_for_nothing(tmp_path):
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 50_000, seed=172)
    torrent = tmp_path / "t.torrent"
    lt_create(payload, torrent, None, piece_size=16384)
    log = tmp_path / "seed.log"
    with miniupnpd_router(workdir=tmp_path / "gw") as router:
        proc = _seed(router, torrent, data, tmp_path / "cache", log, "--no-port-mapping")
        try:
            wait_until(lambda: "seeding payload" in log.read_text() or proc.poll() is not None,
                       30)
            assert proc.poll() is None, log.read_text()
            # (bounded: a mapper would have logged within its first NAT-PMP round)
            with pytest.raises(TimeoutError):
                wait_until(lambda: "port mapping" in log.read_text(), 5)
            assert router.redirects() == []
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            finally:
                stop_process(proc)
