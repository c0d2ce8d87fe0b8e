"""The status snapshot (``Torrent.status``) on the autojump clock with fake peers,
its arithmetic, the status file, and ``torrentfs status``'s renderings and errors
(no mount: the live ones are in test_status_mount.py)."""

from __future__ import annotations

import io
import json
import os
import stat
from functools import partial
from types import SimpleNamespace

import pytest
import trio

from tests.harness.fakepeer import Behaviour, inline, start
from torrentfs.cli.main import main
from torrentfs.cli.output import CliError
from torrentfs.cli.state import mount_state_file
from torrentfs.cli.status import load, render_rich, render_text
from torrentfs.core.bitfield import Bitfield
from torrentfs.core.geometry import Geometry
from torrentfs.core.tree import Tree
from torrentfs.engine.status import (
    client_name,
    document,
    node_facts,
    publish,
    publish_now,
    status_path,
)

PIECE = 32768


def test_client_name_is_tame_whatever_the_peer_id():
    assert client_name(b"-lt2080-" + b"x" * 12) == "lt 2080"
    assert client_name(b"-\x1b[31mX-" + b"x" * 12) == "?? 31mX"  # no escape reaches a terminal
    assert client_name(b"M7-4-0--" + b"\n" * 12) == "M7?4?0??"
    assert client_name(None) == ""


# -- the snapshot, live ------------------------------------------------------------------

async def test_snapshot_of_a_fresh_torrent(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm)
        st = s.torrent.status()
        assert json.loads(json.dumps(st)) == st  # plain data
        assert st["info_hash"] == s.meta.info_hash.hex()
        assert (st["size"], st["verified"]) == (len(s.payload), 0)
        assert st["pieces"] == {"total": 11, "verified": 0, "length": PIECE}
        assert st["peers"]["connected"] == 0 and st["peers"]["list"] == []
        assert st["reads"] == [] and not st["complete"] and not st["prefetch"]
        assert st["files"] == [{"path": s.meta.name, "size": len(s.payload), "verified": 0}]
        assert os.path.isabs(st["cache"]["folder"])
        assert st["cache"] == {"folder": st["cache"]["folder"], "bytes": 0, "limit": None,
                               "limit_from": None, "disk_full": {"count": 0, "last": None}}
        n.cancel_scope.cancel()


async def test_snapshot_after_reads_from_two_peers(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm, cache_size=8 * PIECE)
        s.add(), s.add()
        t = s.torrent
        assert await t.read(0, 3 * PIECE + 5, 100) == s.payload[3 * PIECE + 5:3 * PIECE + 105]
        assert await t.read(0, 10 * PIECE, 100) == s.payload[10 * PIECE:]  # the short one
        st = t.status()
        assert st["verified"] == PIECE + 100
        assert st["pieces"]["verified"] == 2
        assert st["files"][0]["verified"] == PIECE + 100
        assert st["cache"]["bytes"] == PIECE + 100 and st["cache"]["limit"] == 8 * PIECE
        peers = st["peers"]
        assert (peers["connected"], peers["unchoked_us"], peers["we_unchoked"]) == (2, 2, 0)
        assert sorted(p["address"] for p in peers["list"]) == ["fake1:6881", "fake2:6881"]
        assert {p["client"] for p in peers["list"]} == {"FK 0001"}
        assert sum(p["downloaded"] for p in peers["list"]) >= PIECE + 100
        assert st["totals"]["downloaded"] == PIECE + 100
        assert st["rates"]["download"] > 0
        assert st["reads"] == []
        n.cancel_scope.cancel()


async def test_snapshot_shows_what_a_read_waits_for(make_swarm, autojump_clock):
    """A read stuck on a peer that never answers: its pieces, for how long, and why;
    gone from the snapshot once the read gives up."""
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm)
        t = s.torrent
        s.add(Behaviour(answer=False))
        await trio.sleep(0.5)
        with trio.CancelScope() as reader:
            n.start_soon(lambda: t.read(0, PIECE - 10, 20))  # pieces 0 and 1
            await trio.sleep(5)
            [read] = t.status()["reads"]
            assert read["pieces"] == [0, 1]
            assert read["waiting"] == pytest.approx(5, abs=0.01)
            assert read["why"] == "1 of 1 peers connected have it, 1 of them unchoked us"
            reader.cancel()
        n.cancel_scope.cancel()
    assert t.status()["reads"] == []


