"""Parse .torrent files (metainfo).

Pure: no file I/O, no clock. ``parse(data)`` takes the bytes of a .torrent
and returns a validated :class:`Metainfo`, or raises :class:`MetainfoError`
(and nothing else) with a one-line, human-readable reason.

Supported: BEP 3 (v1 single- and multi-file), BEP 12 (announce-list),
BEP 47 (padding files and the ``attr`` key), BEP 19 (``url-list``: the web
seeds, see ``webseed``), BEP 52 (v2-only and hybrid torrents: the file tree,
piece layers and v2 info-hash are read by ``metainfo_v2``).

How the input is read:

* A strict bencode decoder (``bdecode``) reads the input in one pass.  It
  rejects malformed bencode (bad integers such as ``i03e``/``i-0e``, string
  lengths with leading zeros or running past the end, non-string dictionary
  keys, duplicate keys in one dictionary, nesting deeper than 64) and gives the
  byte span of the top-level ``info`` value.  The info-hash is the SHA-1 of
  exactly those bytes, so a non-canonical info dictionary (keys out of order)
  hashes as it stands in the file, as every client does.  Bytes after the
  torrent's dictionary (a trailing newline) are ignored, as libtorrent does.

Text: names and path components are decoded as UTF-8, preferring the
``name.utf-8`` / ``path.utf-8`` keys when present and well-typed (a
wrongly-typed ``.utf-8`` key is ignored and the plain key is used).  Invalid
UTF-8 is decoded with ``errors='replace'`` (U+FFFD), so names are always valid
``str``; the top-level ``encoding`` key is ignored.  Path safety checks are
applied to the decoded names, i.e. to what the filesystem will show.

Names are repaired as libtorrent repairs them (``names``: the same resulting
names; each repair is listed in ``Metainfo.repairs`` for the log): ``/``, ``\\``
and NUL inside a component are dropped, ``.`` and ``..`` components are dropped,
an empty one becomes ``_``, invalid UTF-8 becomes ``_``, a component over 240
bytes is cut keeping its extension, and a file whose path is taken (by a file or
a folder) is renamed ``name.1.ext``.  Control characters (U+0001..U+001F,
U+007F..U+009F) become ``_``, so no name can forge a log line or drive a
terminal; comments and tracker URLs with control characters are mended or
dropped likewise.  Refused: a single file whose name is nothing once repaired.

BEP 47 attributes: ``p`` padding (below), ``x`` executable, ``h`` hidden (a hint,
ignored), ``l`` a symlink whose ``symlink path`` is kept in ``FileEntry.symlink``
(components from the torrent's root; ``()`` when it does not name a file or
folder of the torrent, shown as a broken link) and which, as in libtorrent,
holds no data: its ``length`` counts as 0.

Sizes are bounded so no torrent can make us allocate without limit: the input
(:data:`MAX_TORRENT_BYTES`), integers (32 digits), nesting (64), the piece length
(512 MiB, libtorrent's limit) and the total length (:data:`MAX_TOTAL_LENGTH`, 1 PiB).  A piece
length need not be a power of two (BEP 3 does not ask for one).

Padding files: a file is padding iff its ``attr`` contains ``p`` (BEP 47).
Files under ``.pad/`` without the attribute are NOT treated as padding, and
nor are old BitComet ``_____padding_file_`` entries.  Padding files stay in
``Metainfo.files`` (they occupy offsets in the piece data) but are exempt from
the duplicate / file-vs-directory checks, since libtorrent names every pad of
the same size identically (``.pad/16384``).  Their paths must still be safe.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field, replace
from typing import Any

from torrentfs.core import metainfo_v2, names
from torrentfs.core.bdecode import BencodeError, decode_torrent
from torrentfs.core.text import has_control, replace_control

__all__ = ["MetainfoError", "FileEntry", "Metainfo", "parse", "MAX_PIECE_LENGTH",
           "MAX_TOTAL_LENGTH", "MAX_TORRENT_BYTES"]

#: Largest accepted ``piece length`` (512 MiB: libtorrent refuses 1 GiB).
MAX_PIECE_LENGTH = 512 * 1024 * 1024
#: Largest accepted total length (1 PiB): far above any real torrent, and a
#: length beyond 2**63 would not fit the kernel's off_t.
MAX_TOTAL_LENGTH = 1 << 50
#: Largest accepted .torrent (libtorrent's default limit is 10 MB).
MAX_TORRENT_BYTES = 100 << 20
#: Latest credible creation date (2242); later ones are ignored.
MAX_CREATION_DATE = 1 << 33

HASH_LEN = 20


class MetainfoError(ValueError):
    """The input is not a usable torrent; ``str()`` is one human-readable line."""


@dataclass(frozen=True, slots=True)
class FileEntry:
    #: Path components.  For a multi-file torrent this is the path *inside*
    #: the torrent's top directory (which is ``Metainfo.name``); for a
    #: single-file torrent it is ``(name,)``.
    path: tuple[str, ...]
    length: int
    #: Byte offset of the file's first byte in the torrent's concatenated data.
    offset: int
    #: BEP 47 ``attr`` contains ``p``: the file is padding, not to be shown.
    padding: bool = False
    #: BEP 47 ``attr`` contains ``x``.
    executable: bool = False
    #: BEP 47 ``attr`` contains ``l``: a symlink to these components (from the
    #: torrent's root); ``()``: its target is not in the torrent (shown broken).
    symlink: tuple[str, ...] | None = None

    @property
    def end(self) -> int:
        """Offset one past the file's last byte."""
        return self.offset + self.length


