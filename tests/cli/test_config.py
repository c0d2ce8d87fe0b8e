"""The config file and ``-o`` options (torrentfs/config.py and the command line that
uses them): every long option can be set from both, the command line wins, bad input
is one line naming where; and the help texts a user reads first."""

from __future__ import annotations

import argparse
import re
import subprocess
from pathlib import Path

import pytest

from tests.harness.command import TORRENTFS, assert_one_line_error, run
from torrentfs.cli.args import (
    parse_listen,
    parse_origin,
    parse_peer,
    parse_peer_list,
    parse_port,
    parse_seed_after,
    parse_size,
    parse_web_seed,
    positive_int,
    positive_seconds,
)
from torrentfs.cli.clusteropts import parse_prefer_subnet
from torrentfs.cli.config import (
    ConfigError,
    commands,
    option_table,
    split_mount_options,
)
from torrentfs.cli.main import build_parser, parse_command_line

# One value per option type, to set an option with. A new option whose type has no
# sample here fails test_every_long_option_* with a message saying so.
SAMPLES = {int: "7", float: "2.5", parse_size: "3M", parse_peer: "10.0.0.1:7",
           parse_peer_list: "10.0.0.1:7", parse_port: "7", parse_seed_after: "ratio=2",
           positive_int: "9", positive_seconds: "33", parse_web_seed: "http://10.0.0.1:7/x",
           parse_listen: "127.0.0.1:9100", parse_origin: "10.0.0.1:7",
           parse_prefer_subnet: "10.0.1.0/24", None: "some text"}


def parse(argv, config: str | None = None, tmp_path=None, **environ):
    """``parse_command_line`` with ``config`` as the config file's text."""
    if config is not None:
        path = tmp_path / "config.toml"
        path.write_text(config)
        environ["TORRENTFS_CONFIG"] = str(path)
    return parse_command_line(argv, environ)


def mount_options():
    """(long name, action, negated) for every option `torrentfs mount` has."""
    mount = commands(build_parser())["mount"]
    out = []
    for action in mount._actions:
        for opt in action.option_strings:
            if opt.startswith("--") and opt not in ("--help", "--config"):
                out.append((opt[2:], action))
    return out


def sample_for(name: str, action: argparse.Action) -> str | None:
    """A value that sets the option to something other than its default; None for
    a switch."""
    if action.nargs == 0:
        return None
    if name == "options":
        return "allow_other"
    if action.choices:
        return next(c for c in reversed(action.choices) if c != action.default)
    assert action.type in SAMPLES, f"--{name}: add a sample value for its type to SAMPLES"
    return SAMPLES[action.type]


def toml_value(action: argparse.Action, text: str | None) -> str:
    if text is None:
        return "true"
    value = f'"{text}"'
    return f"[{value}]" if isinstance(action, argparse._AppendAction) else value


NAMES = [name for name, _ in mount_options()]


def settings(name: str, action: argparse.Action) -> list[tuple[str, list[str]]]:
    """(TOML value, the flags that should give the same) pairs for option --name."""
    text = sample_for(name, action)
    if text is not None:
        return [(toml_value(action, text), [f"--{name}", text])]
    pairs = [("true", [f"--{name}"])]
    if isinstance(action, argparse.BooleanOptionalAction):  # false: the other half
        other = next(o for o in action.option_strings if o != f"--{name}")
        pairs.append(("false", [other]))
    return pairs


@pytest.mark.parametrize("name", NAMES)
def test_every_long_option_of_mount_can_be_set_from_the_file(tmp_path, name):
    """Set in the file (under [mount], or at the top; dashes or underscores), each
    option gives exactly what the flag gives, and that is not the default."""
    action = dict(mount_options())[name]
    base = ["mount", "t.torrent", "mnt"]
    default = getattr(parse(base), action.dest)
    changed = False
    key = name.replace("-", "_") if len(name) % 2 else name  # both spellings in use
    for value, flags in settings(name, action):
        flag = getattr(parse([*base, *flags]), action.dest)
        changed |= flag != default
        for config in (f"[mount]\n{key} = {value}\n", f"{key} = {value}\n"):
            got = parse(base, config, tmp_path)
            assert getattr(got, action.dest) == flag, (name, config)
    assert changed, f"--{name}: the sample sets nothing but the default"


