"""Argument types issue 12 widened or tightened: sizes like 1T and 1.5G everywhere a
size is taken; a tracker URL needs its scheme."""

import argparse

import pytest

from torrentfs.cli.args import parse_size, parse_tracker
from torrentfs.cli.main import parse_command_line


@pytest.mark.parametrize("text, value", [
    ("1T", 1 << 40), ("1.5G", 3 << 29), ("1.5GiB", 3 << 29), ("2GB", 2 << 30),
    ("256K", 256 << 10), ("0.5M", 1 << 19), (".5m", 1 << 19), ("16384", 16384),
    (" 3 M ", 3 << 20), ("1t", 1 << 40)])
def test_sizes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "x", "1X", "-1", "1.2.3", "iB", "1iB", "1 G B"])
def test_not_sizes(text):
    with pytest.raises(argparse.ArgumentTypeError, match="not a size"):
        parse_size(text)


def test_sizes_are_taken_by_every_size_option(tmp_path):
    args = parse_command_line(["mount", "x.torrent", "mnt", "--cache-size", "1.5G",
                               "--download-rate", "1.5M", "--upload-rate", "1T"],
                              environ={"TORRENTFS_CONFIG": "/dev/null"})
    assert (args.cache_size, args.download_rate, args.upload_rate) == (
        3 << 29, 3 << 19, 1 << 40)
    args = parse_command_line(["mount", "x.torrent", "mnt", "-o", "cache_size=1T"],
                              environ={"TORRENTFS_CONFIG": "/dev/null"})
    assert args.cache_size == 1 << 40
    config = tmp_path / "c.toml"
    config.write_text('cache-size = "2.5G"\n')
    args = parse_command_line(["mount", "x.torrent", "mnt"],
                              environ={"TORRENTFS_CONFIG": str(config)})
    assert args.cache_size == 5 << 29


@pytest.mark.parametrize("url", ["http://t:6969/announce", "https://t/a", "udp://t:6969",
                                 "udp://[::1]:6969"])
def test_tracker_urls(url):
    assert parse_tracker(url) == url


@pytest.mark.parametrize("url", ["t:6969", "tracker.lan:6969/announce", "http://",
                                 "ftp://t/a", "", "//t:1/a"])
def test_tracker_url_needs_a_scheme(url):
    with pytest.raises(argparse.ArgumentTypeError, match="give it a scheme"):
        parse_tracker(url)
