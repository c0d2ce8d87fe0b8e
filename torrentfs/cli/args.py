"""What the commands' parsers share: argument types (sizes, peers, ports, seconds,
seeding limits, web seeds), option groups given to several commands, the help
layout, and finding the config file (``config.py`` lays it onto the parsers).

Each command's module makes its parser with ``command(sub, name, ...)``, so every
command has the same help layout and takes ``--config``."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

import appdirs

from torrentfs.cli.output import CliError

METADATA_TIMEOUT = 120.0  # default --metadata-timeout for magnet links
CONFIG_ENV = "TORRENTFS_CONFIG"
MAX_CONFIG_BYTES = 1 << 20


# -- argument types ------------------------------------------------------------------

SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_size(text: str) -> int:
    """'256K', '1M', '1.5G', '1T', '1MiB', '2GB', '16384' -> bytes (binary units:
    K is 1024; a fraction is rounded down to whole bytes)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgtp]?)(i?b)?\s*", text, re.I)
    if not m or (m.group(3) and m.group(3).lower() == "ib" and not m.group(2)):
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 256K, 1.5G or 1T)")
    return int(float(m.group(1)) * SIZE_UNITS[m.group(2).lower()])


def parse_tracker(text: str) -> str:
    """An announce URL: http://, https:// or udp://, with a host."""
    from urllib.parse import urlsplit
    try:
        parts = urlsplit(text.strip())
        ok = parts.scheme in ("http", "https", "udp") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise argparse.ArgumentTypeError(
            f"not a tracker URL: {text!r} (give it a scheme: "
            "http://HOST:PORT/announce, https://... or udp://HOST:PORT)")
    return text.strip()


def parse_peer(text: str) -> tuple[str, int]:
    """'HOST:PORT' or '[V6]:PORT' -> (host, port)."""
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]+):(\d+)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r}")
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    if not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"port out of range in {text!r}")
    return host, int(port)


def parse_peer_list(text: str) -> list[tuple[str, int]]:
    """'HOST:PORT,HOST:PORT' -> [(host, port), ...]."""
    out = [parse_peer(part) for part in text.split(",") if part.strip()]
    if not out:
        raise argparse.ArgumentTypeError("no HOST:PORT given")
    return out


def parse_listen(text: str) -> tuple[str, int]:
    """``--metrics``: 'HOST:PORT', '[V6]:PORT' or ':PORT' (every address) -> (host,
    port); port 0 is any free one (logged)."""
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]*):(\d+)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not ADDR:PORT: {text!r} (try 127.0.0.1:9100, "
                                         "0.0.0.0:9100 or [::]:9100)")
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    if not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"port out of range in {text!r}")
    return host, int(port)


def parse_origin(text: str) -> tuple[tuple[str, ...], tuple[str, int] | None]:
    """``--origin``: 'HOST', 'HOST:PORT' or '[V6]:PORT' -> (its IP addresses, the
    address to dial or None). A name is resolved now: one line if it does not."""
    import socket
    try:
        host, port = parse_peer(text)
        dial: tuple[str, int] | None = (host, port)
    except argparse.ArgumentTypeError:
        host, dial = text.strip().strip("[]"), None
    if not host:
        raise argparse.ArgumentTypeError(f"not HOST or HOST:PORT: {text!r}")
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as e:
        raise argparse.ArgumentTypeError(f"{host!r} does not resolve: "
                                         f"{getattr(e, 'strerror', None) or e}") from None
    return tuple(dict.fromkeys(str(info[4][0]) for info in found)), dial


def parse_port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) < 65536:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}")
    return int(text)


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not 0 < value < 1e7:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


def parse_seed_after(text: str) -> dict[str, float]:
    """'ratio=2', 'time=30m', 'ratio=1.5,time=2h' -> {'ratio': 1.5, 'time': 7200}."""
    out: dict[str, float] = {}
    units = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for part in text.split(","):
        key, _, value = part.strip().partition("=")
        try:
            if key == "ratio":
                out["ratio"] = float(value)
            elif key == "time":
                m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", value.strip())
                out["time"] = float(m.group(1)) * units[m.group(2)]
            else:
                raise ValueError
        except (ValueError, AttributeError):
            raise argparse.ArgumentTypeError(
                f"not a seeding limit: {part!r} (try ratio=2 or time=30m)") from None
    return out


def parse_web_seed(text: str) -> str:
    from torrentfs.core.webseed import usable
    if not usable(text):
        raise argparse.ArgumentTypeError(f"not an http:// or https:// URL: {text!r}")
    return text


