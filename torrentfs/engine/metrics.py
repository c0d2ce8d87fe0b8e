"""What a torrent counts for ``--metrics`` (Prometheus) and ``torrentfs status --json``.

The engine keeps plain numbers, cheap enough for the hot path (an int added per
block, a bucket counted per read): ``Metrics``, one per ``Torrent``
(``torrent.metrics``). Nothing is formatted until someone asks: ``figures(torrent)``
reads them, with a few gauges taken from the torrent at that moment, as plain data
(the ``metrics`` object of the status file), and ``TorrentCollector`` turns the
figures of every torrent served into Prometheus metric families at scrape time
(``net.metricsserver`` serves them). Both read in the trio thread.

Where the bytes came from (``SOURCES``): a block's bytes count for the source that
sent them, once it is taken into its piece (duplicates count as ``wasted`` instead,
so the sources add up to ``totals.downloaded``):

* ``origin``: a peer whose IP address is one given with ``--origin HOST[:PORT]``,
  the machine a cluster's data starts from (``torrentfs seed`` there; the IP alone
  decides, so its incoming and outgoing connections both count);
* ``webseed``: a BEP 19 web seed (the torrent's url-list or ``--web-seed``), which in
  a cluster is often the origin as a plain HTTP server;
* ``peer``: any other peer (the other nodes of a cluster).

FIGURES = {
  "received": {"peer": int, "webseed": int, "origin": int},  # bytes, by source
  "sent": int, "wasted": int,             # bytes uploaded; duplicates received
  "size": int,                            # bytes of the torrent (sent / size: copies)
  "pieces": {"passed": int, "failed": int,  # downloaded pieces by their hash check
             "have": int, "total": int},  # verified on disk now, in the torrent
  "peers": int, "reads_waiting": int,     # connected (past the handshake); waiting
  "read_seconds": {"le": [float], "counts": [int],  # reads up to each bound (s)
                   "count": int, "sum": float}}     # all reads; their total time (s)
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_left
from typing import Callable, Iterable

SOURCES = ("peer", "webseed", "origin")
# Upper bounds (s) of the read-latency buckets: a read served from memory or disk
# takes well under a millisecond; one that waits for the swarm, 0.1 s to a minute.
READ_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                30.0, 60.0)


def normal_ip(host: str) -> str:
    """An IP address as compared: IPv4-mapped IPv6 (``::ffff:10.0.0.1``, how a
    dual-stack listener sees an IPv4 peer) as plain IPv4; a non-IP unchanged."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    mapped = getattr(ip, "ipv4_mapped", None)
    return str(mapped or ip)


