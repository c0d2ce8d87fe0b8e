"""Magnet links (BEP 9): parse them, and make them.

Pure: ``parse(text)`` returns a :class:`Magnet` or raises :class:`MagnetError`
(and nothing else) with a one-line reason; ``make(...)`` builds the URI back.

What is read from ``magnet:?k=v&k=v...`` (values percent-decoded):

* ``xt=urn:btih:HASH``, the v1 info-hash: 40 hex digits or 32 base32
  characters (either case); and/or ``xt=urn:btmh:1220HASH``, the BEP 52 v2
  info-hash (a SHA-256 multihash: ``1220`` then 64 hex digits).  Several ``xt``
  naming the same hash are fine; two different ones of a kind, or none, are
  errors.  A v2-only link (btmh alone) goes by the v2 hash cut to 20 bytes in
  handshakes, trackers and the DHT; a link with both joins the v1 swarm.
* ``dn``: the display name (``+`` reads as a space), optional.
* ``tr`` (also ``tr.1``, ``tr.2``, ...): tracker URLs, several, order kept,
  duplicates dropped; each must look like ``scheme://...``.
* ``x.pe``: peer addresses ``host:port`` or ``[v6]:port``, several.
* Anything else (``ws``, ``xl``, ``so``, ...) is ignored.

Bounds: the URI at most 64 KiB, at most 500 trackers and 500 peers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import quote, unquote, unquote_plus

import bencodepy

from torrentfs.core.address import show_addr
from torrentfs.core.metainfo import Metainfo, MetainfoError
from torrentfs.core.metainfo import parse as parse_metainfo

__all__ = ["MagnetError", "Magnet", "parse", "make", "parse_hostport", "is_magnet"]

MAX_LENGTH = 65536
MAX_TRACKERS = 500
MAX_PEERS = 500

_HOSTNAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})")
_TR_KEY = re.compile(r"tr(?:\.\d{1,4})?")


class MagnetError(ValueError):
    """Not a usable magnet link; ``str()`` is one human-readable line."""


@dataclass(frozen=True)
class Magnet:
    info_hash: bytes                    # 20 bytes: v1, or a v2-only link's v2 hash cut short
    name: str | None = None
    trackers: tuple[str, ...] = ()
    peers: tuple[tuple[str, int], ...] = ()
    info_hash_v2: bytes | None = None   # 32 bytes (BEP 52 urn:btmh), if given
    #: The link names only a v2 info-hash (no urn:btih): ``info_hash`` is its cut.
    v2_only: bool = False

    @property
    def info_hash_hex(self) -> str:
        return self.info_hash.hex()

    def uri(self) -> str:
        return make(None if self.v2_only else self.info_hash, self.name, self.trackers,
                    self.peers, info_hash_v2=self.info_hash_v2)

    def metainfo(self, info_bytes: bytes, piece_layers: dict | None = None) -> Metainfo:
        """The torrent made of an info dictionary fetched for this magnet, the
        magnet's trackers (one tier each, in order) and, for a v2 torrent, its
        ``piece layers`` (got from peers: checked against the roots by parsing).
        MagnetError if the bytes do not hash to the info-hash(es) or are not a
        valid torrent."""
        if not self.v2_only and hashlib.sha1(info_bytes).digest() != self.info_hash:
            raise MagnetError("metadata does not match the magnet's info-hash")
        if (self.info_hash_v2 is not None
                and hashlib.sha256(info_bytes).digest() != self.info_hash_v2):
            raise MagnetError("metadata does not match the magnet's v2 info-hash")
        top = b"d"
        if self.trackers:
            top += b"13:announce-list" + bencodepy.encode(
                [[url.encode()] for url in self.trackers])
        top += b"4:info" + bytes(info_bytes)
        if piece_layers:
            top += b"12:piece layers" + bencodepy.encode(piece_layers)
        top += b"e"
        try:
            return parse_metainfo(top)
        except MetainfoError as e:
            raise MagnetError(f"the metadata peers gave is not a usable torrent: {e}") from None


def is_magnet(text: str) -> bool:
    """Whether ``text`` is meant as a magnet link (not a path to a .torrent)."""
    return isinstance(text, str) and text[:7].lower() == "magnet:"


def _short(text: str, n: int = 60) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


def parse_hostport(text: str) -> tuple[str, int]:
    """``host:port``, ``1.2.3.4:port`` or ``[v6]:port`` -> (host, port); MagnetError
    otherwise.  IPv6 hosts come back without brackets, in compressed form."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.%a-zA-Z]+)\]:(\d{1,5})|([^:\[\]]+):(\d{1,5})", text)
    if not m:
        raise MagnetError(f"bad peer address {_short(text)} (expected HOST:PORT or [V6]:PORT)")
    if m.group(1) is not None:
        try:
            host = str(ipaddress.IPv6Address(m.group(1)))
        except ValueError:
            raise MagnetError(f"bad IPv6 address in {_short(text)}") from None
        port = int(m.group(2))
    else:
        host, port = m.group(3), int(m.group(4))
        try:
            host = str(ipaddress.IPv4Address(host))
        except ValueError:
            if not _HOSTNAME.fullmatch(host):
                raise MagnetError(f"bad host name in {_short(text)}") from None
    if not 0 < port < 65536:
        raise MagnetError(f"port out of range in {_short(text)}")
    return host, port


