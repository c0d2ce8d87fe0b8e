"""The bounded pool of open files: never more than its capacity idle, least recently
used closed first, never a descriptor closed under its user."""

from __future__ import annotations

import os
import threading

import pytest

from torrentfs.disk.fdpool import FdPool


@pytest.fixture
def files(tmp_path):
    paths = []
    for i in range(20):
        p = tmp_path / f"f{i}"
        p.write_bytes(bytes([i]) * 10)
        paths.append(p)
    return paths


def pool_of(paths, capacity, opened=None):
    def opener(i, create):
        if not paths[i].exists() and not create:
            return None
        fd = os.open(paths[i], os.O_RDWR | os.O_CREAT)
        if opened is not None:
            opened.append(i)
        return fd
    return FdPool(opener, capacity)


def is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def test_holds_at_most_capacity_closing_the_least_recently_used(files):
    opened = []
    pool = pool_of(files, 3, opened)
    fds = {}
    for i in (0, 1, 2):
        with pool.use(i) as fd:
            fds[i] = fd
    with pool.use(0):  # 0 is now the most recent: 1 goes first
        pass
    with pool.use(3):
        pass
    assert sorted(pool.held()) == [0, 2, 3]
    assert not is_open(fds[1])
    with pool.use(1) as fd:  # opened again
        assert os.pread(fd, 1, 0) == b"\x01"
    assert len(pool) == 3 and opened == [0, 1, 2, 3, 1]
    pool.close()
    assert len(pool) == 0 and not any(is_open(fd) for fd in fds.values() if fd != fds[1])


def test_reuses_an_open_file(files):
    pool = pool_of(files, 2)
    for _ in range(100):
        with pool.use(5) as fd:
            assert os.pread(fd, 1, 0) == b"\x05"
    assert pool.opened == 1
    pool.close()


def test_missing_file_gives_none_unless_created(tmp_path):
    paths = [tmp_path / "new"]
    pool = pool_of(paths, 2)
    with pool.use(0) as fd:
        assert fd is None
    assert len(pool) == 0
    with pool.use(0, create=True) as fd:
        assert fd is not None
    assert paths[0].exists()
    pool.close()


def test_a_file_in_use_is_never_closed_the_pool_goes_over_for_that_moment(files):
    pool = pool_of(files, 2)
    with pool.use(0) as a, pool.use(1) as b, pool.use(2) as c:
        assert len(pool) == 3  # all in use: over capacity, nothing closed
        assert all(is_open(fd) for fd in (a, b, c))
        assert os.pread(a, 1, 0) == b"\x00"
    assert len(pool) == 2  # shrunk back once released
    pool.close()


def test_threads_never_read_through_a_closed_descriptor(files):
    """Many threads, a tiny pool: every read sees its own file's bytes."""
    pool = pool_of(files, 3)
    errors = []

    def work(seed):
        for k in range(300):
            i = (seed * 7 + k * 3) % len(files)
            with pool.use(i) as fd:
                if os.pread(fd, 1, 0) != bytes([i]):
                    errors.append((i, fd))
    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(pool) <= 3
    pool.close()


def test_capacity_must_be_positive():
    with pytest.raises(ValueError):
        FdPool(lambda i, c: None, 0)


def test_use_open_never_opens_and_holds_what_is_open(files):
    opened = []
    pool = pool_of(files, 2, opened)
    with pool.use_open(0) as fd:
        assert fd is None  # not open: not opened either
    assert opened == [] and 0 not in pool
    with pool.use(0):
        pass
    with pool.use_open(0) as fd:
        assert os.pread(fd, 1, 0) == b"\0"
        for i in (1, 2, 3):  # over capacity: 0 is in use, so it is not closed
            with pool.use(i):
                pass
        assert is_open(fd) and 0 in pool
    assert opened == [0, 1, 2, 3] and len(pool) <= 2
