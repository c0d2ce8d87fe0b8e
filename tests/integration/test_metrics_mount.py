"""Integration: ``--metrics`` on a live mount. Two libtorrent seeders (one named with
``--origin``) and a web seed serve a mount; the whole file is read, then
``/metrics`` is scraped with an HTTP client: the bytes received by source (origin,
web seed, peer) add up to what was read, and ``torrentfs status --json`` has the
same figures. Also a ``mount --watch`` scraped per torrent. Every mount is
unmounted by the fixture."""

from __future__ import annotations

import json
import random
import subprocess

import pytest

from tests.harness.command import TORRENTFS
from tests.harness.metrics import by_source, scrape
from tests.harness.swarm import free_port, lt_create, lt_seeder, wait_until
from tests.harness.webseeds import files_on_disk, range_server
from torrentfs.core.metainfo import parse
from torrentfs.fs.fuse import KERNEL_READAHEAD_KIB

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SIZE = 6 * 1024 * 1024 + 4321
PIECE = 64 * 1024
ORIGIN_IP, PEER_IP, WEB_IP = "127.0.16.1", "127.0.16.2", "127.0.16.3"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A file, its torrent (no tracker, no url-list), a libtorrent origin, a
    libtorrent peer and a web seed of it."""
    base = tmp_path_factory.mktemp("metrics")
    data = base / "data"
    data.mkdir()
    payload = data / "blob.bin"
    payload.write_bytes(random.Random(1616).randbytes(SIZE))
    torrent = base / "blob.torrent"
    lt_create(payload, torrent, None, piece_size=PIECE)
    meta = parse(torrent.read_bytes())
    with lt_seeder(torrent, data, ip=ORIGIN_IP, workdir=base) as origin, \
            lt_seeder(torrent, data, ip=PEER_IP, workdir=base) as peer, \
            range_server(files_on_disk(meta, data, "/seed/"), host=WEB_IP) as web:
        yield {"payload": payload, "torrent": torrent, "meta": meta, "origin": origin,
               "peer": peer, "web": web.url + "seed/", "base": base}


def status_json(m) -> dict:
    r = subprocess.run([TORRENTFS, "status", str(m.path), "--cache-dir", str(m.cache),
                        "--json"], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_bytes_by_source_add_up_to_what_was_read(served, mount_torrent):
    meta, info_hash = served["meta"], served["meta"].info_hash.hex()
    port = free_port()
    o, p = served["origin"], served["peer"]
    m = mount_torrent(served["torrent"], "--origin", f"{o.ip}:{o.port}",
                      "--peer", p.endpoint, "--web-seed", served["web"],
                      "--metrics", f"127.0.0.1:{port}")
    assert (m.path / meta.name).read_bytes() == served["payload"].read_bytes()

    got = scrape("127.0.0.1", port)
    ids = (("infohash", info_hash), ("name", meta.name))
    sources = by_source(got, info_hash)
    assert set(sources) == {"origin", "webseed", "peer"}
    assert sum(sources.values()) == SIZE, (sources, m.log[-3000:])
    n_pieces = -(-SIZE // PIECE)
    assert got["torrentfs_pieces_verified_total"][ids] == n_pieces
    assert got["torrentfs_pieces_failed_total"][ids] == 0
    assert got["torrentfs_pieces_have"][ids] == got["torrentfs_pieces"][ids] == n_pieces
    assert got["torrentfs_reads_waiting"][ids] == 0
    # Every FUSE read is timed: the kernel asks for at most its readahead at a time
    # (raised to KERNEL_READAHEAD_KIB at init; it was 128 KiB when this was written).
    assert got["torrentfs_read_seconds_count"][ids] >= SIZE // (KERNEL_READAHEAD_KIB << 10)
    assert got["torrentfs_read_seconds_sum"][ids] > 0
    assert ids in got["torrentfs_peers"]  # 0 by now: libtorrent drops a seed once we are one
    assert got["process_resident_memory_bytes"][()] > 0
    # A peer at the --origin address counts as the origin, the others as peers: the
    # origin and the peer (both libtorrent seeders, both unchoking us) each sent some.
    assert sources["origin"] > 0 and sources["peer"] > 0, sources

    # status --json: the same figures (published once a second).
    def settled():
        doc = status_json(m)
        t = doc["torrents"][0]
        return t if t["metrics"]["pieces"]["passed"] == n_pieces else None

    t = wait_until(settled, timeout=15)
    f = t["metrics"]
    assert f["received"] == sources
    assert sum(f["received"].values()) == t["totals"]["downloaded"] == SIZE
    assert f["pieces"] == {"passed": n_pieces, "failed": 0, "have": n_pieces,
                           "total": n_pieces}
    assert f["read_seconds"]["count"] >= got["torrentfs_read_seconds_count"][ids]
    assert "metrics on http://127.0.0.1:" in m.log


def test_a_watch_mount_has_metrics_per_torrent(served, mount_torrent, tmp_path):
    folder = tmp_path / "watched"
    folder.mkdir()
    (folder / "blob.torrent").write_bytes(served["torrent"].read_bytes())
    meta, info_hash = served["meta"], served["meta"].info_hash.hex()
    port = free_port()
    m = mount_torrent(folder, "--peer", served["peer"].endpoint,
                      "--metrics", f"127.0.0.1:{port}", watch=True)
    file = m.path / meta.name / meta.name  # a single-file torrent: a folder holding it
    wait_until(file.exists, timeout=30)
    with open(file, "rb") as f:
        f.seek(PIECE * 10)
        assert f.read(PIECE) == served["payload"].read_bytes()[PIECE * 10:PIECE * 11]
    got = scrape("127.0.0.1", port)
    sources = by_source(got, info_hash)
    # At least the piece read, all from the one peer; readahead may have fetched more.
    assert PIECE <= sources["peer"] <= SIZE and sources["origin"] == sources["webseed"] == 0
    ids = (("infohash", info_hash), ("name", meta.name))
    assert got["torrentfs_pieces_verified_total"][ids] >= 1
    assert got["torrentfs_read_seconds_count"][ids] >= 1