def _info_hash_v2(value: str) -> bytes | None:
    """The 32-byte v2 hash of a ``urn:btmh:`` value, or None if not a btmh URN."""
    if value[:9].lower() != "urn:btmh:":
        return None
    digest = value[9:]
    if len(digest) != 68 or digest[:4] != "1220":
        raise MagnetError(f"bad v2 info-hash {_short(digest)}: expected 1220 and 64 hex "
                          "digits (a SHA-256 multihash)")
    try:
        return bytes.fromhex(digest[4:])
    except ValueError:
        raise MagnetError(f"bad v2 info-hash {_short(digest)}: not hex") from None


def _info_hash(value: str) -> bytes | None:
    """The 20-byte hash of a ``urn:btih:`` value, or None if not a btih URN."""
    if value[:9].lower() != "urn:btih:":
        return None
    digest = value[9:]
    if len(digest) == 40:
        try:
            return bytes.fromhex(digest)
        except ValueError:
            raise MagnetError(f"bad info-hash {_short(digest)}: not hex") from None
    if len(digest) == 32:
        try:
            return base64.b32decode(digest.upper())
        except (binascii.Error, ValueError):
            raise MagnetError(f"bad info-hash {_short(digest)}: not base32") from None
    raise MagnetError(f"bad info-hash {_short(digest)}: expected 40 hex or 32 base32 "
                      f"characters, got {len(digest)}")


def parse(text: str) -> Magnet:
    """Parse a magnet link; raises only :class:`MagnetError`."""
    if not isinstance(text, str):
        raise MagnetError(f"not a magnet link: expected text, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise MagnetError(f"magnet link too long ({len(text)} characters)")
    if not is_magnet(text):
        raise MagnetError(f"not a magnet link: {_short(text)}")
    rest = text[7:]
    if not rest.startswith("?"):
        raise MagnetError("not a magnet link: no '?' after 'magnet:'")
    info_hash: bytes | None = None
    info_hash_v2: bytes | None = None
    name: str | None = None
    trackers: dict[str, None] = {}
    peers: dict[tuple[str, int], None] = {}
    for part in rest[1:].split("&"):
        if not part:
            continue
        key, sep, raw = part.partition("=")
        if not sep:
            raise MagnetError(f"bad magnet parameter {_short(part)} (no '=')")
        key = key.lower()
        try:
            value = unquote_plus(raw, errors="strict") if key == "dn" else unquote(
                raw, errors="strict")
        except UnicodeDecodeError:
            raise MagnetError(f"bad magnet parameter {key}: not UTF-8 once decoded") from None
        if key == "xt":
            v2 = _info_hash_v2(value)
            if v2 is not None:
                if info_hash_v2 is not None and v2 != info_hash_v2:
                    raise MagnetError("magnet link names two different v2 info-hashes")
                info_hash_v2 = v2
                continue
            h = _info_hash(value)
            if h is None:
                continue
            if info_hash is not None and h != info_hash:
                raise MagnetError("magnet link names two different info-hashes")
            info_hash = h
        elif key == "dn":
            name = value
        elif _TR_KEY.fullmatch(key):
            if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://\S+", value):
                raise MagnetError(f"bad tracker URL {_short(value)}")
            trackers[value] = None
            if len(trackers) > MAX_TRACKERS:
                raise MagnetError(f"more than {MAX_TRACKERS} trackers")
        elif key == "x.pe":
            peers[parse_hostport(value)] = None
            if len(peers) > MAX_PEERS:
                raise MagnetError(f"more than {MAX_PEERS} peer addresses")
    v2_only = info_hash is None and info_hash_v2 is not None
    if v2_only:
        info_hash = info_hash_v2[:20]  # the v2 swarm's 20-byte name
    if info_hash is None:
        raise MagnetError("magnet link has no info-hash (xt=urn:btih:... or urn:btmh:...)")
    return Magnet(info_hash, name, tuple(trackers), tuple(peers), info_hash_v2, v2_only)


def link(meta: Metainfo) -> str:
    """The magnet link of a torrent: ``magnet:?xt=urn:btih:HEX&dn=NAME&tr=URL...``
    with URL-encoded values (``urn:btmh`` for a v2 torrent, both for a hybrid)."""
    return make(None if meta.version == "v2" else meta.info_hash, meta.name, meta.trackers,
                info_hash_v2=meta.info_hash_v2)


def make(info_hash: bytes | None, name: str | None = None, trackers=(), peers=(), *,
         info_hash_v2: bytes | None = None) -> str:
    """``magnet:?xt=urn:btih:HEX&xt=urn:btmh:1220HEX&dn=NAME&tr=URL...&x.pe=HOST:PORT...``
    (either hash may be left out, not both), values percent-encoded; ``parse`` gives
    the same fields back."""
    if info_hash is not None and (not isinstance(info_hash, bytes) or len(info_hash) != 20):
        raise ValueError("info_hash must be 20 bytes")
    if info_hash_v2 is not None and (not isinstance(info_hash_v2, bytes)
                                     or len(info_hash_v2) != 32):
        raise ValueError("info_hash_v2 must be 32 bytes")
    if info_hash is None and info_hash_v2 is None:
        raise ValueError("a magnet link needs an info-hash")
    parts = [] if info_hash is None else [f"xt=urn:btih:{info_hash.hex()}"]
    if info_hash_v2 is not None:
        parts.append(f"xt=urn:btmh:1220{info_hash_v2.hex()}")
    if name is not None:
        parts.append("dn=" + quote(name, safe=""))
    parts += ["tr=" + quote(url, safe="") for url in dict.fromkeys(trackers)]
    for host, port in dict.fromkeys(peers):
        parts.append("x.pe=" + quote(show_addr((host, port)), safe=":[]"))
    return "magnet:?" + "&".join(parts)
