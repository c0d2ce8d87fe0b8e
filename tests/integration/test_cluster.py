"""Integration: a swarm of torrentfs mounts shares what it reads.

One origin (``torrentfs seed``) and N=4 torrentfs mounts, each in its own network
namespace on one bridge, every host's upload capped by a tbf qdisc on its veth, find
each other through opentracker on the bridge. All four mounts read the whole file at
the same time. Every node must get byte-exact data, and the origin must upload at
most 1.75 copies of the file: the nodes are meant to pass pieces on to each other
rather than each pulling its own copy from the origin (which would be 4 copies).
The origin's upload is measured twice: on its veth (every byte it sent, headers
included) and from the totals line ``torrentfs seed`` logs at exit.

Every daemon also serves ``--metrics`` on its own address, and the nodes name the
origin with ``--origin``: once the reads are done, each is scraped over HTTP. On
every node the bytes received by source (origin, peer) add up to the file it read,
and together the nodes took at least one copy from the origin (the only seed) and
no more than it says it sent.

The same run with the origin as ``torrentfs seed --super-seed`` (core/sparing) must
upload at most 1.25 copies.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import time
from collections import defaultdict

import pytest

from tests.harness.command import TORRENTFS
from tests.harness.metrics import by_source, one, scrape
from tests.harness.mounts import Mount, force_unmount
from tests.harness.netns import cluster
from tests.harness.payload import sha256
from tests.harness.swarm import (
    lt_create,
    opentracker,
    stop_process,
    wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

N_NODES = 4
SIZE = 8 * 1024 * 1024
PIECE = 64 * 1024
ORIGIN_RATE = 2_000_000   # bytes/s, the origin's upload (tbf on its veth)
NODE_RATE = 4_000_000     # bytes/s, each node's upload
ORIGIN_PORT = 6881
MAX_ORIGIN_COPIES = 1.75
MAX_SPARED_COPIES = 1.25  # with ``seed --super-seed`` (core/sparing): about one copy
READ_TIMEOUT = 150        # s for all readers together
METRICS_PORT = 9100       # every daemon's --metrics, on its own address

# A host: IPv4, IPv6, or IPv6 link-local with its zone (fe80::1%2, as LSD hears it).
HOST = r"[\da-f:.]+(?:%\w+)?"
CLOSED = re.compile(rf"<peer ({HOST}):(\d+)> closed: (.*) \(received (\d+) bytes of blocks, "
                    r"sent (\d+)\)")
CONNECTED = re.compile(rf"connected to <peer ({HOST}):(\d+)> \((in|out)\)")
# A peer that sat on our requests for SNUB_AFTER (20 s): on these links every peer
# serves within a second, so one is a stall (as when a session fell out of
# ``sessions`` and its peer's requests were never served).
SNUBBED = re.compile(rf"<peer ({HOST}):\d+> snubbed us")
OUTGOING_UTP = re.compile(rf"<peer ({HOST}:\d+)> over uTP \(outgoing\)")
REACHED_OUT = re.compile(rf"(?:connected to <peer ({HOST}:\d+)> \(out\)"
                         rf"|<peer ({HOST}:\d+)> closed: already connected to this peer)")
TOTALS = re.compile(r"totals: downloaded (\d+) bytes, uploaded (\d+), wasted (\d+)")


def flow_matrix(logs: dict[str, str], names: dict[str, str]) -> dict[str, dict[str, int]]:
    """matrix[receiver][sender] = bytes of blocks, from every ``closed:`` line of the
    logs (host name -> log text). A session is logged by the side that saw it end
    (the other side's daemon may have been cancelled first and logs nothing), so
    each line fills both directions: what its host received and what it sent."""
    said_got: dict[tuple[str, str], int] = defaultdict(int)   # (me, peer) in me's log
    said_sent: dict[tuple[str, str], int] = defaultdict(int)
    for me, log in logs.items():
        for ip, _port, _why, got, sent in CLOSED.findall(log):
            said_got[me, names.get(unzoned(ip), ip)] += int(got)
            said_sent[me, names.get(unzoned(ip), ip)] += int(sent)
    m: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in logs:
        for s in logs:
            # A session logged on both sides would count twice: take the larger.
            m[r][s] = max(said_got[r, s], said_sent[s, r])
    return m


def matrix_table(m: dict[str, dict[str, int]], hosts: list[str]) -> str:
    """MiB received (rows) from (columns)."""
    lines = ["MiB received by (row) from (column):",
             "        " + "".join(f"{h:>8}" for h in hosts)]
    for r in hosts:
        lines.append(f"{r:>8}" + "".join(f"{m[r][h] / 2**20:8.2f}" if r != h else f"{'-':>8}"
                                         for h in hosts))
    return "\n".join(lines)


def totals(log: str) -> tuple[int, int, int] | None:
    found = TOTALS.findall(log)
    return tuple(int(x) for x in found[-1]) if found else None


def try_scrape(ip: str):
    """A host's /metrics samples, or why there are none (a failed scrape fails only
    the test that reads them)."""
    try:
        return scrape(ip, METRICS_PORT)
    except Exception as e:  # noqa: BLE001 - reported, and failed on, below
        return f"scrape failed: {type(e).__name__}: {e}"


def link_local_addresses(c, i: int) -> list[str]:
    """Host i's IPv6 link-local addresses (``ip -6 addr`` in its namespace)."""
    out = c.run(i, ["ip", "-6", "-o", "addr", "show", "scope", "link"],
                capture_output=True, text=True).stdout
    return re.findall(r"inet6 (fe80:[\da-f:]+)/", out)