async def test_node_facts_on_the_root_and_a_file(make_swarm, autojump_clock):
    async with trio.open_nursery() as n:
        s = await start(n, make_swarm)
        t = s.torrent
        tree = Tree.from_metainfo(s.meta)
        s.add()
        await t.read(0, 0, 1)
        size = len(s.payload)
        root = node_facts(t, tree, tree.root)
        assert root["infohash"] == s.meta.info_hash.hex()
        assert root["progress"] == f"{PIECE}/{size}" and root["verified"] == str(PIECE)
        assert root["pieces"] == "1/11"
        assert (root["peers"], root["peers_unchoked_us"], root["peers_we_unchoked"]) == \
            ("1", "1", "0")
        assert root["reads_waiting"] == "0"
        [file_node] = tree.children(tree.root.inode)
        assert node_facts(t, tree, file_node) == {"progress": f"{PIECE}/{size}",
                                                   "verified": str(PIECE), "pieces": "1/11"}
        n.cancel_scope.cancel()


def test_node_facts_of_folders_sum_their_files():
    g = Geometry(64, (50, 0, 130, 20))
    have = Bitfield(g.num_pieces)
    have.add(1)
    have.add(3)
    tree = Tree([(("top", "a"), 50, 0, False), (("top", "sub", "empty"), 0, 1, False),
                 (("top", "sub", "b"), 130, 2, False), (("top", "c"), 20, 3, False)])
    torrent = SimpleNamespace(geometry=g, have=have)
    top = tree.lookup(tree.root.inode, "top")
    sub = tree.lookup(top.inode, "sub")
    assert node_facts(torrent, tree, sub) == {"progress": "64/130", "verified": "64",
                                              "pieces": "1/3"}
    assert node_facts(torrent, tree, top) == {"progress": "72/200", "verified": "72",
                                              "pieces": "2/4"}
    assert node_facts(torrent, tree, tree.lookup(top.inode, "a"))["progress"] == "0/50"


# -- the status file -------------------------------------------------------------------

async def test_publish_writes_the_file_every_second_and_removes_it(tmp_path,
                                                                   autojump_clock):
    calls = []
    torrent = SimpleNamespace(status=lambda: calls.append(1) or {"n": len(calls)})
    path = tmp_path / "x.status.json"
    async with trio.open_nursery() as n:
        n.start_soon(partial(publish, lambda: [torrent], path, "/mnt/x", offload=inline))
        await trio.sleep(2.5)
        doc = json.loads(path.read_bytes())
        assert doc["schema"] == 1 and doc["mountpoint"] == "/mnt/x"
        assert doc["pid"] == os.getpid()
        assert doc["torrents"] == [{"n": 3}]  # at 0, 1 and 2 s
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left
        n.cancel_scope.cancel()
    assert not path.exists()


def test_publish_now_writes_the_state_at_once_between_the_ticks(tmp_path):
    # `torrentfs status` must say "seeding after unmount" as soon as `torrentfs
    # list` does, not up to a second later.
    torrent = SimpleNamespace(status=lambda: {"n": 1})
    path = tmp_path / "x.status.json"
    publish_now(lambda: [torrent], path, "/mnt/x", extra=lambda: {"state": "seeding"})
    doc = json.loads(path.read_bytes())
    assert (doc["state"], doc["torrents"], doc["mountpoint"]) == ("seeding", [{"n": 1}],
                                                                  "/mnt/x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_status_path_sits_beside_the_mount_state_file(tmp_path):
    state = mount_state_file(tmp_path, "/mnt/x")
    assert status_path(state).parent == state.parent
    assert status_path(state).name.endswith(".status.json")


def write_status(cache, mountpoint, torrents, pid=None, updated=None):
    path = status_path(mount_state_file(cache, str(mountpoint)))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document(torrents, str(mountpoint), pid, updated)))
    return path