@dataclass(frozen=True)
class Metainfo:
    #: SHA-1 over the exact raw bytes of the info dictionary in the input.
    info_hash: bytes
    #: Those raw bytes (served to peers for BEP 9 metadata exchange).
    info_bytes: bytes = field(repr=False)
    name: str
    piece_length: int
    #: Concatenated 20-byte SHA-1 piece hashes.
    piece_hashes: bytes = field(repr=False)
    #: All files in torrent order, padding files included.
    files: tuple[FileEntry, ...]
    multi_file: bool
    total_length: int
    #: Tracker tiers: from ``announce-list`` if it yields any URL, else
    #: ``((announce,),)``; ``()`` when the torrent has no trackers.
    announce_list: tuple[tuple[str, ...], ...]
    url_list: tuple[str, ...]
    private: bool
    comment: str | None = None
    created_by: str | None = None
    creation_date: int | None = None
    #: The BEP 52 half (v2-only or hybrid torrent), else None.
    v2: metainfo_v2.V2Info | None = field(default=None, repr=False)
    #: What was repaired to load it (one line each, for the log).
    repairs: tuple[str, ...] = ()

    @property
    def num_pieces(self) -> int:
        if self.v2 is not None and not self.v2.hybrid:
            return self.v2.num_pieces
        return len(self.piece_hashes) // HASH_LEN

    @property
    def version(self) -> str:
        """'v1', 'v2' or 'hybrid'."""
        return "v1" if self.v2 is None else "hybrid" if self.v2.hybrid else "v2"

    @property
    def info_hash_v2(self) -> bytes | None:
        """The full SHA-256 info-hash of a v2 or hybrid torrent (None for v1)."""
        return None if self.v2 is None else self.v2.info_hash

    def piece_hash(self, i: int) -> bytes:
        """The expected SHA-1 of piece ``i``; IndexError when out of range."""
        if not 0 <= i < self.num_pieces:
            raise IndexError(f"piece {i} out of range (torrent has {self.num_pieces} pieces)")
        return self.piece_hashes[i * HASH_LEN:(i + 1) * HASH_LEN]

    def piece_size(self, i: int) -> int:
        """Length in bytes of piece ``i`` (the last one may be short)."""
        if not 0 <= i < self.num_pieces:
            raise IndexError(f"piece {i} out of range (torrent has {self.num_pieces} pieces)")
        return min(self.piece_length, self.total_length - i * self.piece_length)

    @property
    def info_hash_hex(self) -> str:
        return self.info_hash.hex()

    @property
    def trackers(self) -> tuple[str, ...]:
        """All tracker URLs, tiers flattened, first occurrence kept."""
        return tuple(dict.fromkeys(url for tier in self.announce_list for url in tier))