def unzoned(ip: str) -> str:
    """A host without its zone: ``names`` knows link-local addresses that way."""
    return ip.split("%")[0]


def connected_ips(log: str) -> set[str]:
    return {unzoned(ip) for ip, _port, _dir in CONNECTED.findall(log)}


def tcp_to_link_local(log: str) -> set[str]:
    """Zoned link-local addresses (heard over LSD) this host reached over TCP: a
    session it dialed got past the handshake, and it was not a uTP one."""
    reached = {a or b for a, b in REACHED_OUT.findall(log)}
    return {a for a in reached if "%" in a} - set(OUTGOING_UTP.findall(log))


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory):
    """Runs the cluster once for the tests below; returns what they check."""
    return run_cluster(tmp_path_factory.mktemp("cluster"))


@pytest.fixture(scope="module")
def spared_run(tmp_path_factory):
    """The same cluster with the origin run as ``torrentfs seed --super-seed``."""
    return run_cluster(tmp_path_factory.mktemp("cluster-spared"), ["--super-seed"], "i16t")


def run_cluster(tmp_path, origin_extra=(), prefix="tfcl"):
    data = tmp_path / "data"
    data.mkdir()
    payload = data / "blob.bin"
    payload.write_bytes(random.Random(4242).randbytes(SIZE))
    want = sha256(payload)
    torrent = tmp_path / "t.torrent"

    report: list[str] = []
    with cluster(1 + N_NODES, prefix) as c:
        names = {c.hosts[0].ip: "origin", c.bridge_ip: "tracker"}
        names.update({c.hosts[i].ip: f"node{i}" for i in range(1, N_NODES + 1)})
        # The daemons also meet at their IPv6 link-local addresses (LSD over IPv6, then
        # uTP on the dual-stack socket): those name the same hosts.
        for i, host in enumerate(c.hosts):
            for addr in link_local_addresses(c, i):
                names[addr] = "origin" if i == 0 else f"node{i}"
        c.limit_egress(0, ORIGIN_RATE)
        for i in range(1, N_NODES + 1):
            c.limit_egress(i, NODE_RATE)

        with opentracker(host=c.bridge_ip) as tracker:
            info_hash = lt_create(payload, torrent, tracker.announce_url, piece_size=PIECE)
            tracker.add(info_hash)

            origin_log = tmp_path / "origin.log"
            with open(origin_log, "wb") as err:
                origin = c.popen(0, [TORRENTFS, "seed", str(torrent), str(data),
                                     "--port", str(ORIGIN_PORT), "--no-dht",
                                     "--metrics", f"{c.hosts[0].ip}:{METRICS_PORT}",
                                     "--cache-dir", str(tmp_path / "origin-cache"),
                                     *origin_extra],
                                 stdout=subprocess.DEVNULL, stderr=err)
            mounts: list[Mount] = []
            readers: list[subprocess.Popen] = []
            try:
                wait_until(lambda: b"seeding " in origin_log.read_bytes()
                           or origin.poll() is not None, timeout=60)
                assert origin.poll() is None, origin_log.read_text()
                tracker.wait_peers(info_hash, 1, timeout=30)
                tx0 = c.tx_bytes(0)

                for i in range(1, N_NODES + 1):
                    mnt, cache = tmp_path / f"mnt{i}", tmp_path / f"cache{i}"
                    mnt.mkdir()
                    m = Mount(mnt, cache, info_hash.hex())
                    mounts.append(m)
                    r = c.run(i, [TORRENTFS, "mount", str(torrent), str(mnt),
                                  "--cache-dir", str(cache), "--read-timeout", "120",
                                  "--no-dht", "--origin", c.hosts[0].ip,
                                  "--metrics", f"{c.hosts[i].ip}:{METRICS_PORT}"],
                              capture_output=True, text=True, timeout=60)
                    assert r.returncode == 0, f"node{i} mount failed: {r.stderr}\n{m.log}"
                    assert os.path.ismount(mnt)
                tracker.wait_peers(info_hash, 1 + N_NODES, timeout=30)
                # Let the mesh form: each node connected to the origin and to the others
                # (later nodes learn the earlier ones from the tracker and connect).
                try:
                    wait_until(lambda: all(len(connected_ips(m.log)) >= N_NODES
                                           for m in mounts), timeout=15, interval=0.2)
                except TimeoutError:
                    pass
                for i, m in enumerate(mounts, 1):
                    report.append(f"node{i} connected before the reads to: " + ", ".join(
                        sorted(names.get(ip, ip) for ip in connected_ips(m.log))))

                t0 = time.monotonic()
                for m in mounts:  # all at once
                    readers.append(subprocess.Popen(
                        ["sha256sum", str(m.path / payload.name)], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL))
                deadline = t0 + READ_TIMEOUT
                results = []
                for i, rd in enumerate(readers, 1):
                    try:
                        out, errout = rd.communicate(timeout=max(0.1, deadline - time.monotonic()))
                    except subprocess.TimeoutExpired:
                        out, errout = "", f"read did not finish within {READ_TIMEOUT} s"
                    results.append((i, rd.returncode, out.split()[0] if out else "", errout,
                                    time.monotonic() - t0))
                for i, code, got, errout, elapsed in results:
                    report.append(f"node{i} read: exit {code}, {elapsed:.1f} s, "
                                  f"{'ok' if got == want else 'WRONG ' + got + errout.strip()}")
                # What is still in flight (requests made before the last read ended)
                # counts too, and stopping a sender mid-message makes its peer log
                # an error instead of the session's figures: wait for quiet links.
                quiet = c.wait_quiet(range(N_NODES + 1), quiet=1.0, timeout=20)
                report.append("links quiet after the reads" if quiet else
                              "links still busy 20 s after the reads")
                tx_origin = c.tx_bytes(0) - tx0
                node_tx = [c.tx_bytes(i) for i in range(1, N_NODES + 1)]
                scraped = {names[c.hosts[i].ip]: try_scrape(c.hosts[i].ip)
                           for i in range(N_NODES + 1)}  # after the veth counts
            finally:
                # The origin first: then every node logs its session with the origin
                # ("closed: peer closed the connection (received N bytes ...)"), and
                # each unmount makes the nodes still up log their session with it.
                for rd in readers:
                    stop_process(rd, timeout=5)
                stop_process(origin, timeout=15)
                for m in mounts:
                    force_unmount(m)

    origin_text = origin_log.read_text(errors="replace")
    origin_totals = totals(origin_text)
    origin_copies = tx_origin / SIZE
    report.insert(0, f"origin uploaded {tx_origin} bytes on its veth = {origin_copies:.2f} "
                     f"copies; its totals line: {origin_totals} = "
                     + (f"{origin_totals[1] / SIZE:.2f} copies" if origin_totals else "none"))
    logs = {"origin": origin_text}
    for i, m in enumerate(mounts, 1):
        logs[f"node{i}"] = log = m.log
        t = totals(log)
        report.append(f"node{i}: uploaded {node_tx[i - 1] / 2**20:.2f} MiB on its veth; totals: "
                      + (f"downloaded {t[0] / 2**20:.2f} MiB, uploaded {t[1] / 2**20:.2f}, "
                         f"wasted {t[2] / 2**20:.2f}" if t else "none"))
    report.append(matrix_table(flow_matrix(logs, names), list(logs)))
    snubs = [f"{h} by " + ", ".join(sorted(names.get(unzoned(ip), ip)
                                          for ip in SNUBBED.findall(log)))
             for h, log in logs.items() if SNUBBED.search(log)]
    report.append("snubbed (sat 20 s on requests): " + ("; ".join(snubs) or "none"))
    report.append("reached over TCP at a zoned link-local address: " + "; ".join(
        f"{h} {len(tcp_to_link_local(log))}" for h, log in logs.items()))
    hexhash = info_hash.hex()
    for host, samples in scraped.items():
        if isinstance(samples, str):
            report.append(f"{host} /metrics: {samples}")
            continue
        got = by_source(samples, hexhash)
        report.append(f"{host} /metrics: received " + ", ".join(
            f"{k} {v / 2**20:.2f} MiB" for k, v in sorted(got.items()))
            + f"; sent {one(samples, 'torrentfs_sent_bytes_total', hexhash) / 2**20:.2f} MiB")
    crashed = [h for h, log in logs.items() if "Traceback" in log or "internal error" in log]
    if crashed:
        report.append("tracebacks in the logs of: " + ", ".join(crashed)
                      + " (their sessions that ended in the crash are missing above)")
    summary = "\n".join(report)
    print("\n" + summary)
    (tmp_path / "summary.txt").write_text(summary + "\n")

    flows = flow_matrix(logs, names)
    link_local_tcp = {h: tcp_to_link_local(log) for h, log in logs.items()}
    snubbed = {h: sorted(names.get(unzoned(ip), ip) for ip in SNUBBED.findall(log))
               for h, log in logs.items()}
    return {"results": results, "want": want, "summary": summary, "flows": flows,
            "origin_totals": origin_totals, "origin_text": origin_text,
            "origin_copies": origin_copies, "metrics": scraped, "info_hash": hexhash,
            "link_local_tcp": link_local_tcp, "snubbed": snubbed}


