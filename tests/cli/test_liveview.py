"""``torrentfs status``'s renderings of what issue 12 added (trackers, a cache limit
from the free space, a full disk) and the live view at 80 columns: no line wraps,
long names lose their middle, never their end."""

from __future__ import annotations

import io

from tests.engine.test_status import sample_torrent
from torrentfs.cli.liveview import middle, short_path
from torrentfs.cli.status import render_rich, render_text
from torrentfs.engine.status import document

LONG_DIR = "Big.Buck.Bunny.2008.1080p.BluRay.x264-A_very_long_release_name_indeed"


def busy_torrent():
    t = sample_torrent(name=LONG_DIR + "-and-then-some")
    t["files"] = [
        {"path": f"{LONG_DIR}/{LONG_DIR}.mkv", "size": 900 << 20, "verified": 100 << 20},
        {"path": f"{LONG_DIR}/Subs/English.srt", "size": 90 << 10, "verified": 0}]
    t["trackers"] = [
        {"url": "http://tracker.example.org:6969/announce", "status": "error",
         "message": "tracker refused: unregistered torrent", "peers": 0, "at": 990.0,
         "warning": None},
        {"url": "udp://tracker.lan:6969", "status": "ok", "message": "", "peers": 7,
         "at": 940.0, "warning": None},
        {"url": "udp://other:1", "status": "not tried", "message": "", "peers": 0,
         "at": None, "warning": None}]
    t["cache"].update(limit=18 << 20, limit_from="free space",
                      disk_full={"count": 3, "last": 995.0})
    t["peers"]["list"][0].update(address="[2001:db8:1234:5678::1]:51413",
                                 client="qB 4520")
    return t


def draw(doc, width):
    from rich.console import Console
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(render_rich(doc, now=1000.0))
    return out.getvalue()


def test_live_view_fits_80_columns_and_keeps_name_ends():
    doc = document([busy_torrent()], "/home/someone/mnt/" + "m" * 70, 1, updated=1000.0)
    for width in (80, 100):
        text = draw(doc, width)
        lines = text.splitlines()
        assert max(map(len, lines)) <= width, text
        assert any(".mkv " in line for line in lines), text  # its end, not "…"
        assert any("English.srt " in line for line in lines), text
        assert "100.0 MiB / 900.0 MiB" in text  # the figures are never cut
        assert "1.0 MiB / 3.0 MiB 33.3%" in text
        assert "━" in text
        assert "trackers: 1 of 3 answering; tracker refused: unregistered torrent" in text
        assert "disk full: 3 writes failed" in text
        assert "[2001:db8:1234:5678::1]:51413" in text
    # one line per item: the header, the mountpoint, the bar, peers, trackers, ...
    assert len(draw(doc, 80).splitlines()) == len(draw(doc, 200).splitlines())


def test_text_status_shows_trackers_cache_limit_and_disk_full():
    text = render_text(document([busy_torrent()], "/mnt/x", 1, updated=1000.0), now=1000.0)
    assert ("    http://tracker.example.org:6969/announce: error (10 s ago): "
            "tracker refused: unregistered torrent") in text
    assert "    udp://tracker.lan:6969: ok, 7 peers (60 s ago)" in text
    assert "    udp://other:1: not tried yet" in text
    assert "limit 18.0 MiB (from the disk's free space)" in text
    assert "  disk full:  3 writes failed, last 5 s ago: free some space" in text
    none = render_text(document([sample_torrent(trackers=[])], "/mnt/x", 1,
                                updated=1000.0), now=1000.0)
    assert "trackers:   none" in none and "disk full" not in none


def test_middle_and_short_path():
    assert middle("abcdefghij", 5) == "ab…ij"
    assert middle("abc", 5) == "abc"
    assert short_path("a/b/c/name.mkv", 12) == "…/c/name.mkv"
    assert short_path("a/b/c/name.mkv", 11) == "…/name.mkv"
    assert short_path("dir/" + "n" * 30 + ".mkv", 12).endswith(".mkv")
    assert len(short_path("dir/" + "n" * 30 + ".mkv", 12)) == 12