@pytest.mark.parametrize("name", [n for n in NAMES if n != "options"])
def test_every_long_option_of_mount_can_be_set_with_dash_o(name):
    """``-o key=value`` (or ``-o key`` for a switch) gives what the flag gives."""
    action = dict(mount_options())[name]
    base = ["mount", "t.torrent", "mnt"]
    for value, flags in settings(name, action):
        text = value.strip('[]"')
        key = name.replace("-", "_")
        got = parse([*base, "-o", key if value == "true" else f"{key}={text}"])
        assert getattr(got, action.dest) == getattr(parse([*base, *flags]), action.dest)
        assert got.o == []  # ours, not FUSE's


def test_command_line_wins_over_dash_o_over_the_file(tmp_path):
    config = "max-peers = 80\n[mount]\nread-timeout = 30\n"
    base = ["mount", "t.torrent", "mnt"]
    assert parse(base, config, tmp_path).max_peers == 80
    assert parse(base, config, tmp_path).read_timeout == 30
    assert parse([*base, "-o", "max_peers=7"], config, tmp_path).max_peers == 7
    assert parse([*base, "--max-peers", "5"], config, tmp_path).max_peers == 5
    got = parse([*base, "--max-peers", "5", "-o", "max_peers=7,read_timeout=9"],
                config, tmp_path)
    assert (got.max_peers, got.read_timeout) == (5, 9)
    # A switch the file turns on, the command line turns off.
    assert parse(base, "lsd = false", tmp_path).lsd is False
    assert parse([*base, "--lsd"], "lsd = false", tmp_path).lsd is True
    assert parse([*base, "-o", "lsd"], "no-lsd = true", tmp_path).lsd is True


def test_top_level_keys_apply_to_every_command_that_has_them(tmp_path):
    config = 'cache-dir = "/var/cache/t"\nmax-peers = 80\n[seed]\nmax-peers = 9\n'
    mount = parse(["mount", "t.torrent", "mnt"], config, tmp_path)
    seed = parse(["seed", "t.torrent", "data"], config, tmp_path)
    unmount = parse(["unmount", "mnt"], config, tmp_path)
    assert mount.cache_dir == seed.cache_dir == unmount.cache_dir == "/var/cache/t"
    assert (mount.max_peers, seed.max_peers) == (80, 9)  # the table overrides the top


def test_repeatable_options_add_up(tmp_path):
    config = '[mount]\npeer = ["10.0.0.1:1", "10.0.0.2:2"]\noptions = "allow_other"\n'
    got = parse(["mount", "t.torrent", "mnt", "--peer", "10.0.0.3:3", "-o",
                 "peer=10.0.0.4:4,noatime"], config, tmp_path)
    assert got.peer == [("10.0.0.1", 1), ("10.0.0.2", 2), ("10.0.0.4", 4), ("10.0.0.3", 3)]
    assert sorted(got.o) == ["allow_other", "noatime"]


