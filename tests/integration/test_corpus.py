"""The corpus of malformed and hostile torrents in data/bad_torrents/, one test per
INDEX line: each file either is refused with one clear line and a non-zero exit by
``torrentfs info`` and ``torrentfs mount`` (and by the error it claims), or mounts
with mended names, lists with ``ls -lR``, and creates nothing outside its cache."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.command import assert_one_line_error, run
from tests.harness.payload import tree_of
from torrentfs.core.metainfo import MetainfoError, parse
from torrentfs.core.tree import Tree

DATA = Path(__file__).resolve().parent.parent / "data"
CORPUS = DATA / "bad_torrents"
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Case:
    file: str
    outcome: str
    expect: str
    why: str

    @property
    def path(self) -> Path:
        return CORPUS / self.file


def load_index() -> list[Case]:
    cases = []
    for line in (CORPUS / "INDEX").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            cases.append(Case(*line.split(" | ", 3)))
    return cases


CASES = load_index()
ERRORS = [pytest.param(c, id=c.file) for c in CASES if c.outcome == "error"]
MOUNTS = [pytest.param(c, id=c.file) for c in CASES
          if c.outcome in ("mounts-sanitised", "repaired")]
REPAIRED = [c for c in CASES if c.outcome == "repaired"]


def test_index_lists_every_file_once():
    files = [c.file for c in CASES]
    assert len(files) == len(set(files))
    assert set(files) == {p.name for p in CORPUS.glob("*.torrent")}
    assert {c.outcome for c in CASES} == {"error", "mounts-sanitised", "repaired"}
    assert len(ERRORS) >= 35 and len(MOUNTS) >= 5 and len(REPAIRED) >= 15


def test_repaired_names_are_libtorrents():
    """Every repaired torrent loads in libtorrent with the very names we show."""
    from tests.harness.ltnames import lt_file_paths
    theirs = lt_file_paths([c.path for c in REPAIRED])
    for case, files in zip(REPAIRED, theirs):
        meta = parse(case.path.read_bytes())
        ours = ["/".join((meta.name, *f.path)) if meta.multi_file else meta.name
                for f in meta.files if not f.padding]
        assert files is not None, f"{case.file}: libtorrent refuses it"
        assert ours == [p for p, _ in files], case.file
        assert meta.repairs, case.file  # and the repair is logged


def test_corpus_is_what_the_script_makes(tmp_path):
    subprocess.run([sys.executable, str(DATA / "make_bad_torrents.py"), str(tmp_path)],
                   check=True, timeout=60)
    made = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    committed = {p.name: p.read_bytes() for p in CORPUS.iterdir()}
    assert made.keys() == committed.keys()
    for name in made:
        assert made[name] == committed[name], f"{name} differs: run tests/data/make_bad_torrents.py"


def mount_paths(data: bytes) -> list[str]:
    """Every path a mount of this torrent shows, as the tree builds it."""
    tree = Tree.from_metainfo(parse(data))
    return sorted(tree.path(i).lstrip("/") for i in tree.nodes if i != tree.root.inode)


@pytest.mark.parametrize("case", ERRORS + MOUNTS)
def test_parse_hits_the_claimed_case(case):
    """Each file fails for the reason its INDEX line gives, not by accident earlier."""
    data = case.path.read_bytes()
    if case.outcome == "error":
        with pytest.raises(MetainfoError) as e:
            parse(data)
        assert case.expect in str(e.value)
    else:
        assert mount_paths(data) == sorted(json.loads(case.expect))


@pytest.mark.parametrize("case", ERRORS)
def test_cli_refuses(case, tmp_path):
    r = run("info", case.path)
    assert_one_line_error(r, case.file, case.expect)
    assert r.stdout == ""
    mnt, cache = tmp_path / "mnt", tmp_path / "cache"
    mnt.mkdir()
    r = run("mount", case.path, mnt, "--cache-dir", cache)
    assert_one_line_error(r, case.file, case.expect)
    assert not os.path.ismount(mnt)
    assert sorted(os.listdir(tmp_path)) == ["mnt"]  # not even a cache folder


def safe_name(name: str) -> bool:
    raw = os.fsencode(name)
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return (name not in ("", ".", "..") and len(raw) <= 255 and "/" not in name
            and "\\" not in name and not CONTROL.search(name))


@pytest.mark.integration
@pytest.mark.parametrize("case", MOUNTS)
def test_mounts_sanitised(case, tmp_path, mount_torrent):
    expected = sorted(json.loads(case.expect))
    r = run("info", case.path)
    assert r.returncode == 0, r.stderr
    assert not CONTROL.search(r.stdout.replace("\n", ""))

    cache = tmp_path / "a" / "b" / "cache"  # a '..' that got through would land above it
    m = mount_torrent(case.path, cache=cache)
    ls = subprocess.run(["ls", "-lR", str(m.path)], capture_output=True, timeout=30,
                        stdin=subprocess.DEVNULL)
    assert ls.returncode == 0, ls.stderr
    shown = sorted(tree_of(m.path))
    assert shown == expected
    for path in shown:
        assert all(safe_name(part) for part in path.split("/")), path

    # The data files lie under <cache>/<info-hash>/data, named as the mount shows them.
    data_dir = m.folder / "data"
    files = {p for p, size in tree_of(m.path).items() if size is not None}
    on_disk = {p for p, size in tree_of(data_dir).items() if size is not None}
    assert on_disk == files
    assert sorted(os.listdir(cache)) == sorted({m.info_hash, "mounts"})

    r = m.unmount()
    assert r.returncode == 0, r.stderr
    # Nothing anywhere under tmp_path but the mountpoint and the cache.
    for path in tree_of(tmp_path):
        assert path in ("a", "a/b") or path.startswith(("a/b/cache", m.path.name)), path
