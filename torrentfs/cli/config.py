"""Settings from the config file and from ``-o`` mount options, laid onto argparse.

One rule maps both onto the command line, so an option added to a command is
settable from both with no list to keep up to date: a key is the name of one of the
command's long options, with dashes or underscores (``cache-size``, ``cache_size``);
its value is what that option takes (``"1G"`` or ``1073741824``), ``true`` for a
switch (``no-dht = true``; ``lsd = false`` and ``no-lsd = true`` say the same), and
for a repeatable option a list or a single value.

The file is TOML, laid out like pip's: keys at the top apply to every command that
has that option (``cache-dir`` to mount, seed and unmount alike), and a table per
command (``[mount]``, ``[seed]``) sets or overrides keys for that command alone.
Values become the parsers' defaults (``set_defaults``) before the command line is
parsed, so a flag given on the command line always wins; ``-o`` options of ours go
in between (file < ``-o`` < flags). A repeatable option given on the command line
adds to the file's list.

An unknown key, an unknown table or a value of the wrong type is a ``ConfigError``
whose one line names the file, the key and what was expected.

Pure: no file is read here (``args.read_config`` finds and reads it).
"""

from __future__ import annotations

import argparse
from typing import Any

# Mount options libfuse itself takes (checked against libfuse 3.14: anything else it
# refuses with "unknown option").
FUSE_FLAGS = frozenset({
    "allow_other", "allow_root", "auto_unmount", "default_permissions", "ro",
    "suid", "nosuid", "dev", "nodev", "exec", "noexec", "async", "sync", "dirsync",
    "atime", "noatime"})
FUSE_KEYS = frozenset({"fsname", "subtype", "max_read",
                       "context", "fscontext", "defcontext", "rootcontext"})
# Options for mount(8), fstab and systemd, not for the filesystem: dropped. The
# filesystem is read-only whatever is asked (rw), and a read-only filesystem has no
# access times to keep (the *atime variants libfuse does not know).
IGNORED = frozenset({
    "defaults", "rw", "auto", "noauto", "user", "users", "nouser", "owner", "group",
    "nofail", "_netdev", "relatime", "norelatime", "strictatime", "nostrictatime",
    "diratime", "nodiratime", "lazytime", "nolazytime"})
IGNORED_PREFIXES = ("x-", "comment=")

NOT_SETTABLE = frozenset({"help", "version", "config"})  # long names the file cannot set


class ConfigError(Exception):
    """A bad config file or mount option: the message is one line, naming where."""


def parse_toml(data: bytes, origin: str) -> dict[str, Any]:
    """The file's contents as a dict; a syntax error names the file, line and column."""
    import tomllib  # only with a file: ~6 ms off every command's start (issue 13)
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{origin}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{origin}: not valid TOML: {' '.join(str(e).split())}") from None


def _norm(name: str) -> str:
    return name.replace("_", "-").lower()


def option_table(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.Action, bool]]:
    """Every settable long option of ``parser``: normalised name -> (action, negated).
    ``negated`` marks the ``--no-x`` half of a ``--x/--no-x`` switch."""
    table = {}
    for action in parser._actions:
        for opt in action.option_strings:
            if not opt.startswith("--") or _norm(opt[2:]) in NOT_SETTABLE:
                continue
            negated = (isinstance(action, argparse.BooleanOptionalAction)
                       and opt.startswith("--no-"))
            table[_norm(opt[2:])] = (action, negated)
    return table


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The top-level parser's subcommands by their main name (aliases left out)."""
    out: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if sub not in out.values():
                    out[name] = sub
    return out


_TOML_TYPES = [(bool, "a boolean"), (int, "an integer"), (float, "a number"),
               (str, "a string"), (list, "a list"), (dict, "a table")]


def _kind(value: Any) -> str:
    for t, name in _TOML_TYPES:
        if isinstance(value, t):
            if t is bool:
                return f"a boolean ({str(value).lower()})"
            return f"{name} ({value!r})" if t not in (list, dict) else name
    return f"a {type(value).__name__}"


def _expected(action: argparse.Action) -> str:
    if action.choices:
        return "one of " + ", ".join(map(repr, action.choices))
    if action.type is int:
        return "an integer"
    if action.type is float:
        return "a number"
    if action.type is None:
        return "a string"
    return f"a {action.metavar or action.dest.upper()} value (see --help)"


def _switch(value: Any, where: str) -> bool:
    """A switch's value: a TOML boolean, or from ``-o`` a word (or nothing: on)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in ("", "true", "yes", "on", "1"):
            return True
        if word in ("false", "no", "off", "0"):
            return False
    raise ConfigError(f"{where}: expected true or false, not {_kind(value)}")


def _one(action: argparse.Action, value: Any, where: str) -> Any:
    """One value converted as the command line would convert it."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{where}: expected {_expected(action)}, not {_kind(value)}")
    if isinstance(value, float) and action.type is int:
        raise ConfigError(f"{where}: expected an integer, not {value!r}")
    try:
        out = action.type(str(value)) if action.type else str(value)
    except argparse.ArgumentTypeError as e:
        raise ConfigError(f"{where}: {e}") from None
    except (ValueError, TypeError):
        raise ConfigError(f"{where}: expected {_expected(action)}, not {value!r}") from None
    if action.choices and out not in action.choices:
        raise ConfigError(f"{where}: expected {_expected(action)}, not {value!r}")
    return out