def test_which_file_is_read(tmp_path, monkeypatch):
    """--config, else $TORRENTFS_CONFIG, else the user's config folder (appdirs),
    which alone may be missing."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    base = ["mount", "t.torrent", "mnt"]
    assert parse(base).max_peers == 50  # no file at all: fine
    user = tmp_path / "xdg" / "torrentfs" / "config.toml"
    user.parent.mkdir(parents=True)
    user.write_text("max-peers = 1\n")
    env = tmp_path / "env.toml"
    env.write_text("max-peers = 2\n")
    flag = tmp_path / "flag.toml"
    flag.write_text("max-peers = 3\n")
    assert parse(base).max_peers == 1
    assert parse(base, TORRENTFS_CONFIG=str(env)).max_peers == 2
    assert parse([*base, "--config", str(flag)], TORRENTFS_CONFIG=str(env)).max_peers == 3
    assert parse(["--config", str(flag), *base]).max_peers == 3
    assert parse([*base, f"--config={flag}"]).max_peers == 3
    assert parse([*base, "--config", "/dev/null"]).max_peers == 50
    with pytest.raises(Exception, match="config file .*nope.toml: no such file"):
        parse([*base, "--config", str(tmp_path / "nope.toml")])


@pytest.mark.parametrize("config, needles", [
    ("frobnicate = 1", ["frobnicate", "unknown key", "no torrentfs command"]),
    ('[mount]\ncache-sise = "1G"', ["mount.cache-sise", "did you mean 'cache-size'"]),
    ("[unmount]\nmax-peers = 3", ["unmount.max-peers", "torrentfs unmount has no option"]),
    ("[mounts]\nport = 1", ["unknown table [mounts]", "[mount]"]),
    ('max-peers = "lots"', ["max-peers", "expected an integer", "'lots'"]),
    ("max-peers = true", ["max-peers", "expected an integer", "a boolean (true)"]),
    ("port = 1.5", ["port", "expected an integer", "1.5"]),
    ("read-timeout = [1]", ["read-timeout", "expected a number", "a list"]),
    ('log-level = "loud"', ["log-level", "expected one of 'debug'", "'loud'"]),
    ('cache-size = "lots"', ["cache-size", "not a size"]),
    ('prefetch = "maybe"', ["prefetch", "expected true or false", "'maybe'"]),
    ("[mount]\npeer = [1]", ["mount.peer", "not HOST:PORT"]),
    ("[mount]\nport = {x = 1}", ["mount.port", "a table"]),
    ("port = ", ["not valid TOML", "line 1"]),
])
def test_bad_config_is_one_line_naming_file_and_key(tmp_path, config, needles):
    path = tmp_path / "my.toml"
    path.write_text(config + "\n")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = run("mount", tmp_path / "t.torrent", mnt, "--config", path)
    assert_one_line_error(r, str(path), *needles)


def test_bad_config_files(tmp_path):
    bad = tmp_path / "latin1.toml"
    bad.write_bytes(b"comment = 'caf\xe9'\n")
    assert_one_line_error(run("info", "x.torrent", "--config", bad), "not UTF-8")
    assert_one_line_error(run("info", "x.torrent", "--config", tmp_path), "is a directory")
    assert_one_line_error(run("info", "x.torrent", "--config", tmp_path / "no.toml"),
                          "no.toml: no such file")


def test_the_help_shows_what_the_file_set(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[mount]\ncache-size = "20G"\nno-lsd = true\n')
    r = subprocess.run([TORRENTFS, "mount", "--help", "--config", str(path)],
                       capture_output=True, text=True, env={"COLUMNS": "500"})
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    assert f'(now: cache-size = "20G" in {path})' in text
    assert f"(now: no-lsd = true in {path})" in text


def test_the_readme_example_is_a_good_config(tmp_path):
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    config = re.search(r"```toml\n(.*?)```", readme, re.S).group(1)
    mount = parse(["mount", "t.torrent", "mnt"], config, tmp_path)
    assert (mount.cache_size, mount.max_peers, mount.lsd, mount.o) == (50 << 30, 80, False,
                                                                     ["allow_other"])
    assert parse(["seed", "t.torrent", "d"], config, tmp_path).max_peers == 200


# -- -o ------------------------------------------------------------------------------

def split(text: str):
    return split_mount_options(text.split(","), commands(build_parser())["mount"])


def test_dash_o_sorts_fuse_options_from_ours_and_drops_fstab_words():
    fuse, ours = split("defaults,rw,allow_other,cache_dir=/var/cache/torrentfs,noauto,"
                       "nofail,_netdev,x-systemd.automount,comment=x,user,relatime,dev,"
                       "suid,noatime,fsname=movie,subtype=tfs,default_permissions,ro")
    assert fuse == ["allow_other", "dev", "suid", "noatime", "fsname=movie", "subtype=tfs",
                    "default_permissions", "ro"]
    assert ours == {"cache_dir": "/var/cache/torrentfs"}


def test_dash_o_values_with_commas():
    """fstab splits options at commas: what is no option continues the value."""
    _, ours = split("dht_bootstrap=a.example:1,b.example:2,allow_other,"
                    "seed_after=ratio=2,time=1h,no_dht")
    assert ours == {"dht_bootstrap": [("a.example", 1), ("b.example", 2)],
                    "seed_after": {"ratio": 2.0, "time": 3600.0}, "no_dht": True}


@pytest.mark.parametrize("text, needle", [
    ("frobnicate", "-o frobnicate: unknown option 'frobnicate'"),
    ("no_dht,frob", "-o frob: unknown option"),  # a switch takes no continuation
    ("cache_dir", "-o cache_dir: needs a value (cache_dir=DIR)"),
    ("max_peers=lots", "-o max_peers=lots: expected an integer"),
    ("prefetch=maybe", "-o prefetch=maybe: expected true or false"),
    ("allow_other=1", "unknown option 'allow_other=1'"),
    ("fsname", "unknown option 'fsname'"),
    ("cache_sise=1G", "did you mean 'cache-size'"),
])
def test_bad_dash_o(text, needle):
    with pytest.raises(ConfigError) as e:
        split(text)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_dash_o_on_the_command_line(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    assert_one_line_error(run("mount", "t.torrent", mnt, "-o", "allow_other,frob"),
                          "-o frob: unknown option")


def test_users_fsname_and_subtype_replace_ours():
    from torrentfs.fs.fuse import mount_options
    opts = mount_options("torrentfs", ["fsname=/srv/movie.torrent", "allow_other"])
    assert "fsname=/srv/movie.torrent" in opts and "fsname=torrentfs" not in opts
    assert "subtype=torrentfs" in opts and {"ro", "allow_other"} <= opts


def test_mount_fuse3_form_means_mount(tmp_path):
    """mount.fuse3 runs ``torrentfs SOURCE MOUNTPOINT -o OPTIONS``."""
    got = parse(["x.torrent", "/mnt/x", "-o", "rw,allow_other,cache_dir=/c,dev,suid"])
    assert (got.command, got.torrent, got.mountpoint) == ("mount", "x.torrent", "/mnt/x")
    assert (got.cache_dir, sorted(got.o)) == ("/c", ["allow_other", "dev", "suid"])
    src = tmp_path / "image"  # any existing file, whatever its name
    src.write_bytes(b"")
    assert parse([str(src), "/mnt/x"]).command == "mount"
    r = run("no-such-command", "x")
    assert r.returncode == 2 and "invalid choice: 'no-such-command'" in r.stderr


# -- help ----------------------------------------------------------------------------

def test_every_command_has_a_full_help():
    """Every command has a description and examples, every option a help text and
    every valued option a metavar or choices."""
    parser = build_parser()
    names = list(commands(parser))
    assert {"mount", "unmount", "seed", "info", "create"} <= set(names)
    for p in [parser, *commands(parser).values()]:
        assert p.description and "example" in (p.epilog or ""), p.prog
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"{p.prog} {action.option_strings or action.dest}: no help"
            if action.option_strings and action.nargs != 0:
                assert action.metavar or action.choices, f"{p.prog} {action.option_strings}"
    for argv in ([], *([n] for n in names)):
        r = run(*argv, "--help")
        assert r.returncode == 0 and r.stderr == ""
        assert r.stdout.startswith("usage: torrentfs") and "example" in r.stdout
        assert len(r.stdout.splitlines()) > 10


def test_help_shows_defaults():
    r = run("mount", "--help")
    text = " ".join(r.stdout.split())
    assert "--max-peers N connect to at most N peers (default: 50)" in text
    assert "(default: info)" in text
    assert "default: None" not in text and "default: False" not in text


def test_option_table_knows_both_halves_of_a_switch():
    table = option_table(commands(build_parser())["mount"])
    assert table["lsd"][1] is False and table["no-lsd"][1] is True
    assert "help" not in table and "config" not in table
    assert subprocess.run([TORRENTFS, "--version"], capture_output=True).returncode == 0


def test_transport_switches_as_mount_options():
    _, ours = split("no_utp,cache_dir=/c")
    assert ours == {"no_utp": True, "cache_dir": "/c"}
    _, ours = split("no_tcp")
    assert ours == {"no_tcp": True}
