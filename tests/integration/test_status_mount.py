"""Integration: ``torrentfs status`` (text, --json, --watch), the user.torrentfs.*
extended attributes (read with getfattr) and ``du`` on a live mount served by a
libtorrent seeder. Every mount is unmounted by the fixture."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.harness.command import TORRENTFS, plain, run_on_pty
from tests.harness.payload import make_payload
from tests.harness.swarm import lt_create, lt_seeder, wait_until
from torrentfs.core.bitfield import Bitfield
from torrentfs.core.geometry import Geometry
from torrentfs.core.metainfo import parse

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

BIG = 6 * 1024 * 1024 + 12345
PIECE = 256 * 1024


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """A payload, its torrent (no tracker) and a libtorrent seeder of it."""
    base = tmp_path_factory.mktemp("status")
    payload = make_payload(base / "data" / "payload", BIG, seed=11)
    torrent = base / "payload.torrent"
    lt_create(payload, torrent, None, piece_size=PIECE)
    with lt_seeder(torrent, base / "data", ip="127.0.0.71") as seeder:
        yield {"payload": payload, "torrent": torrent, "seeder": seeder,
               "meta": parse(torrent.read_bytes())}


def status_json(m) -> dict:
    r = subprocess.run([TORRENTFS, "status", str(m.path), "--cache-dir", str(m.cache),
                        "--json"], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def getfattr(path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["getfattr", *args, str(path)], capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)


def xattr(path, name: str) -> str:
    r = getfattr(path, "-n", f"user.torrentfs.{name}", "--only-values")
    assert r.returncode == 0, r.stderr
    return r.stdout


def du(path) -> int:
    r = subprocess.run(["du", "--block-size=1", str(path)], capture_output=True, text=True,
                       timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    return int(r.stdout.split()[0])


def test_status_after_a_read_shows_its_piece_and_the_peer(seeded, mount_torrent):
    """A read of a small file fetches exactly the one piece it lies in; the
    status (JSON, text) and the xattrs say so, and name the seeder."""
    meta = seeded["meta"]
    m = mount_torrent(seeded["torrent"], "--peer", seeded["seeder"].endpoint)
    small = m.path / "payload" / "z-small.bin"
    assert small.read_bytes() == (seeded["payload"] / "z-small.bin").read_bytes()
    g = Geometry(meta.piece_length, tuple(f.length for f in meta.files))
    index = {"/".join((meta.name, *f.path)): i for i, f in enumerate(meta.files)}
    [piece] = g.file_pieces(index["payload/z-small.bin"])  # all that was fetched
    fetched = Bitfield(g.num_pieces)
    fetched.add(piece)

    def settled():
        doc = status_json(m)
        return doc if doc["torrents"][0]["pieces"]["verified"] else None

    doc = wait_until(settled, 20, 0.2, "the status shows the piece")  # published every second
    [t] = doc["torrents"]
    assert doc["schema"] == 1 and doc["mountpoint"] == str(m.path) and doc["pid"] == m.pid()
    assert t["info_hash"] == meta.info_hash.hex() and t["name"] == "payload"
    assert t["pieces"] == {"total": g.num_pieces, "verified": 1, "length": PIECE}
    assert t["verified"] == g.piece_size(piece)
    files = {f["path"]: f for f in t["files"]}
    assert files["payload/z-small.bin"] == {"path": "payload/z-small.bin", "size": 777,
                                            "verified": 777}
    for path, f in files.items():  # the piece's share of every other file
        assert f["verified"] == g.file_verified(fetched, index[path]), path
    assert t["peers"]["connected"] == 1
    [peer] = t["peers"]["list"]
    assert peer["address"] == seeded["seeder"].endpoint
    assert peer["client"].startswith("LT ") and peer["downloaded"] >= t["verified"]
    assert t["totals"]["downloaded"] >= t["verified"]
    assert t["reads"] == [] and t["cache"]["folder"] == str(m.folder)
    assert t["cache"]["bytes"] == t["verified"]

    r = subprocess.run([TORRENTFS, "status", str(m.path), "--cache-dir", str(m.cache)],
                       capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stderr
    assert f"1 of {g.num_pieces} pieces" in r.stdout and "1 connected" in r.stdout
    assert "100.0%" in r.stdout and "payload/z-small.bin" in r.stdout

    # The same facts as extended attributes.
    assert xattr(small, "progress") == "777/777"
    assert xattr(m.path, "infohash") == meta.info_hash.hex()
    assert xattr(m.path, "progress") == f"{t['verified']}/{g.total_length}"
    assert xattr(m.path, "peers") == "1"
    dump = getfattr(m.path / "payload" / "big.bin", "-d")
    assert dump.returncode == 0 and f'user.torrentfs.progress="0/{BIG}"' in dump.stdout
    listing = getfattr(m.path, "-d").stdout
    for name in ("infohash", "name", "progress", "verified", "pieces", "peers",
                 "peers_unchoked_us", "peers_we_unchoked", "download_rate"):
        assert f"user.torrentfs.{name}=" in listing, name
    r = getfattr(small, "-n", "user.torrentfs.nonesuch")
    assert r.returncode != 0 and "No such attribute" in r.stderr


def test_du_follows_a_partly_read_file(seeded, mount_torrent):
    """st_blocks counts the verified bytes: ``du`` of a file goes from 0 to what a
    read (and its readahead) fetched, not the whole file, even though the kernel had
    cached the file's attributes before the read."""
    m = mount_torrent(seeded["torrent"], "--peer", seeded["seeder"].endpoint)
    big = m.path / "payload" / "big.bin"
    assert du(big) == 0  # the kernel now holds big.bin's attributes
    r = subprocess.run(["dd", f"if={big}", "bs=4096", "count=1", "skip=300", "status=none"],
                       capture_output=True, timeout=60)
    assert r.stdout == (seeded["payload"] / "big.bin").read_bytes()[300 * 4096:301 * 4096]

    def consistent():
        before = du(big)
        verified = int(xattr(big, "verified"))
        after = du(big)
        return (before == after == -(-verified // 512) * 512) and verified

    verified = wait_until(consistent, 30, 0.2, "du agrees with the verified bytes")
    assert PIECE <= verified < BIG  # a part, not all


def test_watch_until_unmounted(seeded, mount_torrent):
    """--watch draws the live view on a terminal, and ends by itself once the mount
    goes away."""
    m = mount_torrent(seeded["torrent"], "--peer", seeded["seeder"].endpoint)
    (m.path / "payload" / "docs" / "readme.txt").read_bytes()
    import threading
    done = {}

    def watch():
        done["result"] = run_on_pty([TORRENTFS, "status", str(m.path), "--cache-dir",
                                     str(m.cache), "--watch"], timeout=60)

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        # Let it draw for a while: the status file keeps coming, once a second.
        wait_until(lambda: status_json(m)["updated"] > 0, 10, 0.2, "status")
        first = status_json(m)["updated"]
        wait_until(lambda: status_json(m)["updated"] >= first + 2, 10, 0.2, "two more updates")
    finally:
        r = m.unmount()
        thread.join(70)
    assert r.returncode == 0, r.stderr
    code, out = done["result"]
    text = plain(out)
    assert code == 0, text
    assert "payload/docs/readme.txt" in text and "verified" in text
    assert "unchoked us" in text and "━" in text
    assert text.rstrip().endswith(f"{m.path}: unmounted")


def test_getfattr_is_installed():
    assert shutil.which("getfattr"), "scripts/install installs attr (getfattr)"