def test_four_mounts_read_byte_exact_and_trade_pieces(cluster_run):
    r = cluster_run
    for i, code, got, errout, _ in r["results"]:
        assert code == 0 and got == r["want"], (
            f"node{i} did not read the file byte-exact\n{r['summary']}")
    assert r["origin_totals"] is not None, r["origin_text"][-2000:]
    # The nodes fetched from each other, not only from the origin: together they got
    # at least a copy's worth of the file from fellow nodes.
    flows = r["flows"]  # flows[receiver][sender] = bytes
    from_nodes = sum(n for to in flows if to.startswith("node")
                     for frm, n in flows[to].items() if frm.startswith("node"))
    assert from_nodes >= SIZE, r["summary"]


def test_link_local_peers_heard_over_lsd_are_reached_over_tcp(cluster_run):
    """LSD over IPv6 hears the hosts at their link-local addresses; kept with their
    zone (the interface), those are dialed over TCP (without it, connect fails and
    only uTP reached them)."""
    reached = cluster_run["link_local_tcp"]
    assert any(reached.values()), cluster_run["summary"]


def test_no_peer_sits_on_requests(cluster_run):
    """No host waited SNUB_AFTER (20 s) for blocks a peer had been asked for. Here
    every peer serves within a second; one that does not is stalled, as a session
    replaced in ``sessions`` by a second connection at its address was (it never
    served its peer's requests, and the reads waited for the snub)."""
    snubbed = {h: who for h, who in cluster_run["snubbed"].items() if who}
    assert not snubbed, cluster_run["summary"]