# -- option groups several commands take ------------------------------------------------

def add_metadata_timeout(p) -> None:
    p.add_argument("--metadata-timeout", type=positive_seconds, default=METADATA_TIMEOUT,
                   metavar="SECONDS",
                   help="for a magnet link: give up when no peer has given the torrent's "
                        f"metadata within this long (default: {METADATA_TIMEOUT:.0f})")


def add_web_seeds(p) -> None:
    p.add_argument("--web-seed", action="append", type=parse_web_seed, default=[],
                   metavar="URL", help="fetch pieces from this HTTP(S) server too, as if "
                   "it were in the torrent's url-list (repeatable)")
    p.add_argument("--no-web-seeds", action="store_true",
                   help="ignore the torrent's web seeds (url-list)")


def add_rates(p) -> None:
    p.add_argument("--upload-rate", type=parse_size, default=0, metavar="RATE",
                   help="cap upload at RATE bytes/s, e.g. 5M (default: no cap)")
    p.add_argument("--download-rate", type=parse_size, default=0, metavar="RATE",
                   help="cap download at RATE bytes/s, e.g. 20M (default: no cap)")


def add_lsd(p) -> None:
    p.add_argument("--lsd", action=argparse.BooleanOptionalAction, default=True,
                   help="find peers on the local network by multicast (BEP 14 local service "
                        "discovery; default: on, never for private torrents)")


def add_encryption(p) -> None:
    p.add_argument("--encryption", choices=("prefer", "require", "off"), default="prefer",
                   help="peer encryption (MSE/PE, RC4): 'prefer' (the default) accepts "
                        "plain and encrypted peers and dials in plain text, encrypted "
                        "again at once if a peer closes a plain connection; 'require' "
                        "encrypts every connection and refuses plain ones; 'off' speaks "
                        "plain text only")


def add_port_mapping(p) -> None:
    p.add_argument("--no-port-mapping", action="store_true",
                   help="do not ask the router (PCP, else NAT-PMP, else UPnP IGD) to "
                        "forward the listen ports to us; by default they are mapped at "
                        "start, renewed, and removed on exit, and the external address is "
                        "logged")


def add_transports(p) -> None:
    p.add_argument("--no-utp", action="store_true",
                   help="do not talk to peers over uTP (BEP 29, on UDP; default: uTP and "
                        "TCP both, on the same port number, IPv4 and IPv6)")
    p.add_argument("--no-tcp", action="store_true",
                   help="do not talk to peers over TCP (uTP only)")


def add_dht(p) -> None:
    p.add_argument("--no-dht", action="store_true",
                   help="do not use the DHT to find peers (it is never used for a "
                        "private torrent)")
    p.add_argument("--dht-port", type=parse_port, metavar="N",
                   help="UDP port of the DHT node (default: the TCP port's number)")
    p.add_argument("--dht-bootstrap", type=parse_peer_list, metavar="HOST:PORT,...",
                   help="DHT nodes to join through (default: the public routers, "
                        "router.bittorrent.com:6881 and others)")


def add_max_open_files(p) -> None:
    from torrentfs.disk.fdpool import DEFAULT_MAX_OPEN_FILES
    p.add_argument("--max-open-files", type=positive_int, default=DEFAULT_MAX_OPEN_FILES,
                   metavar="N",
                   help="keep at most N of a torrent's files open at once, closing the "
                        f"least recently used (default: {DEFAULT_MAX_OPEN_FILES}; any "
                        "torrent works with the usual ulimit -n of 1024)")


def add_metrics(p) -> None:
    p.add_argument("--metrics", type=parse_listen, metavar="ADDR:PORT",
                   help="serve Prometheus metrics on http://ADDR:PORT/metrics: bytes "
                        "received by source (origin, web seed, peer), sent, pieces "
                        "verified and failed, peers, waiting reads and read latency, "
                        "per torrent, and the process's CPU and memory (default: off; "
                        ":9100 for every address, IPv4 and IPv6)")


def add_origin(p) -> None:
    p.add_argument("--origin", action="append", type=parse_origin, default=[],
                   metavar="HOST[:PORT]",
                   help="the swarm's origin (a cluster's `torrentfs seed`): bytes from "
                        "any peer at its IP address count as the origin's in --metrics "
                        "and status --json; with a port it is also dialed, as --peer "
                        "(repeatable)")


