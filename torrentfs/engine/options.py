"""How one torrent runs: ``TorrentOptions``, the settings a ``Torrent`` is given.

The settings are plain values (a command line gives them: ``cli.torrent_options``);
what a torrent is handed at run time besides (its peer id, the buckets a
multi-torrent mount shares, how storage work is offloaded, a choker, an HTTP
transport for tests) are ``Torrent``'s keyword arguments instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class TorrentOptions:
    """The settings of one ``Torrent``. The defaults are those of a plain
    ``Torrent(meta, folder)``: listening on any free port, announcing to the
    trackers, downloading what is read."""

    # -- the network -----------------------------------------------------------------
    port: int = 0                    # the port to listen on and announce (0: any free)
    listen_host: str | None = None   # the address to listen on; None: every IPv4 and IPv6
    listen: bool = True              # accept incoming peers (a watch mount listens for all)
    announce: bool = True            # announce to the torrent's trackers
    peers: tuple[tuple[str, int], ...] = ()  # addresses to try besides those discovered
    max_peers: int = 50              # connections at most (with ``shared``: its cap too)
    upload_rate: float | None = None    # bytes/s; None: no cap (``shared`` overrides)
    download_rate: float | None = None  # bytes/s; None: no cap (``shared`` overrides)
    lsd: bool = False                # local service discovery (BEP 14); never if private
    pex: bool = True                 # peer exchange (BEP 11); never if private
    web_seeds: tuple[str, ...] | None = None  # BEP 19 URLs; None: the torrent's url-list
    encryption: str = "prefer"       # MSE/PE: prefer, require or off (net/mse.py)
    tcp: bool = True                 # peers over TCP (listen and dial)
    utp: bool = True                 # peers over uTP (BEP 29; UDP on the same port)
    origins: tuple[str, ...] = ()    # IP addresses whose bytes count as the origin's
    prefer_subnet: str | None = None  # CIDR(s) or "auto": peers there first (core/topology)
    super_seed: bool = False         # a seed sends each piece about once (core/sparing)

    # -- the data --------------------------------------------------------------------
    prefetch: bool = False           # download the whole torrent, below reads
    head_start: int = 8 << 20        # bytes a listed folder's videos may fetch (engine/headstart)
    read_timeout: float | None = None  # a read with no progress this long fails; None: never
    cache_size: int | None = None    # bytes kept on disk at most; None: no limit
    cache_size_auto: bool = False    # cache_size was set from the disk's free space
    seed_only: bool = False          # serve data_dir as it is (checked at start), never write
    data_dir: str | os.PathLike | None = None  # where the payload lives; None: the folder
    max_open_files: int = 128        # data files held open at once (disk.fdpool)

    def __post_init__(self) -> None:
        # Any iterables in, tuples kept: the options are frozen and shared.
        object.__setattr__(self, "peers", tuple(tuple(p) for p in self.peers))
        object.__setattr__(self, "origins", tuple(self.origins))
        if self.web_seeds is not None:
            object.__setattr__(self, "web_seeds", tuple(self.web_seeds))
