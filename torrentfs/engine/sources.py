"""Where torrents come from: a .torrent file, a magnet link, the metadata cache, the
peers a magnet's metadata is fetched from, and the files of a watched folder.

Raises ``SourceError`` (one line naming the file and the cause) for anything a user
can give wrong; the CLI prints it. A watch folder's loaders (``LOADERS``,
``watch_loader``) turn a file into a ``Source``, or raise ``Skip`` saying why the
file is not mounted."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Sequence

from torrentfs.core.metainfo import Metainfo
from torrentfs.disk.private import private_dir


class SourceError(Exception):
    """A torrent that cannot be loaded: its message is one line for the user."""


def load_torrent(path: str):
    """Read and parse a .torrent; any failure is a SourceError naming the file. Reads at
    most MAX_TORRENT_BYTES + 1, so /dev/zero or a huge file cannot exhaust memory."""
    from torrentfs.core.metainfo import MAX_TORRENT_BYTES, MetainfoError, parse
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TORRENT_BYTES + 1)
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise SourceError(f"{path}: is a directory, not a .torrent file") from None
    except OSError as e:
        raise SourceError(f"{path}: cannot read: {e.strerror}") from None
    try:
        return parse(data)
    except MetainfoError as e:
        raise SourceError(f"{path}: {e}") from None


def load_target(text: str):
    """A .torrent path or a magnet link -> (Metainfo or None, Magnet or None)."""
    from torrentfs.core.magnet import MagnetError, is_magnet
    from torrentfs.core.magnet import parse as parse_magnet
    if not is_magnet(text):
        return load_torrent(text), None
    try:
        return None, parse_magnet(text)
    except MagnetError as e:
        raise SourceError(f"bad magnet link: {e}") from None


def cached_metainfo(magnet, folder: Path):
    """The magnet's torrent if its info dictionary is cached in ``folder``, else None."""
    from torrentfs.core.magnet import MagnetError
    from torrentfs.net.magnetfetch import load_cached, load_cached_layers
    info = load_cached(folder, magnet.info_hash)
    if info is None:
        return None
    try:
        return magnet.metainfo(info, load_cached_layers(folder))
    except MagnetError:
        return None




async def fetch_metainfo(magnet, folder: Path, *, peer_id: bytes, port: int,
                         peers: Sequence[tuple[str, int]] = (), timeout: float,
                         progress: Callable[[str], None] | None = None, dht=None,
                         encryption: str = "prefer"):
    """(Metainfo, peers) of a magnet: cached in ``folder``, or fetched within
    ``timeout`` seconds from the peers its trackers, its x.pe hints, ``peers`` and
    (with ``dht``, a running ``net.dht.DHT``) the DHT know. SourceError if none
    gives it in time, or what they give is not a usable torrent."""
    from torrentfs.core.magnet import MagnetError
    from torrentfs.net.magnetfetch import MetadataTimeout, default_sources, resolve
    sources = default_sources(magnet, peer_id, port, peers)
    if dht is not None:
        from torrentfs.net.dht import keep_torrent_found

        async def dht_source(add) -> None:
            await keep_torrent_found(dht, magnet.info_hash, port=lambda: port,
                                     add_peer=lambda addr: add([addr]),
                                     peer_count=lambda: 0)
        sources.append(dht_source)
    try:
        return await resolve(magnet, folder, peer_id=peer_id, port=port, timeout=timeout,
                             peers=peers, sources=sources, progress=progress,
                             encryption=encryption)
    except (MetadataTimeout, MagnetError) as e:
        raise SourceError(str(e)) from None


# -- the files of a watched folder (``mount --watch``) ---------------------------------

class Skip(Exception):
    """A file in the watched folder that is not mounted; ``str()`` says why."""


@dataclass
class Source:
    """A torrent to mount, as a loader made it of a file. ``meta`` is None while
    the metadata is still to be fetched by ``resolve`` (a magnet link)."""
    info_hash: bytes
    meta: Metainfo | None = None
    resolve: Callable[[], Awaitable[Metainfo]] | None = None
    peers: tuple[tuple[str, int], ...] = ()


def load_torrent_file(path: Path) -> Source:
    try:
        meta = load_torrent(str(path))
    except SourceError as e:
        raise Skip(str(e).removeprefix(f"{path}: ")) from None
    return Source(meta.info_hash, meta)


def load_magnet_file(path: Path) -> Source:
    """A .magnet file needs the cache folder and the listening port to fetch its
    metadata: ``watch_loader`` is given them; this default (for a MultiMount made
    without one) skips such files."""
    raise Skip("magnet links need the CLI's loader (watch_loader)")


LOADERS: dict[str, Callable[[Path], Source]] = {
    ".torrent": load_torrent_file,
    ".magnet": load_magnet_file,
}


def load_file(path: Path) -> Source:
    """The ``Source`` of a file in the watched folder; ``Skip`` says why not."""
    loader = LOADERS.get(path.suffix.lower())
    if loader is None:
        raise Skip("not a .torrent or .magnet file")
    return loader(path)


def watch_loader(cache: Path, port: Callable[[], int], *,
                 peers: Sequence[tuple[str, int]] = (), timeout: float):
    """A watched folder's loader: .torrent files as ``load_file`` reads them, and
    .magnet files (a text file holding a magnet link): its torrent from the cache
    (``cache``/<info-hash>), else fetched (from its peers and ``peers``, within
    ``timeout`` seconds) once its turn comes; ``port()`` is where we listen,
    announced meanwhile."""
    from torrentfs.core.magnet import MagnetError
    from torrentfs.core.magnet import parse as parse_magnet

    def load(path: Path) -> Source:
        if path.suffix.lower() != ".magnet":
            return load_file(path)
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                magnet = parse_magnet(f.read(65536).strip())
        except OSError as e:
            raise Skip(e.strerror) from None
        except MagnetError as e:
            raise Skip(f"bad magnet link: {e}") from None
        folder = cache / magnet.info_hash_hex
        try:
            private_dir(folder, tighten=False)
        except OSError as e:
            raise Skip(f"cache folder {folder}: {e.strerror}") from None

        async def resolve():
            from torrentfs.engine.torrent import make_peer_id
            meta, _ = await fetch_metainfo(magnet, folder, peer_id=make_peer_id(),
                                           port=port(), peers=peers, timeout=timeout)
            return meta

        return Source(magnet.info_hash, cached_metainfo(magnet, folder), resolve,
                      tuple(magnet.peers))
    return load
