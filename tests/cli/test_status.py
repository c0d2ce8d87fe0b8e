"""cli/status.py: what the text view says of the states a daemon can be in beyond a
plain mount (seeding after its unmount, stopped, fetching metadata, a watch mount
with skipped files), and ``load`` finding a daemon through the registry."""

from __future__ import annotations

import json
import os

import pytest

from tests.engine.test_status import sample_torrent
from torrentfs.cli.output import CliError
from torrentfs.cli.registry import Registration
from torrentfs.cli.status import load, render_text
from torrentfs.engine.status import document


def test_a_daemon_seeding_after_its_unmount_says_so():
    doc = document([sample_torrent()], "/mnt/x", 77, updated=1000.0)
    doc["state"] = "seeding after unmount"
    text = render_text(doc, now=1000.5)
    assert text.splitlines()[0] == ("/mnt/x: seeding after unmount (pid 77; "
                                    "torrentfs stop 77 ends it)")


def test_a_stopped_daemon_says_so_instead_of_busy():
    doc = document([sample_torrent()], "/mnt/x", 77, updated=1000.0)
    doc["stopped"] = True
    text = render_text(doc, now=1030.0)
    assert text.splitlines()[0] == ("(the daemon, pid 77, is stopped (SIGSTOP): this "
                                    "status is 30 s old)")
    assert "busy or stuck" not in text


def test_a_watch_mount_lists_its_torrents_fetches_and_skips():
    doc = document([sample_torrent(folder="payload", file="p.torrent")], "/mnt/w", 5,
                   updated=1000.0)
    doc.update(state="mounted", watched="/srv/in", fetching=["late.magnet"],
               skipped=[{"file": "bad.torrent", "why": "not a torrent file"}])
    lines = render_text(doc, now=1000.0).splitlines()
    assert lines[0] == "/mnt/w: watching /srv/in (1 torrents shown)"
    assert lines[1] == "/mnt/w/payload: payload\\x1b[2J"  # printable()
    assert lines[-2:] == ["fetching metadata: late.magnet",
                          "skipped: bad.torrent: not a torrent file"]


def test_load_finds_the_status_through_the_registry(tmp_path, monkeypatch):
    """Whatever the cache folder: the registry names the status file; a path in a
    watch mount gives its one torrent; a daemon still fetching has a status too."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    status = tmp_path / "elsewhere" / "w.status.json"
    status.parent.mkdir()
    doc = document([sample_torrent(folder="a"), sample_torrent(folder="b")], "/mnt/w")
    doc.update(skipped=[{"file": "c.torrent", "why": "bad"}])
    status.write_text(json.dumps(doc))
    reg = Registration(kind="watch", state="mounted", mountpoint="/mnt/w",
                       status=str(status))
    try:
        assert len(load("/mnt/w", tmp_path / "not-this-cache")["torrents"]) == 2
        one = load("/mnt/w/b/some/file", tmp_path / "x")
        assert [t["folder"] for t in one["torrents"]] == ["b"] and one["skipped"] == []
        with pytest.raises(CliError, match="no torrent of the watch mount /mnt/w"):
            load("/mnt/w/zzz", tmp_path)
        reg.update(kind="mount", mountpoint="/mnt/m", state="fetching metadata",
                   info_hash="cd" * 20, status=str(tmp_path / "none-yet.json"))
        fetching = load("/mnt/m", tmp_path)
        assert fetching["pid"] == os.getpid() and fetching["torrents"] == []
        assert "not mounted yet: fetching the metadata of " + "cd" * 20 in \
            render_text(fetching)
    finally:
        reg.remove()
    with pytest.raises(CliError, match="no torrentfs mount there"):
        load("/mnt/m", tmp_path)


def test_the_live_view_shows_states_and_skips_too():
    from rich.console import Console

    from torrentfs.cli.status import render_rich
    doc = document([sample_torrent()], "/mnt/w", 5, updated=1000.0)
    doc.update(state="seeding after unmount", stopped=True, fetching=["late.magnet"],
               skipped=[{"file": "bad.torrent", "why": "not a torrent file"}])
    console = Console(width=80, record=True, file=open(os.devnull, "w"))
    console.print(render_rich(doc, now=1000.0))
    text = console.export_text()
    for needle in ("the daemon (pid 5) is stopped (SIGSTOP)",
                   "/mnt/w: seeding after unmount", "fetching metadata: late.magnet",
                   "skipped bad.torrent: not a torrent file"):
        assert needle in text, text