class Latency:
    """A histogram of durations kept as counts per bucket (not cumulative):
    ``observe`` is a bisect and two additions."""

    def __init__(self, bounds: tuple[float, ...] = READ_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last: above every bound
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def figures(self) -> dict:
        """Cumulative counts per upper bound; ``count`` is the +Inf bucket's (JSON
        has no infinity)."""
        cumulative, total = [], 0
        for n in self.counts:
            total += n
            cumulative.append(total)
        return {"le": list(self.bounds), "counts": cumulative[:-1],
                "count": total, "sum": round(self.sum, 6)}


class Metrics:
    """The counters of one torrent (see the module docstring). ``origins``: the IP
    addresses whose peers count as the origin."""

    def __init__(self, origins: Iterable[str] = ()) -> None:
        self.origins = frozenset(normal_ip(h) for h in origins)
        # Peer ids seen at an origin address: the same daemon reached at another of
        # its addresses (an IPv6 link-local one heard over LSD, say) is the origin too.
        self.origin_ids: set[bytes] = set()
        self.received = dict.fromkeys(SOURCES, 0)  # bytes taken into pieces, by source
        self.pieces_passed = 0   # pieces downloaded whose hash matched ...
        self.pieces_failed = 0   # ... and did not
        self.read_latency = Latency()

    def source_of(self, addr: tuple[str, int], peer_id: bytes | None = None) -> str:
        """``origin`` or ``peer``, for a peer at ``addr`` with ``peer_id`` (its
        session's ``source``): an origin address, or a peer id seen at one."""
        if self.origins and normal_ip(addr[0]) in self.origins:
            if peer_id is not None:
                self.origin_ids.add(peer_id)
            return "origin"
        return "origin" if peer_id is not None and peer_id in self.origin_ids else "peer"


def figures(torrent) -> dict:
    """The torrent's FIGURES (module docstring): its counters and, at this moment,
    its peers and waiting reads. Cheap: no pass over the pieces."""
    m = torrent.metrics
    return {
        "received": dict(m.received),
        "sent": torrent.uploaded, "wasted": torrent.wasted,
        "size": torrent.geometry.total_length,
        "pieces": {"passed": m.pieces_passed, "failed": m.pieces_failed,
                   "have": torrent.have.count, "total": torrent.have.size},
        "peers": sum(1 for s in torrent.sessions.values() if s.registered and not s.closed),
        "reads_waiting": len(torrent.waiting_reads),
        "read_seconds": m.read_latency.figures(),
    }


class TorrentCollector:
    """A prometheus_client collector of every torrent served: ``torrents()`` gives
    (info-hash hex, name, FIGURES) for each, read at each scrape."""

    PREFIX = "torrentfs"

    def __init__(self, torrents: Callable[[], Iterable[tuple[str, str, dict]]]) -> None:
        self.torrents = torrents

    def describe(self):
        return []  # families depend on nothing registered; collected fresh each scrape

    def collect(self):
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
        )
        p, labels = self.PREFIX, ["infohash", "name"]
        received = CounterMetricFamily(
            f"{p}_received_bytes", "Bytes of blocks taken into pieces, by source: origin "
            "(peers at an --origin address), webseed (BEP 19) or peer (any other)",
            labels=[*labels, "source"])
        sent = CounterMetricFamily(f"{p}_sent_bytes", "Bytes of blocks uploaded to peers",
                                   labels=labels)
        wasted = CounterMetricFamily(f"{p}_wasted_bytes", "Bytes of blocks received twice "
                                     "(not counted in received_bytes)", labels=labels)
        passed = CounterMetricFamily(f"{p}_pieces_verified", "Downloaded pieces whose hash "
                                     "matched", labels=labels)
        failed = CounterMetricFamily(f"{p}_pieces_failed", "Downloaded pieces whose hash "
                                     "did not match", labels=labels)
        size = GaugeMetricFamily(f"{p}_size_bytes", "Bytes of the torrent's data",
                                 labels=labels)
        have = GaugeMetricFamily(f"{p}_pieces_have", "Pieces verified and on disk now",
                                 labels=labels)
        total = GaugeMetricFamily(f"{p}_pieces", "Pieces in the torrent", labels=labels)
        peers = GaugeMetricFamily(f"{p}_peers", "Peers connected (past the handshake)",
                                  labels=labels)
        waiting = GaugeMetricFamily(f"{p}_reads_waiting", "Reads waiting for pieces",
                                    labels=labels)
        latency = HistogramMetricFamily(f"{p}_read_seconds", "How long a read of the "
                                        "mount took, waiting for its pieces included",
                                        labels=labels)
        for info_hash, name, f in self.torrents():
            ids = [info_hash, name]
            for source in SOURCES:
                received.add_metric([*ids, source], f["received"][source])
            sent.add_metric(ids, f["sent"])
            wasted.add_metric(ids, f["wasted"])
            size.add_metric(ids, f["size"])
            passed.add_metric(ids, f["pieces"]["passed"])
            failed.add_metric(ids, f["pieces"]["failed"])
            have.add_metric(ids, f["pieces"]["have"])
            total.add_metric(ids, f["pieces"]["total"])
            peers.add_metric(ids, f["peers"])
            waiting.add_metric(ids, f["reads_waiting"])
            r = f["read_seconds"]
            buckets = [(repr(float(le)), n) for le, n in zip(r["le"], r["counts"])]
            latency.add_metric(ids, [*buckets, ("+Inf", r["count"])], r["sum"])
        yield from (received, sent, wasted, size, passed, failed, have, total, peers,
                    waiting, latency)


def registry(torrents: Callable[[], Iterable]):
    """A prometheus_client registry of the torrents served (``torrents()`` gives the
    ``Torrent`` objects) and of the process (CPU, memory, open files, Python's GC):
    what ``/metrics`` shows."""
    from prometheus_client import (
        CollectorRegistry,
        GCCollector,
        PlatformCollector,
        ProcessCollector,
    )
    reg = CollectorRegistry(auto_describe=False)
    ProcessCollector(registry=reg)
    PlatformCollector(registry=reg)
    GCCollector(registry=reg)
    reg.register(TorrentCollector(
        lambda: [(t.meta.info_hash.hex(), t.meta.name, figures(t)) for t in torrents()]))
    return reg