def test_origin_uploads_well_under_a_copy_per_node(cluster_run):
    assert cluster_run["origin_copies"] <= MAX_ORIGIN_COPIES, (
        f"the origin uploaded {cluster_run['origin_copies']:.2f} copies for {N_NODES} "
        f"nodes (at most {MAX_ORIGIN_COPIES})\n{cluster_run['summary']}")


def test_metrics_bytes_by_source_add_up_on_every_node(cluster_run):
    """Scraped from each daemon's /metrics: every node took exactly the file it read,
    from the origin and from fellow nodes; the origin's share of all that is at
    least one copy (every piece enters the swarm through it) and no more than the
    origin says it sent."""
    r, h = cluster_run, cluster_run["info_hash"]
    from_origin = 0
    for host, samples in r["metrics"].items():
        assert not isinstance(samples, str), f"{host}: {samples}\n{r['summary']}"
    for i in range(1, N_NODES + 1):
        samples = r["metrics"][f"node{i}"]
        got = by_source(samples, h)
        assert got["webseed"] == 0, r["summary"]
        assert got["origin"] + got["peer"] == SIZE, f"node{i}: {got}\n{r['summary']}"
        assert one(samples, "torrentfs_pieces_verified_total", h) == SIZE // PIECE
        assert one(samples, "torrentfs_pieces_failed_total", h) == 0
        assert one(samples, "torrentfs_read_seconds_count", h) > 0
        from_origin += got["origin"]
    origin = r["metrics"]["origin"]
    assert sum(by_source(origin, h).values()) == 0  # a seed downloads nothing
    sent = one(origin, "torrentfs_sent_bytes_total", h)
    assert SIZE <= from_origin <= sent, r["summary"]


def test_a_super_seeding_origin_sends_about_one_copy(spared_run):
    # Real mounts reading at once from an origin that refuses what it sent before
    # and another node now has (BEP 6 rejects): every read byte-exact, the nodes
    # trade the rest, and the origin's uplink carries about one copy.
    r = spared_run
    for i, code, got, errout, _ in r["results"]:
        assert code == 0 and got == r["want"], (
            f"node{i} did not read the file byte-exact\n{r['summary']}")
    assert r["origin_copies"] <= MAX_SPARED_COPIES, (
        f"the super-seeding origin uploaded {r['origin_copies']:.2f} copies for {N_NODES} "
        f"nodes (at most {MAX_SPARED_COPIES})\n{r['summary']}")
