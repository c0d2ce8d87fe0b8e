"""The torrent's counters for ``--metrics`` and ``status --json`` (``engine.metrics``):
live on the autojump clock with fake peers and a mock web seed, and the Prometheus
collector's text, parsed back with prometheus_client's own parser."""

from __future__ import annotations

import json

import pytest
import trio
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.harness.fakepeer import Behaviour, start
from tests.harness.webseeds import MockSeed, SeedBehaviour, files_of
from torrentfs.cli.output import human
from torrentfs.cli.status import render_text
from torrentfs.engine.metrics import (
    READ_BUCKETS,
    SOURCES,
    Latency,
    Metrics,
    TorrentCollector,
    figures,
    normal_ip,
    registry,
)
from torrentfs.engine.reads import ReadTimeout
from torrentfs.engine.status import document

PIECE = 32768


# -- the parts ---------------------------------------------------------------------------

def test_latency_buckets_are_cumulative_and_json_safe():
    lat = Latency((0.1, 1.0, 10.0))
    for s in (0.05, 0.1, 0.5, 3.0, 99.0):
        lat.observe(s)
    f = lat.figures()
    assert f == {"le": [0.1, 1.0, 10.0], "counts": [2, 3, 4], "count": 5,
                 "sum": pytest.approx(102.65)}
    assert json.loads(json.dumps(f, allow_nan=False)) == f  # no Infinity in the JSON


def test_the_origin_is_known_by_its_ip_whatever_the_port_or_the_socket_family():
    m = Metrics(["10.0.0.1", "::ffff:10.0.0.2", "fd00::1"])
    assert m.source_of(("10.0.0.1", 6881)) == "origin"
    assert m.source_of(("10.0.0.1", 51234)) == "origin"       # its outgoing connection
    assert m.source_of(("::ffff:10.0.0.1", 6881)) == "origin"  # seen by a dual-stack socket
    assert m.source_of(("10.0.0.2", 1)) == "origin"
    assert m.source_of(("fd00:0::1", 1)) == "origin"
    assert m.source_of(("10.0.0.3", 6881)) == "peer"
    assert Metrics().source_of(("10.0.0.1", 6881)) == "peer"
    assert normal_ip("not-an-ip") == "not-an-ip"


def test_the_origin_is_known_by_its_peer_id_at_another_address():
    # The origin's daemon heard at its IPv6 link-local address (LSD) is still the
    # origin once its peer id has been seen at an origin address.
    m = Metrics(["10.0.0.1"])
    assert m.source_of(("fe80::1", 6881), b"O" * 20) == "peer"   # not known yet
    assert m.source_of(("10.0.0.1", 6881), b"O" * 20) == "origin"
    assert m.source_of(("fe80::1", 6881), b"O" * 20) == "origin"
    assert m.source_of(("fe80::2", 6881), b"N" * 20) == "peer"
    assert m.source_of(("fe80::1", 6881)) == "peer"  # no peer id: by address only


# -- live, with fake peers ---------------------------------------------------------------

async def test_bytes_by_source_add_up_to_what_was_read(make_swarm, autojump_clock):
    """Two fake peers, one at the --origin address: every byte read came from one
    of them, counted once, under the right source; the status has the same figures."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, origins=("fake1",))
        t = s.torrent
        origin, peer = s.add(Behaviour(delay=0.01)), s.add(Behaviour(delay=0.01))
        data = b"".join([await t.read(0, off, 4 * PIECE)
                         for off in range(0, len(s.payload), 4 * PIECE)])
        assert data == s.payload
        f = figures(t)
        got = f["received"]
        assert set(got) == set(SOURCES) and got["webseed"] == 0
        assert sum(got.values()) == t.downloaded == len(s.payload)
        assert got["origin"] > 0 and got["peer"] > 0
        # The fake peers say what they sent; what we took from each is no more.
        assert got["origin"] <= origin.sent_bytes and got["peer"] <= peer.sent_bytes
        assert f["pieces"] == {"passed": 11, "failed": 0, "have": 11, "total": 11}
        assert f["peers"] == 2 and f["reads_waiting"] == 0 and f["sent"] == 0
        assert f["size"] == len(s.payload)
        assert f["read_seconds"]["count"] == 3
        st = t.status()
        assert st["metrics"] == f
        assert json.loads(json.dumps(st, allow_nan=False)) == st
        text = render_text(document([st], "/mnt/x"))
        assert (f"  received:   {human(got['origin'])} from the origin, 0 B from web seeds, "
                f"{human(got['peer'])} from peers; 11 pieces passed the hash check, 0 "
                "failed") in text.splitlines()
        n.cancel_scope.cancel()


async def test_web_seed_bytes_count_as_webseed(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        seed = MockSeed({}, SeedBehaviour(delay=0.01))
        s = await start(n, make_swarm, web_seeds=["http://seed.test/files/"],
                        http_transport=seed.transport)
        seed.files.update(files_of(s.meta, s.payload, "/files/"))
        assert await s.torrent.read(0, 0, 3 * PIECE) == s.payload[:3 * PIECE]
        got = figures(s.torrent)["received"]
        assert got == {"peer": 0, "webseed": s.torrent.downloaded, "origin": 0}
        assert got["webseed"] >= 3 * PIECE
        n.cancel_scope.cancel()


async def test_failed_pieces_are_counted(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, read_timeout=30)
        s.add(Behaviour(corrupt=set(range(11))))
        with pytest.raises(ReadTimeout):
            await s.torrent.read(0, 0, PIECE)
        f = figures(s.torrent)
        assert f["pieces"]["failed"] >= 1 and f["pieces"]["passed"] == 0
        # Their bytes were received all the same (and are in the totals).
        assert f["received"]["peer"] == s.torrent.downloaded > 0
        s.add()
        assert await s.torrent.read(0, 0, PIECE) == s.payload[:PIECE]
        assert figures(s.torrent)["pieces"]["passed"] == 1
        n.cancel_scope.cancel()


async def test_read_latency_is_the_time_a_read_waits(make_swarm, autojump_clock):
    """A read that waits 2 s for a slow peer lands in the bucket up to 2.5 s; one
    served from what is verified already, in the first."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm)
        t = s.torrent
        s.add(Behaviour(delay=2.0))
        await trio.sleep(1)
        n.start_soon(t.read, 0, 0, 10)
        await trio.sleep(0.5)
        assert figures(t)["reads_waiting"] == 1
        await trio.sleep(5)
        await t.read(0, 0, 10)  # verified now: at once
        r = figures(t)["read_seconds"]
        assert r["count"] == 2
        up_to = dict(zip(r["le"], r["counts"]))
        assert up_to[READ_BUCKETS[0]] == 1      # the second read
        assert up_to[1.0] == 1 and up_to[2.5] == 2  # the first took 1 to 2.5 s
        assert 1.0 < r["sum"] < 2.5
        assert figures(t)["reads_waiting"] == 0
        n.cancel_scope.cancel()


