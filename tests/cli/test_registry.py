"""The registry of running daemons (``cli.registry``): entries written, rewritten
and removed by their daemon, dead ones dropped, and found by pid, info-hash or
path (inside a watch mount too) without touching any mountpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from torrentfs.cli import registry
from torrentfs.cli.registry import Registration


def test_an_entry_lives_as_long_as_its_registration(tmp_path):
    reg = Registration(tmp_path, kind="mount", mountpoint="/mnt/x", info_hash="ab" * 20)
    [entry] = registry.entries(tmp_path)
    assert entry["pid"] == os.getpid() and entry["kind"] == "mount"
    assert entry["state"] == "starting" and entry["start"] is not None
    reg.update(state="mounted")
    assert registry.entries(tmp_path)[0]["state"] == "mounted"
    reg.remove()
    assert registry.entries(tmp_path) == []


def test_the_files_are_private(tmp_path):
    folder = tmp_path / "daemons"
    Registration(folder, kind="mount")
    assert folder.stat().st_mode & 0o777 == 0o700
    [f] = folder.iterdir()
    assert f.stat().st_mode & 0o777 == 0o600


def test_dead_and_reused_pids_are_dropped(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = int(proc.stdout)
    (tmp_path / f"{dead}.json").write_text(json.dumps({"pid": dead, "start": 1}))
    # Our own pid, but another start time: the pid was reused.
    (tmp_path / "1.json").write_text(json.dumps({"pid": os.getpid(), "start": -5}))
    (tmp_path / "2.json").write_text("not json")
    assert registry.entries(tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_a_missing_folder_is_no_daemons(tmp_path):
    assert registry.entries(tmp_path / "nothing") == []


@pytest.fixture
def three(tmp_path):
    """A mount, a watch mount and a daemon seeding after its unmount, all this
    process (the registry tells them apart by their files only)."""
    folder = tmp_path / "reg"
    folder.mkdir()
    me, start = os.getpid(), registry.process_start(os.getpid())
    entries = [
        {"pid": me, "start": start, "kind": "mount", "state": "mounted",
         "mountpoint": "/mnt/a", "info_hash": "ab" * 20, "started": 1},
        {"pid": me, "start": start, "kind": "watch", "state": "mounted",
         "mountpoint": "/mnt/w", "info_hash": None, "started": 2},
        {"pid": me, "start": start, "kind": "mount", "state": "seeding after unmount",
         "mountpoint": "/mnt/a", "info_hash": "cd" * 20, "started": 0},
    ]
    for i, e in enumerate(entries):
        (folder / f"{i + 10}.json").write_text(json.dumps(e))
    return folder


def test_find_by_info_hash_prefix_or_mountpoint(three):
    assert [e["info_hash"] for e in registry.find("abababab", three)] == ["ab" * 20]
    assert [e["info_hash"] for e in registry.find("CDCDCD", three)] == ["cd" * 20]
    assert {e["state"] for e in registry.find("/mnt/a", three)} == {
        "mounted", "seeding after unmount"}
    assert registry.find("/mnt/nothing", three) == []


def test_find_by_pid(tmp_path):
    Registration(tmp_path, kind="mount", mountpoint="/mnt/x")
    assert [e["mountpoint"] for e in registry.find(str(os.getpid()), tmp_path)] == ["/mnt/x"]


def test_the_mounted_daemon_of_a_path_wins_over_one_seeding_on(three):
    entry = registry.by_mountpoint("/mnt/a", three)
    assert entry["state"] == "mounted"
    assert registry.locate("/mnt/a", three) == (entry, None)


def test_locate_a_torrent_folder_inside_a_watch_mount(three):
    entry, folder = registry.locate("/mnt/w/some movie/file.mkv", three)
    assert entry["kind"] == "watch" and folder == "some movie"
    assert registry.locate("/mnt/w/", three)[1] is None
    assert registry.locate("/mnt/a/inside", three) == (None, None)  # not a watch mount


def test_runtime_dir_is_xdg_runtime_dir(tmp_path):
    assert registry.runtime_dir({"XDG_RUNTIME_DIR": str(tmp_path)}) == tmp_path / "torrentfs"
    # A relative or missing one is ignored (as the XDG spec says).
    assert registry.runtime_dir({"XDG_RUNTIME_DIR": "rel"}) != Path("rel") / "torrentfs"





def test_locate_resolves_symlinked_parents(tmp_path):
    """A path through a symlinked folder finds the mount (its parents are resolved);
    a daemon with no mountpoint (torrentfs seed) does not stop that."""
    reg = tmp_path / "reg"
    reg.mkdir()
    real = tmp_path / "real"
    (real / "mnt").mkdir(parents=True)
    (tmp_path / "link").symlink_to(real)
    me, start = os.getpid(), registry.process_start(os.getpid())
    for name, entry in (("1", {"kind": "seed", "mountpoint": None}),
                        ("2", {"kind": "mount", "mountpoint": str(real / "mnt")})):
        (reg / f"{name}.json").write_text(json.dumps({"pid": me, "start": start, **entry}))
    entry, folder = registry.locate(str(tmp_path / "link" / "mnt"), reg)
    assert entry["kind"] == "mount" and folder is None
