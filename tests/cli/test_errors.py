"""Foreseeable failures as one line (``cli.errors``), however deep trio's nurseries
nested them: a port taken between the check and the bind, a full disk, the
open-files limit."""

from __future__ import annotations

import errno
import socket

import pytest
import trio

from torrentfs.cli.errors import check_port, leaf, one_line
from torrentfs.cli.output import CliError
from torrentfs.cli.serve import run as run_trio


def busy_port():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", 0))
    s.listen()
    return s


def test_a_port_taken_inside_nested_nurseries_is_one_line():
    """What ``mount`` did: "Exceptions from Trio nursery (1 sub-exception)"."""
    with busy_port() as s:
        port = s.getsockname()[1]

        async def main():
            async with trio.open_nursery() as outer:
                async def listen(task_status=trio.TASK_STATUS_IGNORED):
                    async with trio.open_nursery():
                        await trio.open_tcp_listeners(port)
                    task_status.started()
                await outer.start(listen)

        with pytest.raises(CliError) as e:
            run_trio(main, port)
    assert f"cannot listen on port {port}: it is in use" in str(e.value)
    assert "--port" in str(e.value)


def test_a_bug_stays_a_bug():
    async def main():
        async with trio.open_nursery():
            raise ZeroDivisionError("oops")

    with pytest.raises(BaseExceptionGroup) as e:
        run_trio(main)
    assert isinstance(leaf(e.value), ZeroDivisionError)
    assert one_line(e.value) is None


@pytest.mark.parametrize("err, words", [
    (OSError(errno.EMFILE, "Too many open files"), "ulimit -n"),
    (OSError(errno.ENOSPC, "No space left on device", "/c/x"), "/c/x: no space left"),
    (OSError(errno.EACCES, "Permission denied", "/c"), "/c: permission denied"),
    (OSError(errno.EROFS, "Read-only file system", "/c"), "--cache-dir"),
    (OSError(errno.EADDRINUSE, "Address already in use"), "port"),
])
def test_os_errors_a_user_can_fix(err, words):
    group = ExceptionGroup("x", [ExceptionGroup("y", [err])])
    line = one_line(group, None)
    assert line is not None and words in str(line)
    assert "\n" not in str(line)


def test_check_port():
    check_port(0)  # any port: nothing to check
    with busy_port() as s:
        with pytest.raises(CliError, match="in use"):
            check_port(s.getsockname()[1])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("", 0))
        with pytest.raises(CliError, match="use UDP port .* for the DHT: it is in use"):
            check_port(u.getsockname()[1], "use UDP port ... for the DHT", "--dht-port",
                       socket.SOCK_DGRAM)
