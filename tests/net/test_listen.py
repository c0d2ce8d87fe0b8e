"""net/listen.py: one port for IPv4 and IPv6 peers."""

from __future__ import annotations

import socket

import pytest
import trio

from torrentfs.net.listen import open_listeners


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6(), reason="no IPv6 on this host")
async def test_dual_stack_on_one_port():
    listeners = await open_listeners(0)
    try:
        ports = {l.socket.getsockname()[1] for l in listeners}
        families = {l.socket.family for l in listeners}
        assert len(ports) == 1 and families == {socket.AF_INET, socket.AF_INET6}
        port = ports.pop()
        for host in ("127.0.0.1", "::1"):
            with trio.fail_after(5):
                s = await trio.open_tcp_stream(host, port)
                await s.aclose()
    finally:
        for l in listeners:
            await l.aclose()


async def test_a_named_host_only():
    listeners = await open_listeners(0, "127.0.0.1")
    try:
        assert [l.socket.getsockname()[0] for l in listeners] == ["127.0.0.1"]
    finally:
        for l in listeners:
            await l.aclose()
