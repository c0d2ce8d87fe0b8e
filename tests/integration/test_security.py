"""A mount is private to its user: the cache is 0700/0600 whatever the umask, and the
kernel lets no other user into the mount unless ``-o allow_other`` is given."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def modes(root: Path) -> dict[str, int]:
    """Relative path -> permission bits of everything under ``root``, itself included."""
    out = {".": stat.S_IMODE(os.stat(root).st_mode)}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, root)] = stat.S_IMODE(os.lstat(p).st_mode)
    return out


def assert_private(root: Path) -> None:
    for path, mode in modes(root).items():
        is_dir = os.path.isdir(root / path)
        assert mode == (0o700 if is_dir else 0o600), f"{path}: {oct(mode)}"


@pytest.mark.parametrize("umask", [0o000, 0o022], ids=["000", "022"])
def test_cache_is_private_whatever_the_umask(tmp_path, good_torrent, mount_torrent, umask):
    cache = tmp_path / "cache"
    old = os.umask(umask)  # the daemon inherits it
    try:
        m = mount_torrent(good_torrent, cache=cache)
    finally:
        os.umask(old)
    names = set(modes(cache))
    # data files, the log and the mount state file, while mounted
    assert {f"{m.info_hash}/data/payload.bin", f"{m.info_hash}/torrentfs.log"} <= names
    assert any(n.startswith("mounts/") and n.endswith(".pid") for n in names)
    assert_private(cache)
    r = m.unmount()
    assert r.returncode == 0, r.stderr
    assert f"{m.info_hash}/resume" in modes(cache)  # written at unmount
    assert_private(cache)


def mount_options(mountpoint: Path) -> set[str]:
    """The per-mount and superblock options of the mount on ``mountpoint``."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        head, _, tail = line.partition(" - ")
        if head.split()[4] == str(mountpoint):
            return set(head.split()[5].split(",")) | set(tail.split()[2].split(","))
    raise AssertionError(f"{mountpoint} is not mounted")


def test_mount_is_private_by_default(good_torrent, mount_torrent):
    m = mount_torrent(good_torrent)
    opts = mount_options(m.path)
    assert "allow_other" not in opts and "allow_root" not in opts
    assert {"ro", "default_permissions"} <= opts


def test_allow_other_only_when_asked(good_torrent, mount_torrent):
    m = mount_torrent(good_torrent, "-o", "allow_other")
    assert "allow_other" in mount_options(m.path)
