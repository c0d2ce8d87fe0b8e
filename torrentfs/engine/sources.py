"""Where torrents come from: a .torrent file, a magnet link, the metadata cache.

Raises ``SourceError`` (one line naming the file and the cause) for anything a user
can give wrong; the CLI prints it, a watch folder skips the file with it."""

from __future__ import annotations

from pathlib import Path


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
    from torrentfs.net.magnetfetch import load_cached
    info = load_cached(folder, magnet.info_hash)
    if info is None:
        return None
    try:
        return magnet.metainfo(info)
    except MagnetError:
        return None