# ---------------------------------------------------------------------------
# Field helpers


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def _pick_utf8(d: dict, key: bytes, want: type) -> Any:
    """``d[key + b'.utf-8']`` if present with the wanted type, else ``d.get(key)``."""
    alt = d.get(key + b".utf-8")
    if isinstance(alt, want):
        return alt
    return d.get(key)


def _show(parts: tuple[str, ...] | str) -> str:
    """Render a path for an error message."""
    if isinstance(parts, tuple):
        parts = "/".join(parts)
    return repr(parts)


# A component nothing in ``_component`` would change: no control character, no
# character libtorrent drops, at most 240 bytes (60 characters of up to 4 bytes).
_PLAIN = re.compile("[^\x00-\x1f\x7f-\x9f/\\\\\u202a-\u202e\u200e\u200f]{1,60}\\Z")
# A whole path of such components, "/"-joined, none of them "." or "..".
_PLAIN_C = "(?!\\.\\.?(?:/|\\Z))[^\x00-\x1f\x7f-\x9f/\\\\\u202a-\u202e\u200e\u200f]{1,60}"
_PLAIN_PATH = re.compile(f"(?:{_PLAIN_C}/)*{_PLAIN_C}\\Z")


def _v2_component(comp: str, shown: str) -> str:
    """A v2 file tree's name as ``_component`` shows it; one no repair keeps
    (``..``, ``.``) is refused, naming ``shown`` (BEP 52 trees have no such names to
    drop: a tree that holds one is broken)."""
    name = _component(comp)
    if name is None:
        raise MetainfoError(f"unsafe path in torrent: {shown}")
    return name


def _component(comp: str) -> str | None:
    """A path component as the filesystem will show it (``names.component``, control
    characters replaced, cut as libtorrent cuts); None when it is dropped."""
    if _PLAIN.match(comp) is not None and comp != "." and comp != "..":
        return comp  # the common case, at once
    repaired = names.component(comp)
    return None if repaired is None else names.truncate(replace_control(repaired))


def _url(value: Any) -> str | None:
    if not isinstance(value, bytes):
        return None
    try:
        url = value.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None
    if has_control(url):
        return None
    return url or None


def _tiers(top: dict) -> tuple[tuple[str, ...], ...]:
    tiers: list[tuple[str, ...]] = []
    announce_list = top.get(b"announce-list")
    if isinstance(announce_list, list):
        for tier in announce_list:
            if isinstance(tier, bytes):  # seen in the wild: a flat list of URLs
                tier = [tier]
            if not isinstance(tier, list):
                continue
            urls = tuple(dict.fromkeys(u for u in map(_url, tier) if u is not None))
            if urls:
                tiers.append(urls)
    if not tiers:
        url = _url(top.get(b"announce"))
        if url is not None:
            tiers.append((url,))
    return tuple(tiers)


def _url_list(top: dict) -> tuple[str, ...]:
    value = top.get(b"url-list")
    if isinstance(value, bytes):
        value = [value]
    if not isinstance(value, list):
        return ()
    return tuple(dict.fromkeys(u for u in map(_url, value) if u is not None))


def _optional_text(top: dict, key: bytes) -> str | None:
    value = _pick_utf8(top, key, bytes)
    return replace_control(_text(value)) if isinstance(value, bytes) else None


# ---------------------------------------------------------------------------
# Parsing


def parse(data: bytes) -> Metainfo:
    """Parse and validate a .torrent; raises only :class:`MetainfoError`."""
    try:
        return _parse(data)
    except MetainfoError:
        raise
    except metainfo_v2.V2Error as e:
        raise MetainfoError(str(e)) from None
    except Exception as e:  # defensive: nothing else may escape
        raise MetainfoError(f"not a torrent file: {type(e).__name__}: {e}") from e