_UNSET = object()


def _toml(value: Any) -> str:
    """A value as the file spells it (near enough for a help text)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(map(_toml, value)) + "]"
    return str(value)


def convert(action: argparse.Action, negated: bool, value: Any, where: str) -> Any:
    """``value`` (from TOML, or a string from ``-o``) as the parsed value the option's
    dest takes; ``_UNSET`` when it leaves the default alone (``verbose = false``)."""
    if action.nargs == 0:
        on = _switch(value, where)
        if isinstance(action, argparse.BooleanOptionalAction):
            return on != negated
        if on:
            return action.const
        return action.default if isinstance(action, argparse._StoreTrueAction) else _UNSET
    if isinstance(action, argparse._AppendAction):
        items = value if isinstance(value, list) else [value]
        return [_one(action, item, where) for item in items]
    return _one(action, value, where)


def _unknown(key: str, names, where: str, hint: str, noun: str = "key") -> ConfigError:
    import difflib
    close = difflib.get_close_matches(_norm(key), list(names), n=1, cutoff=0.75)
    also = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"{where}: unknown {noun} {key!r} ({hint}){also}")


def apply_config(parser: argparse.ArgumentParser, data: dict[str, Any], origin: str) -> None:
    """Make the file's values the subcommands' defaults (top-level keys first, then
    each command's table), noting each on its action (``config_value``) for --help."""
    subs = commands(parser)
    tables = {name: option_table(sub) for name, sub in subs.items()}
    settings: dict[str, dict[str, tuple[argparse.Action, Any, Any]]] = {n: {} for n in subs}

    def put(command: str, key: str, value: Any, where: str) -> None:
        action, negated = tables[command][_norm(key)]
        out = convert(action, negated, value, where)
        if out is not _UNSET:
            settings[command][action.dest] = (action, out, f"{key} = {_toml(value)}")

    for key, value in data.items():
        if isinstance(value, dict) and key in subs:
            continue
        if isinstance(value, dict):
            raise ConfigError(f"{origin}: unknown table [{key}] (tables: "
                              f"{', '.join(f'[{n}]' for n in subs)})")
        owners = [n for n in subs if _norm(key) in tables[n]]
        if not owners:
            every = {k for t in tables.values() for k in t}
            raise _unknown(key, every, f"{origin}: {key}",
                           "no torrentfs command has such an option")
        for command in owners:
            put(command, key, value, f"{origin}: {key}")
    for command in subs:
        section = data.get(command)
        if not isinstance(section, dict):
            continue
        for key, value in section.items():
            where = f"{origin}: {command}.{key}"
            if _norm(key) not in tables[command]:
                raise _unknown(key, tables[command], where,
                               f"torrentfs {command} has no option --{_norm(key)}")
            put(command, key, value, where)
    for command, values in settings.items():
        subs[command].set_defaults(**{dest: out for dest, (_, out, _) in values.items()})
        for action, _, raw in values.values():
            action.config_value = f"{raw} in {origin}"  # for --help to show


def split_mount_options(opts: list[str], parser: argparse.ArgumentParser
                        ) -> tuple[list[str], dict[str, Any]]:
    """``-o`` options -> (those for FUSE, our own as {dest: value}). Ours are the
    mount command's long options, ``key=value`` or a bare switch (so an fstab line can
    say ``cache_dir=/var/cache/torrentfs,no_dht``). A value holding commas
    (``dht_bootstrap=a:1,b:2``, ``seed_after=ratio=2,time=1h``) arrives split by
    the comma-separated list: a part that is no option of anyone's continues the
    value before it. fstab and mount(8) options are dropped; anything else is a
    ``ConfigError``."""
    table = option_table(parser)
    table.pop("options", None)
    fuse: list[str] = []
    ours: list[tuple[str, str | None]] = []
    for opt in opts:
        key, eq, value = opt.partition("=")
        if opt in IGNORED or opt.startswith(IGNORED_PREFIXES):
            continue
        if (key in FUSE_FLAGS and not eq) or (key in FUSE_KEYS and eq):
            fuse.append(opt)
        elif _norm(key) in table:
            ours.append((key, value if eq else None))
        elif ours and ours[-1][1] is not None:
            ours[-1] = (ours[-1][0], f"{ours[-1][1]},{opt}")
        else:
            raise _unknown(opt, [*table, *FUSE_FLAGS], f"-o {opt}",
                           "neither FUSE nor torrentfs mount has it", noun="option")
    out: dict[str, Any] = {}
    for key, value in ours:
        action, negated = table[_norm(key)]
        where = f"-o {key}" + (f"={value}" if value is not None else "")
        if value is None and action.nargs != 0:
            raise ConfigError(f"{where}: needs a value ({key}={action.metavar or 'VALUE'})")
        got = convert(action, negated, "" if value is None else value, where)
        if got is _UNSET:
            continue
        if isinstance(action, argparse._AppendAction):
            got = out.get(action.dest, []) + got
        out[action.dest] = got
    return fuse, out
