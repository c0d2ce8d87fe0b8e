"""Integration: torrentfs mounted the way fstab and systemd mount it. mount(8) runs
mount.fuse3 (or mount.fuse.TYPE), which runs ``PROGRAM SOURCE MOUNTPOINT -o OPTIONS``
through /bin/sh with PATH reset to the system's. The program is a symlink to our
``torrentfs`` under a name no one else uses, in /usr/local/bin, removed at the end.
The daemon is unmounted by the mount_torrent fixture whatever happens."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness.command import TORRENTFS
from tests.harness.mounts import pid_alive
from tests.harness.payload import data_of
from tests.harness.swarm import lt_seeder
from torrentfs.disk.create import create_torrent

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

DOCS = Path(__file__).resolve().parents[2] / "docs"
README = Path(__file__).resolve().parents[2] / "README.md"
SIZE = 3 * 1024 * 1024 + 4321


@pytest.fixture
def program():
    """A name for torrentfs that mount(8) finds on its own PATH, for this test alone."""
    if os.geteuid() != 0 or not shutil.which("mount.fuse3"):
        pytest.skip("needs root and mount.fuse3 (apt install fuse3)")
    name = f"torrentfs-test-{secrets.token_hex(4)}"
    link = Path("/usr/local/bin") / name
    link.symlink_to(TORRENTFS)
    try:
        yield name
    finally:
        link.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """A single-file torrent (no tracker) and a libtorrent seeder of it."""
    base = tmp_path_factory.mktemp("fstab")
    data = base / "data" / "movie.bin"
    data.parent.mkdir()
    data.write_bytes(data_of(SIZE, 7))
    torrent = base / "movie.torrent"
    torrent.write_bytes(create_torrent(data, piece_length=64 * 1024))
    with lt_seeder(torrent, data.parent, ip="127.0.0.71") as seeder:
        yield torrent, data, seeder


def as_mount_options(argv: list[str]) -> tuple[str, str, str]:
    """``torrentfs mount T M --cache-dir C --no-dht ...`` -> (T, M, "cache_dir=C,no_dht,...")."""
    torrent, mountpoint, rest = argv[2], argv[3], argv[4:]
    opts, i = [], 0
    while i < len(rest):
        key = rest[i][2:].replace("-", "_")
        if i + 1 < len(rest) and not rest[i + 1].startswith("--"):
            opts.append(f"{key}={rest[i + 1]}")
            i += 2
        else:
            opts.append(key)
            i += 1
    return torrent, mountpoint, ",".join(opts)


EXTRA = "allow_other,noatime,nofail,_netdev,x-systemd.automount"


def by_type(program: str):
    def wrap(argv):
        torrent, mnt, opts = as_mount_options(argv)
        return ["mount", "-t", f"fuse.{program}", torrent, mnt, "-o", f"{EXTRA},{opts}"]
    return wrap


def by_fstab(program: str, tmp_path: Path, hash_form: bool):
    """An fstab line in a file of its own (mount -T), in either of fstab's forms:
    ``SOURCE MNT fuse.PROGRAM`` or ``PROGRAM#SOURCE MNT fuse``."""
    def wrap(argv):
        torrent, mnt, opts = as_mount_options(argv)
        source, fstype = (f"{program}#{torrent}", "fuse") if hash_form \
            else (torrent, f"fuse.{program}")
        fstab = tmp_path / "fstab"
        fstab.write_text(f"{source}  {mnt}  {fstype}  defaults,{EXTRA},{opts}  0 0\n")
        return ["mount", "-T", str(fstab), mnt]
    return wrap


def mountinfo(path: Path) -> tuple[str, str, str]:
    """(mount options, fs type, super options) of the mount on ``path``."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        head, _, tail = line.partition(" - ")
        fields = head.split()
        if fields[4] == str(path):
            fstype, _, sopts = tail.split()
            return fields[5], fstype, sopts
    raise AssertionError(f"{path} is not mounted")


@pytest.mark.parametrize("form", ["mount -t fuse.torrentfs", "fstab fuse.torrentfs",
                                  "fstab torrentfs#"])
def test_mount_as_fstab_does(seeded, program, mount_torrent, tmp_path, form):
    torrent, data, seeder = seeded
    wrap = {"mount -t fuse.torrentfs": by_type(program),
            "fstab fuse.torrentfs": by_fstab(program, tmp_path, hash_form=False),
            "fstab torrentfs#": by_fstab(program, tmp_path, hash_form=True)}[form]
    m = mount_torrent(torrent, "--peer", seeder.endpoint, wrap=wrap)
    assert (m.path / "movie.bin").read_bytes() == data.read_bytes(), m.log[-3000:]
    opts, fstype, sopts = mountinfo(m.path)
    assert fstype == "fuse.torrentfs"
    assert "ro" in opts.split(",") and "noatime" in opts.split(",")
    assert "allow_other" in sopts.split(",")
    assert (m.folder / "torrentfs.log").exists()  # cache_dir= was used
    # umount(8), as at shutdown, ends the daemon too.
    pid = m.pid()
    assert pid and pid_alive(pid)
    r = subprocess.run(["umount", str(m.path)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 30
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(pid), m.log[-3000:]


def test_a_bad_fstab_option_fails_the_mount_in_one_line(seeded, program, tmp_path):
    torrent, _, _ = seeded
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", f"fuse.{program}", str(torrent), str(mnt), "-o",
                        f"cache_dir={tmp_path / 'c'},no_dht,frobnicate"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [
        "torrentfs: error: -o frobnicate: unknown option 'frobnicate' "
        "(neither FUSE nor torrentfs mount has it)"]
    assert not os.path.ismount(mnt)


@pytest.mark.parametrize("unit", sorted(p.name for p in (DOCS / "systemd").iterdir()))
def test_systemd_units_verify_and_are_in_the_readme(unit, tmp_path):
    text = (DOCS / "systemd" / unit).read_text()
    assert text in README.read_text(), f"README does not show docs/systemd/{unit} as it is"
    if not shutil.which("systemd-analyze"):
        pytest.skip("no systemd-analyze")
    copy = tmp_path / unit  # with the command where this test's torrentfs is
    copy.write_text(text.replace("/usr/local/bin/torrentfs", TORRENTFS))
    r = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