def _parse(data: bytes) -> Metainfo:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise MetainfoError(f"not a torrent file: expected bytes, got {type(data).__name__}")
    if len(data) > MAX_TORRENT_BYTES:
        raise MetainfoError(
            f"not a torrent file: {len(data)} bytes is over the {MAX_TORRENT_BYTES >> 20} MiB limit"
        )
    data = bytes(data)
    try:
        top, span, end = decode_torrent(data)
    except BencodeError as e:
        raise MetainfoError(f"not a torrent file: {e}") from None
    repairs: list[str] = []
    if end != len(data):
        repairs.append(f"{len(data) - end} bytes after the torrent's dictionary ignored")
    if not isinstance(top, dict):
        raise MetainfoError("not a torrent file: top level is not a dictionary")
    if span is None:
        raise MetainfoError("invalid torrent: missing 'info' dictionary")
    info = top[b"info"]
    if not isinstance(info, dict):
        raise MetainfoError("invalid torrent: 'info' is not a dictionary")
    info_bytes = data[span[0]:span[1]]

    # --- pieces ----------------------------------------------------------
    piece_length = info.get(b"piece length")
    if piece_length is None:
        raise MetainfoError("invalid torrent: missing 'piece length'")
    if not isinstance(piece_length, int) or isinstance(piece_length, bool):
        raise MetainfoError("invalid torrent: 'piece length' is not an integer")
    if piece_length <= 0:
        raise MetainfoError(f"invalid torrent: 'piece length' must be positive, got {piece_length}")
    if piece_length > MAX_PIECE_LENGTH:
        raise MetainfoError(
            f"invalid torrent: 'piece length' {piece_length} is larger than 512 MiB"
        )
    pieces = info.get(b"pieces")
    v2 = metainfo_v2.is_v2(info)
    if pieces is None and not v2:
        raise MetainfoError("invalid torrent: missing 'pieces' (and no BEP 52 'file tree')")
    if pieces is None:
        return _parse_v2(top, info, info_bytes, piece_length)
    if not isinstance(pieces, bytes):
        raise MetainfoError("invalid torrent: 'pieces' is not a byte string")
    if len(pieces) % HASH_LEN:
        raise MetainfoError(
            f"invalid torrent: 'pieces' is {len(pieces)} bytes, not a multiple of 20"
        )

    # --- name --------------------------------------------------------------
    raw_name = _pick_utf8(info, b"name", bytes)
    if raw_name is None:
        raise MetainfoError("invalid torrent: missing 'name'")
    if not isinstance(raw_name, bytes):
        raise MetainfoError("invalid torrent: 'name' is not a string")
    text = names.decode(raw_name)
    name = _component(text)
    info_hash = hashlib.sha1(info_bytes).digest()
    if name is None and b"files" in info:
        name = info_hash.hex()  # as libtorrent names it
    if name is None or (text == "" and b"files" not in info):  # libtorrent refuses these
        raise MetainfoError(f"unsafe path in torrent: {_show(text)}")
    if name != text or text.encode() != raw_name:
        repairs.append(f"name {_show(_text(raw_name))} repaired: {_show(name)}")

    # --- files -------------------------------------------------------------
    has_length = b"length" in info
    has_files = b"files" in info
    if has_length and has_files:
        raise MetainfoError("invalid torrent: info has both 'length' and 'files'")
    if not has_length and not has_files:
        raise MetainfoError("invalid torrent: info has neither 'length' nor 'files'")

    files: list[FileEntry] = []
    if has_length:
        length = _length(info[b"length"], _show(name))
        _, executable = _attrs(info)  # a lone file is never padding, whatever attr says
        files.append(FileEntry((name,), length, 0, False, executable))
    else:
        raw_files = info[b"files"]
        if not isinstance(raw_files, list):
            raise MetainfoError("invalid torrent: 'files' is not a list")
        offset = 0
        for index, entry in enumerate(raw_files):
            path, length, padding, executable, link = _file(entry, index, repairs)
            files.append(FileEntry(path, length, offset, padding, executable, link))
            offset += length
        files = _check_tree(files, repairs)

    total = sum(f.length for f in files)
    if total > MAX_TOTAL_LENGTH:
        raise MetainfoError(
            f"invalid torrent: total length {total} is over the 1 PiB limit"
        )
    if total == 0:
        raise MetainfoError("invalid torrent: torrent has no data (total length is 0)")
    expected = -(-total // piece_length)
    have = len(pieces) // HASH_LEN
    if have != expected:
        raise MetainfoError(
            f"invalid torrent: 'pieces' holds {have} hashes but {total} bytes in "
            f"pieces of {piece_length} need {expected}"
        )

    rows = [(f.path, f.length, f.padding, f.executable) for f in files]
    v2_info = metainfo_v2.hybrid(top, info, info_bytes, rows, piece_length, _v2_component,
                                 _length) if v2 else None
    return _metainfo(top, info, info_hash, info_bytes, name,
                     piece_length, pieces, files, has_files, total, v2_info, repairs)


def _parse_v2(top: dict, info: dict, info_bytes: bytes, piece_length: int) -> Metainfo:
    """A v2-only torrent (``meta version`` 2, no ``pieces``): its files from the file
    tree, laid out with padding as ``metainfo_v2`` describes."""
    raw_name = _pick_utf8(info, b"name", bytes)
    if not isinstance(raw_name, bytes):
        raise MetainfoError("invalid torrent: missing 'name'")
    name = _v2_component(_text(raw_name), _show(_text(raw_name)))
    v2_info, rows, multi, links = metainfo_v2.v2_only(top, info, info_bytes, piece_length,
                                                      _v2_component, _length)
    files: list[FileEntry] = []
    offset = 0
    for (path, length, padding, executable), link in zip(rows, links):
        files.append(FileEntry(path if multi or padding else (name,), length, offset, padding,
                               executable, link if multi else None))
        offset += length
    repairs: list[str] = []
    if multi:
        files = _check_tree(files, repairs)
    if offset > MAX_TOTAL_LENGTH:
        raise MetainfoError(f"invalid torrent: total length {offset} is over the 1 PiB limit")
    if offset == 0:
        raise MetainfoError("invalid torrent: torrent has no data (total length is 0)")
    # On the wire a v2-only torrent goes by its SHA-256 info-hash cut to 20 bytes.
    return _metainfo(top, info, v2_info.info_hash[:HASH_LEN], info_bytes, name, piece_length,
                     b"", files, multi, offset, v2_info, repairs)


def _metainfo(top: dict, info: dict, info_hash: bytes, info_bytes: bytes, name: str,
              piece_length: int, pieces: bytes, files: list[FileEntry], multi: bool,
              total: int, v2_info, repairs: list[str]) -> Metainfo:
    private = info.get(b"private")
    creation_date = top.get(b"creation date")
    if (not isinstance(creation_date, int) or isinstance(creation_date, bool)
            or not 0 < creation_date <= MAX_CREATION_DATE):
        creation_date = None

    return Metainfo(
        info_hash=info_hash,
        info_bytes=info_bytes,
        name=name,
        piece_length=piece_length,
        piece_hashes=pieces,
        files=tuple(files),
        multi_file=multi,
        total_length=total,
        announce_list=_tiers(top),
        url_list=_url_list(top),
        # Like libtorrent: any non-zero integer means private.
        private=isinstance(private, int) and private != 0,
        comment=_optional_text(top, b"comment"),
        created_by=_optional_text(top, b"created by"),
        creation_date=creation_date,
        v2=v2_info,
        repairs=tuple(repairs),
    )


def _length(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise MetainfoError(f"invalid torrent: length of {what} is not an integer")
    if value < 0:
        raise MetainfoError(f"invalid torrent: negative length {value} for {what}")
    if value > MAX_TOTAL_LENGTH:
        raise MetainfoError(f"invalid torrent: length {value} of {what} is over the 1 PiB limit")
    return value


def _attrs(d: dict) -> tuple[bool, bool]:
    attr = d.get(b"attr")
    if not isinstance(attr, bytes):
        return False, False
    return b"p" in attr, b"x" in attr


def _file(entry: Any, index: int, repairs: list[str]
          ) -> tuple[tuple[str, ...], int, bool, bool, tuple[str, ...] | None]:
    if type(entry) is dict and len(entry) == 2:  # the common {length, path}: at once
        raw_path, length = entry.get(b"path"), entry.get(b"length")
        if type(raw_path) is list and raw_path and type(length) is int \
                and 0 <= length <= MAX_TOTAL_LENGTH:
            try:
                joined = b"/".join(raw_path).decode()  # UTF-8 iff each component is
            except (UnicodeDecodeError, TypeError):
                pass
            else:
                if _PLAIN_PATH.match(joined) is not None:
                    texts = tuple(joined.split("/"))
                    if len(texts) == len(raw_path):  # no component held a "/"
                        return texts, length, False, False, None
    if not isinstance(entry, dict):
        raise MetainfoError(f"invalid torrent: entry {index} of 'files' is not a dictionary")
    padding, executable = _attrs(entry)
    raw_path = _pick_utf8(entry, b"path", list)
    if raw_path is None and not padding:
        raise MetainfoError(f"invalid torrent: entry {index} of 'files' has no 'path'")
    raw_path = raw_path or []
    if not isinstance(raw_path, list) or not all(isinstance(c, bytes) for c in raw_path):
        raise MetainfoError(
            f"invalid torrent: 'path' of entry {index} of 'files' is not a list of strings"
        )
    if not raw_path and not padding:
        raise MetainfoError(f"unsafe path in torrent: entry {index} of 'files' has an empty path")
    try:
        texts = tuple([c.decode() for c in raw_path])
        lossless = True
    except UnicodeDecodeError:
        texts = tuple([names.decode(c) for c in raw_path])
        lossless = False
    path = tuple([c for c in map(_component, texts) if c is not None]) or ("_",)
    if b"length" not in entry:
        raise MetainfoError(f"invalid torrent: file {_show(path)} has no 'length'")
    length = _length(entry[b"length"], f"file {_show(path)}")
    if not raw_path:  # padding is never shown: it needs no path (named as libtorrent does)
        repairs.append(f"padding file {index} has no path: named '.pad/{length}'")
        return (".pad", str(length)), length, True, False, None
    if path != texts or not lossless:
        repairs.append(f"path {_show(tuple(map(_text, raw_path)))} repaired: {_show(path)}")
    if padding:
        return path, length, True, False, None
    attr = entry.get(b"attr")
    target = entry.get(b"symlink path")
    if (isinstance(attr, bytes) and b"l" in attr and isinstance(target, list)
            and all(isinstance(c, bytes) for c in target)):
        # A symlink holds no data: libtorrent counts it as 0 bytes, whatever it says.
        return path, 0, False, executable, tuple(names.decode(c) for c in target)
    return path, length, False, executable, None


def _check_tree(files: list[FileEntry], repairs: list[str]) -> list[FileEntry]:
    """Rename files whose path is taken (``names.dedupe``, as libtorrent does), and
    resolve symlink targets against the files and folders that result."""
    paths, notes = names.dedupe([None if f.padding else f.path for f in files])
    repairs.extend(notes)
    if notes:
        files = [f if p is None or p == f.path else replace(f, path=p)
                 for f, p in zip(files, paths)]
    if any(f.symlink is not None for f in files):
        shown = {f.path for f in files if not f.padding}
        folders = {p[:i] for p in shown for i in range(1, len(p))}
        fixed = []
        for f in files:
            if f.symlink is not None:
                target = names.symlink_target(f.symlink, shown, folders)
                if target is None:
                    repairs.append(f"symlink {_show(f.path)} points outside the torrent "
                                   f"({_show(f.symlink)}): shown broken")
                f = replace(f, symlink=target or ())
            fixed.append(f)
        files = fixed
    return files