def add_log_level(p, default: str = "info") -> None:
    """``-v`` and ``--log-level``: every command has them (those that do not serve
    log only warnings unless asked; their logs go to stderr)."""
    p.add_argument("-v", "--verbose", dest="log_level", action="store_const", const="debug",
                   default=default, help="log everything (same as --log-level debug)")
    p.add_argument("--log-level", default=default,
                   choices=["debug", "info", "warning", "error"],
                   help=f"how much to log (default: {default})")


def add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                   help=f"read settings from FILE (default: ${CONFIG_ENV}, else "
                        f"{default_config_path()}; /dev/null for none)")


# -- parsers ----------------------------------------------------------------------------

class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line like every other error."""

    def error(self, message: str):
        self.exit(2, f"torrentfs: error: {message} (see: {self.prog} --help)\n")


class Formatter(argparse.HelpFormatter):
    """Text of several lines (the epilogs' examples) keeps its layout, a paragraph
    is wrapped; an option's default is shown unless its help already says it or
    there is none worth saying."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text.strip("\n"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if hasattr(action, "config_value"):  # set by the config file
            return f"{text} (now: {action.config_value})".replace("%", "%%")
        if ("default" in text or not action.option_strings or action.nargs == 0
                or action.default in (None, [], argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)"


def command(sub, name: str, **kw) -> argparse.ArgumentParser:
    """A command's parser on the CLI's subparsers ``sub``, laid out as every other."""
    p = sub.add_parser(name, formatter_class=Formatter, **kw)
    add_config(p)
    return p


# -- the config file ----------------------------------------------------------------------

def default_config_path() -> Path:
    return Path(appdirs.user_config_dir("torrentfs")) / "config.toml"


def read_config(argv: list[str], environ) -> tuple[str, bytes] | None:
    """The config file's name and bytes: from ``--config FILE`` (looked for before
    argparse runs, since the file sets argparse's defaults), else $TORRENTFS_CONFIG,
    else the user's config folder. Only that last one may be missing (or out of
    reach: mount.fuse3's setuid=USER leaves HOME as root's)."""
    explicit = None
    for n, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--config" and n + 1 < len(argv):
            explicit = argv[n + 1]
        elif arg.startswith("--config="):
            explicit = arg.partition("=")[2]
    if explicit is None:
        explicit = environ.get(CONFIG_ENV) or None
    path = Path(explicit) if explicit is not None else default_config_path()
    if explicit == "":
        return None
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        if explicit is None:
            return None
        raise CliError(f"config file {path}: no such file") from None
    except IsADirectoryError:
        raise CliError(f"config file {path}: is a directory") from None
    except PermissionError as e:
        if explicit is None and not os.access(path.parent, os.X_OK):
            return None  # another user's home (mount.fuse3 setuid=): not ours to read
        raise CliError(f"config file {path}: cannot read: {e.strerror}") from None
    except OSError as e:
        raise CliError(f"config file {path}: cannot read: {e.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise CliError(f"config file {path}: over {MAX_CONFIG_BYTES >> 20} MiB")
    return str(path), data


def torrent_options(args, **fixed):
    """The ``engine.options.TorrentOptions`` the command line gives (a setting the
    command has no option for keeps its default); ``fixed`` are set by the command
    itself (a seed's ``data_dir``, a magnet's port and peers, ...)."""
    from torrentfs.cli.clusteropts import cluster_settings
    from torrentfs.engine.options import TorrentOptions
    if getattr(args, "no_utp", False) and getattr(args, "no_tcp", False):
        raise CliError("--no-utp and --no-tcp together leave no way to reach a peer")
    origins = getattr(args, "origin", [])  # [(its IPs, the address to dial or None)]
    settings = dict(
        port=args.port, peers=args.peer, max_peers=args.max_peers,
        origins=[ip for ips, _ in origins for ip in ips],
        upload_rate=args.upload_rate or None, download_rate=args.download_rate or None,
        lsd=args.lsd, pex=not getattr(args, "no_pex", False),
        encryption=getattr(args, "encryption", "prefer"),
        utp=not getattr(args, "no_utp", False), tcp=not getattr(args, "no_tcp", False),
        prefetch=getattr(args, "prefetch", False),
        head_start=getattr(args, "head_start", TorrentOptions.head_start),
        read_timeout=getattr(args, "read_timeout", 0) or None,
        cache_size=getattr(args, "cache_size", None),
        cache_size_auto=getattr(args, "cache_size_auto", False),
        max_open_files=getattr(args, "max_open_files", TorrentOptions.max_open_files),
        **cluster_settings(args))
    settings.update(fixed)
    settings["peers"] = [*settings["peers"], *(dial for _, dial in origins if dial)]
    return TorrentOptions(**settings)