def sample_torrent(**kw) -> dict:
    t = {
        "name": "payload\x1b[2J", "info_hash": "ab" * 20, "size": 3 << 20,
        "verified": 1 << 20, "pieces": {"total": 12, "verified": 4, "length": 262144},
        "complete": False, "prefetch": True, "seeding": False,
        "peers": {"connected": 2, "unchoked_us": 1, "we_unchoked": 1, "interested": 1,
                  "known": 5, "banned": 0,
                  "list": [{"address": "127.0.0.2:6881", "client": "LT 2080",
                            "outgoing": True, "unchoked_us": True, "we_unchoked": False,
                            "interested": False, "snubbed": False,
                            "download_rate": 2048.0, "upload_rate": 0.0,
                            "downloaded": 1 << 20, "uploaded": 0}]},
        "rates": {"download": 2048.0, "upload": 512.0},
        "totals": {"downloaded": 1 << 20, "uploaded": 4096, "wasted": 0},
        "reads": [{"pieces": [4, 5, 6, 9], "waiting": 2.5,
                   "why": "1 of 2 peers connected have it, 1 of them unchoked us"}],
        "cache": {"folder": "/c/abab", "bytes": 1 << 20, "limit": None},
        "files": [{"path": "payload/big.bin", "size": 3 << 20, "verified": 1 << 20},
                  {"path": "payload/new\nline", "size": 0, "verified": 0}]}
    t.update(kw)
    return t


def test_render_text_says_it_all_on_plain_lines():
    doc = document([sample_torrent()], "/mnt/x", 1, updated=1000.0)
    text = render_text(doc, now=1000.5)
    assert "\x1b" not in text and "new\\nline" in text  # names cannot drive the terminal
    assert "/mnt/x: payload\\x1b[2J" in text
    assert "1.0 MiB of 3.0 MiB verified (33.3%), 4 of 12 pieces of 256.0 KiB" in text
    assert "prefetching the rest" in text
    assert "2 connected, 1 unchoked us, 1 unchoked by us (5 known, 0 banned)" in text
    assert "down 2.0 KiB/s, up 512 B/s" in text
    assert "pieces 4-6, 9 for 2.5 s: 1 of 2 peers connected have it" in text
    assert "/c/abab (1.0 MiB of data)" in text
    assert " 33.3%" in text and "payload/big.bin" in text
    assert "old" not in text
    assert "status is 20 s old" in render_text(doc, now=1020.0)


def test_render_rich_shows_bars_files_and_peers():
    from rich.console import Console
    out = io.StringIO()
    Console(file=out, width=120, color_system=None).print(
        render_rich(document([sample_torrent()], "/mnt/x", 1, updated=1000.0), now=1000.0))
    text = out.getvalue()
    assert "\x1b[2J" not in text and "payload/big.bin" in text
    assert "1.0 MiB / 3.0 MiB 33.3%" in text
    assert "2 (1 unchoked us, 1 unchoked by us)" in text
    assert "127.0.0.2:6881" in text and "LT 2080" in text
    assert "read waiting 2.5 s for pieces 4-6, 9" in text
    assert "━" in text  # a bar


# -- the command, without a mount --------------------------------------------------------

def test_status_of_a_non_mount_is_one_line(tmp_path, capsys):
    assert main(["status", str(tmp_path), "--cache-dir", str(tmp_path / "c")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no torrentfs mount there" in err


def test_status_of_a_dead_daemon_says_so(tmp_path):
    import subprocess
    import sys
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    write_status(tmp_path, tmp_path / "mnt", [sample_torrent()], pid=p.pid)
    with pytest.raises(CliError, match=r"its daemon \(pid \d+\) is gone"):
        load(str(tmp_path / "mnt"), tmp_path)


def test_status_of_a_garbled_file_is_one_line(tmp_path):
    path = write_status(tmp_path, tmp_path / "mnt", [])
    path.write_text("{nope")
    with pytest.raises(CliError, match="cannot read its status"):
        load(str(tmp_path / "mnt"), tmp_path)
    path.write_text("[1, 2]")
    with pytest.raises(CliError, match="not one torrentfs wrote"):
        load(str(tmp_path / "mnt"), tmp_path)


def test_status_json_and_text_of_a_live_daemon(tmp_path, capsys):
    write_status(tmp_path, tmp_path / "mnt", [sample_torrent()])  # our pid: alive
    assert main(["status", str(tmp_path / "mnt"), "--cache-dir", str(tmp_path),
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["torrents"] == [sample_torrent()]
    assert main(["status", str(tmp_path / "mnt"), "--cache-dir", str(tmp_path)]) == 0
    assert "4 of 12 pieces" in capsys.readouterr().out


def test_json_and_watch_do_not_mix(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["status", str(tmp_path), "--json", "--watch"])
    assert "not allowed with" in capsys.readouterr().err
