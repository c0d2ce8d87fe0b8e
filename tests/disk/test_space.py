"""Room on the cache's disk (issue 12): a limit from the free space when the torrent
does not fit, and a full disk logged at most once a minute."""

from torrentfs.disk.space import (
    HEADROOM_MIN,
    DiskFull,
    cached_bytes,
    free_bytes,
    limit_from_free_space,
)

MiB = 1 << 20


def test_no_limit_when_the_torrent_fits():
    assert limit_from_free_space(free=500 * MiB, cached=0, total=175 * MiB) is None
    # what is cached already counts as room
    assert limit_from_free_space(free=10 * MiB, cached=175 * MiB, total=175 * MiB) is None


def test_a_small_disk_gives_a_limit_below_its_free_space():
    limit = limit_from_free_space(free=20 * MiB, cached=0, total=175 * MiB)
    assert limit is not None and 17 * MiB < limit <= 20 * MiB - HEADROOM_MIN
    limit2 = limit_from_free_space(free=20 * MiB, cached=5 * MiB, total=175 * MiB)
    assert limit2 > limit  # pieces already there may stay
    assert limit_from_free_space(free=0, cached=0, total=175 * MiB) == 0


def test_free_and_cached_bytes_of_a_folder(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 100_000)
    with open(tmp_path / "sparse", "wb") as f:
        f.truncate(50 * MiB)              # holds nothing
    assert 100_000 <= cached_bytes(tmp_path) < 1 * MiB
    assert free_bytes(tmp_path) > 0


def test_disk_full_is_logged_once_a_minute_with_a_count():
    full = DiskFull(every=60)
    assert full.note(now=0.0, wall=1000.0) == 0     # the first: logged
    assert [full.note(now=t, wall=1000.0 + t) for t in (1, 2, 59)] == [None] * 3
    assert full.note(now=61.0, wall=1061.0) == 3    # logged, with the 3 in between
    assert full.note(now=62.0, wall=1062.0) is None
    assert full.as_dict() == {"count": 6, "last": 1062.0}
