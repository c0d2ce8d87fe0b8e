"""Integration: MSE/PE (message stream encryption) against real peers nobody here
wrote. A libtorrent seeder and leecher that force encryption (RC4 only, plain
connections refused, in and out), and transmission-cli with encryption required
(-er), in both directions: every byte arrives, and the logs show RC4 was used. The
libtorrent ones over TCP and over uTP (TCP off at libtorrent)."""

from __future__ import annotations

import re

import pytest

from tests.harness.mounts import Seed
from tests.harness.netns import netns_host, transmission_download, transmission_seeder
from tests.harness.payload import cmp_tree, make_payload, same_tree
from tests.harness.swarm import free_port, lt_create, lt_leecher, lt_seeder, opentracker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PIECE = 64 * 1024


def _made(tmp_path, size, seed):
    """A payload of `size` bytes under tmp_path/data and its torrent (no tracker):
    (payload, torrent, info hash)."""
    payload = make_payload(tmp_path / "data" / "payload", size, seed=seed)
    torrent = tmp_path / "t.torrent"
    return payload, torrent, lt_create(payload, torrent, None, piece_size=PIECE)


@pytest.mark.parametrize("transport", ["tcp", "utp"])
@pytest.mark.parametrize("policy", ["prefer", "require"])
def test_mount_reads_from_a_forced_encryption_libtorrent_seeder(tmp_path, mount_torrent,
                                                                 policy, transport):
    """Over TCP, with the default policy the mount dials in plain text, is refused,
    and dials again encrypted at once; with --encryption require it dials encrypted.
    Over uTP (the seeder's TCP off, plain text refused) the mount reads everything
    over an encrypted uTP connection (cmp of every file)."""
    utp = transport == "utp"
    data = tmp_path / "data"
    payload, torrent, _ = _made(tmp_path, 2 * 1024 * 1024 + (9 if utp else 7),
                                156 if utp else 151)
    with lt_seeder(torrent, data, ip="127.0.0.156" if utp else "127.0.0.151",
                   encryption="forced", utp=utp, tcp=not utp) as origin:
        m = mount_torrent(torrent, "--peer", origin.endpoint, "--encryption", policy)
        if utp:
            cmp_tree(payload, m.path / "payload", m)
        else:
            same_tree(payload, m.path / "payload")
    assert f"encrypted connection to {origin.ip}:{origin.port} (RC4)" in m.log, m.log[-3000:]
    if utp:
        assert f"<peer {origin.ip}:{origin.port}> over uTP (outgoing)" in m.log, \
            m.log[-3000:]


@pytest.mark.parametrize("transport", ["tcp", "utp"])
@pytest.mark.parametrize("policy", ["prefer", "require"])
def test_forced_encryption_libtorrent_leeches_from_torrentfs_seed(tmp_path, policy,
                                                                   transport):
    """A libtorrent leecher forcing RC4 gets everything from `torrentfs seed`, over
    TCP or (its TCP off) over uTP."""
    utp = transport == "utp"
    data = tmp_path / "data"
    payload, torrent, _ = _made(tmp_path, 2 * 1024 * 1024 + (15 if utp else 13),
                                157 if utp else 152)
    ip = "127.0.0.157" if utp else "127.0.0.152"
    port = free_port()
    with Seed(torrent, data, tmp_path / "cache", port, "--encryption", policy) as seed:
        out = tmp_path / "out"
        r = lt_leecher(torrent, out, ip=ip, peers=[f"127.0.0.1:{port}"],
                       encryption="forced", utp=utp, tcp=not utp,
                       timeout=90 if utp else 60)
        assert r.returncode == 0, r.stderr + seed.log.read_text()[-3000:]
    same_tree(payload, out / "payload")
    log = seed.log.read_text()
    # Over TCP it dials from 127.0.0.1 (its --listen address binds only what it
    # accepts); over uTP it sends from its listen address, one UDP socket.
    source = re.escape(ip) if utp else r"127\.0\.0\.1"
    assert re.search(rf"encrypted connection from {source}:\d+ \(RC4\)", log), log[-3000:]
    if utp:
        assert re.search(rf"<peer {re.escape(ip)}:\d+> over uTP \(incoming\)", log), \
            log[-3000:]


def test_plain_libtorrent_refused_when_encryption_required(tmp_path):
    """--encryption require refuses a peer that speaks plain text only."""
    data = tmp_path / "data"
    payload, torrent, _ = _made(tmp_path, 300_000, 153)
    port = free_port()
    with Seed(torrent, data, tmp_path / "cache", port, "--encryption", "require",
              "--log-level", "debug") as seed:
        r = lt_leecher(torrent, tmp_path / "out", ip="127.0.0.153",
                       peers=[f"127.0.0.1:{port}"], timeout=8)
        assert r.returncode != 0
    assert "encryption is required" in seed.log.read_text()


def test_transmission_requiring_encryption_both_ways(tmp_path, mount_torrent):
    """transmission-cli with -er seeds to a mount, then (the mount gone) downloads
    from `torrentfs seed`, found through opentracker on the namespace's veth address."""
    data = tmp_path / "data"
    payload = make_payload(data / "payload", 2 * 1024 * 1024 + 3, seed=154)
    with netns_host() as host:
        with opentracker(host="127.0.0.1", extra_hosts=[host.host_ip]) as tracker:
            torrent = tmp_path / "t.torrent"
            tracker.add(lt_create(payload, torrent, tracker.announce_url_for(host.host_ip),
                                  piece_size=PIECE))
            # transmission seeds, the mount reads (peer given directly: no 127/8 issue)
            with transmission_seeder(torrent, data, host, encryption_required=True) as origin:
                m = mount_torrent(torrent, "--peer", origin.endpoint)
                same_tree(payload, m.path / "payload")
            assert f"encrypted connection to {origin.ip}:{origin.port} (RC4)" in m.log, \
                m.log[-3000:]
            assert m.unmount().returncode == 0  # the seed below is its only source
            # transmission downloads from `torrentfs seed`, found through the tracker
            with Seed(torrent, data, tmp_path / "cache", free_port()) as seed:
                out = tmp_path / "out"
                transmission_download(torrent, out, host, timeout=120,
                                      encryption_required=True)
            log = seed.log.read_text()  # with its totals line, written as it stopped
    same_tree(payload, out / "payload", empty_files=False)
    # Whichever dialed (the tracker told each of the other), RC4 carried the data.
    assert re.search(rf"encrypted connection (to|from) {re.escape(host.ns_ip)}:\d+ \(RC4\)",
                     log), log[-3000:]
    uploaded = int(re.search(r"totals: downloaded \d+ bytes, uploaded (\d+)", log).group(1))
    assert uploaded >= 2 * 1024 * 1024, log[-3000:]


def test_magnet_mount_from_a_forced_encryption_libtorrent_seeder(tmp_path, mount_torrent):
    """The metadata fetch dials again encrypted too, then the mount reads it all."""
    data = tmp_path / "data"
    payload, torrent, info_hash = _made(tmp_path, 1024 * 1024 + 5, 155)
    with lt_seeder(torrent, data, ip="127.0.0.155", encryption="forced") as origin:
        link = f"magnet:?xt=urn:btih:{info_hash.hex()}&x.pe={origin.endpoint}"
        m = mount_torrent(link)
        same_tree(payload, m.path / "payload")
    assert "metadata of" in m.log and \
        f"encrypted connection to {origin.ip}:{origin.port} (RC4)" in m.log, m.log[-3000:]
