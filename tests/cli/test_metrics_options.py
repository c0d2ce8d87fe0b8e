"""``--metrics ADDR:PORT`` and ``--origin HOST[:PORT]`` on the command line, in the
config file and as mount options; a metrics address that cannot be served is one
line for mount, mount --watch and seed, before any long work."""

from __future__ import annotations

import argparse
import os
import socket

import pytest

from tests.harness.command import assert_one_line_error, run
from torrentfs.cli.args import parse_listen, parse_origin, torrent_options
from torrentfs.cli.main import parse_command_line
from torrentfs.cli.output import CliError
from torrentfs.cli.serve import check_metrics


def test_parse_listen():
    assert parse_listen("127.0.0.1:9100") == ("127.0.0.1", 9100)
    assert parse_listen("[::]:9100") == ("::", 9100)
    assert parse_listen(":9100") == ("", 9100)
    assert parse_listen("localhost:0") == ("localhost", 0)
    for bad in ("9100", "host", "1.2.3.4:99999", "::1:9100", "a:b"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_listen(bad)


def test_parse_origin():
    assert parse_origin("10.0.0.1") == (("10.0.0.1",), None)
    assert parse_origin("10.0.0.1:6881") == (("10.0.0.1",), ("10.0.0.1", 6881))
    assert parse_origin("[::1]:6881") == (("::1",), ("::1", 6881))
    assert parse_origin("::1") == (("::1",), None)
    ips, dial = parse_origin("localhost:7000")
    assert "127.0.0.1" in ips and dial == ("localhost", 7000)
    for bad in ("", "no-such-host.invalid", "no-such-host.invalid:1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_origin(bad)


def test_origins_reach_the_torrent_options_and_are_dialed_with_a_port():
    args = parse_command_line(["mount", "t", "m", "--peer", "10.0.0.9:1",
                               "--origin", "10.0.0.1:6881", "--origin", "10.0.0.2"],
                              environ={"TORRENTFS_CONFIG": os.devnull})
    o = torrent_options(args)
    assert o.origins == ("10.0.0.1", "10.0.0.2")
    assert o.peers == (("10.0.0.9", 1), ("10.0.0.1", 6881))
    # A mount's own peers (a magnet's x.pe) still get the origin's address.
    o = torrent_options(args, peers=[("10.0.0.8", 2)])
    assert o.peers == (("10.0.0.8", 2), ("10.0.0.1", 6881))
    assert torrent_options(parse_command_line(
        ["seed", "t", "d"], environ={"TORRENTFS_CONFIG": os.devnull})).origins == ()


def test_metrics_and_origin_from_the_config_file_and_mount_options(tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text('metrics = "127.0.0.1:9100"\n[mount]\norigin = ["10.0.0.1:6881"]\n')
    env = {"TORRENTFS_CONFIG": str(conf)}
    args = parse_command_line(["mount", "t", "m"], environ=env)
    assert args.metrics == ("127.0.0.1", 9100)
    assert args.origin == [(("10.0.0.1",), ("10.0.0.1", 6881))]
    assert parse_command_line(["seed", "t", "d"], environ=env).metrics == ("127.0.0.1", 9100)
    args = parse_command_line(["mount", "t", "m", "-o", "metrics=0.0.0.0:9200"], environ=env)
    assert args.metrics == ("0.0.0.0", 9200)
    assert parse_command_line(["mount", "t", "m"], environ={
        "TORRENTFS_CONFIG": os.devnull}).metrics is None  # off by default


def test_check_metrics():
    check_metrics(None)
    check_metrics(("127.0.0.1", 0))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(CliError, match=f"cannot serve metrics on 127.0.0.1:{port}: "
                                           "the port is in use"):
            check_metrics(("127.0.0.1", port))
    with pytest.raises(CliError, match="not an address of this machine"):
        check_metrics(("192.0.2.1", 9100))
    with pytest.raises(CliError, match="no address or name known here"):
        check_metrics(("no-such-host.invalid", 9100))


@pytest.fixture
def busy_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


def test_a_busy_metrics_port_is_one_line_for_every_serving_command(tmp_path, good_torrent,
                                                                    busy_port):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    metrics = ("--metrics", f"127.0.0.1:{busy_port}", "--no-dht", "--no-lsd",
               "--no-port-mapping", "--cache-dir", tmp_path / "c")
    for argv in (("mount", good_torrent, mnt), ("mount", "--watch", tmp_path, mnt),
                 ("seed", good_torrent, tmp_path)):
        r = run(*argv, *metrics, "-v")
        assert_one_line_error(r, f"cannot serve metrics on 127.0.0.1:{busy_port}",
                              "in use", "--metrics")
        assert "verified" not in r.stderr  # the seed said so before reading its data
        assert not os.path.ismount(mnt)