# -- the Prometheus side -----------------------------------------------------------------

FIGS = {"received": {"peer": 5, "webseed": 7, "origin": 11}, "sent": 13, "wasted": 2,
        "size": 1000,
        "pieces": {"passed": 3, "failed": 1, "have": 4, "total": 9},
        "peers": 6, "reads_waiting": 1,
        "read_seconds": {"le": [0.1, 1.0], "counts": [2, 3], "count": 4, "sum": 7.5}}


def scrape(collector) -> dict:
    """{sample name: {labels as a sorted tuple: value}} of a collector's text."""
    reg = CollectorRegistry()
    reg.register(collector)
    text = generate_latest(reg).decode()
    out: dict = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def test_collector_text_has_every_figure_per_torrent():
    two = [("aa" * 20, "one", FIGS),
           ("bb" * 20, 'two "quoted"\nname', {**FIGS, "peers": 0})]
    got = scrape(TorrentCollector(lambda: two))
    one = (("infohash", "aa" * 20), ("name", "one"))
    assert got["torrentfs_received_bytes_total"][(*one, ("source", "origin"))] == 11
    assert got["torrentfs_received_bytes_total"][(*one, ("source", "webseed"))] == 7
    assert got["torrentfs_received_bytes_total"][(*one, ("source", "peer"))] == 5
    assert got["torrentfs_sent_bytes_total"][one] == 13
    assert got["torrentfs_wasted_bytes_total"][one] == 2
    assert got["torrentfs_size_bytes"][one] == 1000
    assert got["torrentfs_pieces_verified_total"][one] == 3
    assert got["torrentfs_pieces_failed_total"][one] == 1
    assert got["torrentfs_pieces_have"][one] == 4
    assert got["torrentfs_pieces"][one] == 9
    assert got["torrentfs_peers"][one] == 6
    assert got["torrentfs_reads_waiting"][one] == 1
    buckets = got["torrentfs_read_seconds_bucket"]
    def le(bound: str) -> tuple:
        return tuple(sorted((*one, ("le", bound))))
    assert buckets[le("0.1")] == 2 and buckets[le("1.0")] == 3
    assert buckets[le("+Inf")] == 4
    assert got["torrentfs_read_seconds_count"][one] == 4
    assert got["torrentfs_read_seconds_sum"][one] == 7.5
    # A name with quotes and a newline survives the format's escaping.
    two_ids = (("infohash", "bb" * 20), ("name", 'two "quoted"\nname'))
    assert got["torrentfs_peers"][two_ids] == 0


def test_no_torrent_yet_is_an_empty_scrape_not_an_error():
    got = scrape(TorrentCollector(lambda: []))
    assert not any(name.startswith("torrentfs_") for name in got)


async def test_registry_of_live_torrents_has_the_process_too(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm)
        s.add()
        await s.torrent.read(0, 0, 100)
        text = generate_latest(registry(lambda: [s.torrent])).decode()
        ids = f'infohash="{s.meta.info_hash.hex()}",name="{s.meta.name}"'
        assert f'torrentfs_received_bytes_total{{{ids},source="peer"}} {float(PIECE)}' in text
        assert f"torrentfs_pieces_have{{{ids}}} 1.0" in text
        assert "process_cpu_seconds_total" in text and "python_info" in text
        n.cancel_scope.cancel()
