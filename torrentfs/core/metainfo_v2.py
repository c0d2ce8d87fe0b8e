"""BEP 52 (BitTorrent v2) parts of a .torrent: the file tree, piece layers, the v2
info-hash and v2 piece verification. Pure. ``metainfo.parse`` calls in here when the
info dictionary says ``meta version`` 2; nothing here imports ``metainfo`` (it passes
its name and length checkers in), so the two never form an import loop.

How a v2 torrent is laid out as one byte stream (so the rest of torrentfs, which
thinks in pieces of one stream, needs no second model): the files in file-tree order,
each one that holds data starting on a piece boundary, with a padding file (BEP 47,
``.pad/N``) filling the gap after every file that does not end on one, the last
included. This is exactly the v1 half of a (multi-file) hybrid torrent, and the
pieces are the ones v2 peers use on the wire: libtorrent numbers v2 pieces so and
takes every piece, the last one too, as a whole piece_length long (a shorter last
piece would make it ask for blocks we would call out of range).
So every piece lies in exactly one file, and its v2 hash is checked against that
file's merkle tree (see ``merkle``): the file's piece-layer node when the file is
longer than a piece, its ``pieces root`` when not. Empty files have no root and
no pieces.

Hybrid torrents (``pieces`` and ``file tree``): the v1 file list must be the v2 one
with padding files between (same paths, lengths, order, every file with data on a
piece boundary); a piece must pass both its SHA-1 and its v2 hash. Their info-hash
on the wire is the v1 one (SHA-1); a v2-only torrent uses the SHA-256 info-hash cut
to 20 bytes in handshakes, trackers, DHT and LSD (BEP 52).

Symlinks (BEP 47 ``attr`` ``l`` with a ``symlink path`` in a tree entry, which
libtorrent writes with no length and no pieces root) hold no data: ``TreeFile.symlink``
keeps the target, and ``metainfo`` resolves it under the BEP 47 rules (inside the
torrent, else shown broken).

Piece layers are checked when the torrent is parsed: each must climb to its file's
``pieces root``, so from then on a piece is judged by one hash. A v2-only torrent
missing the piece layer of a file longer than a piece is refused (getting them from
peers with hash requests is not done yet); a hybrid one falls back to its SHA-1s.
"""

from __future__ import annotations

import bisect
import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable

from torrentfs.core import merkle, names

__all__ = ["V2Error", "V2Info", "is_v2", "tree_files", "pad_layout", "build", "check_hybrid",
           "hybrid", "v2_only", "layer_needs"]

#: A (path, length, padding, executable) row of a file list, in stream order.
Row = tuple[tuple[str, ...], int, bool, bool]


class V2Error(ValueError):
    """The v2 part of the torrent is unusable; ``str()`` is one line."""


def is_v2(info: dict) -> bool:
    """True when the info dictionary declares BEP 52 (``meta version`` 2 and a
    ``file tree``); a ``meta version`` other than 2 is refused."""
    version = info.get(b"meta version")
    if version is None:
        return False
    if not isinstance(version, int) or isinstance(version, bool):
        raise V2Error("invalid torrent: 'meta version' is not an integer")
    if version != 2:
        raise V2Error(f"invalid torrent: 'meta version' {version} is not supported (only 2)")
    if not isinstance(info.get(b"file tree"), dict):
        raise V2Error("invalid torrent: 'meta version' 2 without a 'file tree' dictionary")
    return True


@dataclass(frozen=True)
class TreeFile:
    path: tuple[str, ...]
    length: int
    root: bytes | None
    executable: bool
    #: BEP 47 ``l`` in a v2 tree (``attr`` and ``symlink path``, no data): the target
    #: as given (components from the torrent's root; ``metainfo`` resolves it).
    symlink: tuple[str, ...] | None = None


def tree_files(info: dict, component: Callable[[str, str], str],
               check_length: Callable[[Any, str], int]) -> tuple[list[TreeFile], bool]:
    """The files of ``file tree`` in tree order, and whether the torrent is multi-file
    (a tree of one file at its top is a single-file torrent). ``component(name,
    shown)`` makes a path component safe (or raises); ``check_length(value, what)``
    checks a length."""
    out: list[TreeFile] = []
    _walk(info[b"file tree"], (), (), out, component, check_length)
    if not out:
        raise V2Error("invalid torrent: the 'file tree' holds no file")
    multi = not (len(out) == 1 and len(out[0].path) == 1)
    return out, multi


def _walk(node: dict, path: tuple[str, ...], raw: tuple[bytes, ...], out: list[TreeFile],
          component, check_length) -> None:
    for key, value in node.items():
        if not isinstance(key, bytes) or not isinstance(value, dict):
            raise V2Error(f"invalid torrent: entry {_shown(raw + (key,))} of the "
                          "'file tree' is not a dictionary")
        raw_path = raw + (key,)
        if key == b"":
            raise V2Error(f"invalid torrent: empty name in the 'file tree' at {_shown(raw)}")
        if b"" in value:
            if len(value) != 1:
                raise V2Error(f"invalid torrent: {_shown(raw_path)} in the 'file tree' is "
                              "both a file and a directory")
            shown = _shown(raw_path)
            name = component(key.decode("utf-8", "replace"), shown)
            out.append(_file(value[b""], path + (name,), shown, check_length))
        else:
            name = component(key.decode("utf-8", "replace"), _shown(raw_path))
            _walk(value, path + (name,), raw_path, out, component, check_length)


def _shown(raw: tuple[bytes, ...]) -> str:
    return repr("/".join(c.decode("utf-8", "replace") for c in raw))


def _file(entry: Any, path: tuple[str, ...], shown: str, check_length) -> TreeFile:
    if not isinstance(entry, dict):
        raise V2Error(f"invalid torrent: file {shown} of the 'file tree' is not a dictionary")
    attr = entry.get(b"attr")
    target = entry.get(b"symlink path")
    if (isinstance(attr, bytes) and b"l" in attr and isinstance(target, list)
            and all(isinstance(c, bytes) for c in target)):
        # A symlink holds no data (libtorrent writes no length, nor a pieces root).
        return TreeFile(path, 0, None, b"x" in attr,
                        tuple(names.decode(c) for c in target))
    if b"length" not in entry:
        raise V2Error(f"invalid torrent: file {shown} has no 'length'")
    length = check_length(entry[b"length"], f"file {shown}")
    root = entry.get(b"pieces root")
    if length == 0:
        root = None  # an empty file has no tree (a root given anyway is ignored)
    elif not isinstance(root, bytes) or len(root) != merkle.HASH_SIZE or not any(root):
        # All zeros is no root (libtorrent refuses it too).
        raise V2Error(f"invalid torrent: file {shown} has no valid 'pieces root' "
                      "(32 bytes, not all zero)")
    attr = entry.get(b"attr")
    executable = isinstance(attr, bytes) and b"x" in attr
    return TreeFile(path, length, root, executable)


def pad_layout(files: list[TreeFile], piece_length: int) -> list[Row]:
    """The v2 files as one stream: a ``.pad/N`` padding row after each file that does
    not end on a piece boundary."""
    rows: list[Row] = []
    for f in files:
        rows.append((f.path, f.length, False, f.executable))
        gap = -f.length % piece_length
        if gap:
            rows.append(((".pad", str(gap)), gap, True, False))
    return rows


def check_hybrid(v1_rows: list[Row], files: list[TreeFile], piece_length: int,
                 multi: bool) -> None:
    """Refuse a hybrid whose v1 file list is not its v2 tree with padding between."""
    real = [(p, n) for p, n, pad, _ in v1_rows if not pad]
    tree = [(f.path, f.length) for f in files]
    if not multi:
        real = [((), n) for _, n in real]
        tree = [((), n) for _, n in tree]
    if real != tree:
        for a, b in zip(real, tree):
            if a != b:
                raise V2Error(f"invalid torrent: hybrid v1 and v2 file lists differ at "
                              f"{'/'.join(a[0]) or 'the file'!r}")
        raise V2Error("invalid torrent: hybrid v1 and v2 file lists differ in length")
    offset = 0
    for path, n, pad, _ in v1_rows:
        if not pad and n and offset % piece_length:
            raise V2Error(f"invalid torrent: hybrid file {'/'.join(path)!r} does not start "
                          "on a piece boundary")
        offset += n


@dataclass(frozen=True)
class V2Info:
    """The v2 half of a torrent: its SHA-256 info-hash and how to check a piece."""

    #: SHA-256 of the info dictionary's raw bytes (32 bytes).
    info_hash: bytes
    piece_length: int
    #: Whether the torrent also has v1 ``pieces`` (a hybrid).
    hybrid: bool
    #: Per file of ``Metainfo.files``: its pieces root (None: padding or empty).
    roots: tuple[bytes | None, ...] = field(repr=False)
    #: Per file: its length (the stream's file lengths, padding included).
    lengths: tuple[int, ...] = field(repr=False)
    #: Piece layers by root, for the files longer than one piece that have one.
    piece_layers: dict[bytes, bytes] = field(repr=False)
    #: Sorted first piece of each file with data, and that file's index.
    _first_pieces: tuple[int, ...] = field(repr=False)
    _first_files: tuple[int, ...] = field(repr=False)
    num_pieces: int = 0
    #: Each pieces root's file index.
    _root_files: dict[bytes, int] = field(default_factory=dict, repr=False)

    def file_of_root(self, root: bytes) -> int | None:
        """The index of the file whose pieces root is ``root``, or None."""
        return self._root_files.get(root)

    def piece_file(self, index: int) -> tuple[int, int, int]:
        """``(file index, piece number within the file, bytes of the file in it)``."""
        if not 0 <= index < self.num_pieces:
            raise IndexError(f"piece {index} out of range (torrent has {self.num_pieces} pieces)")
        k = bisect.bisect_right(self._first_pieces, index) - 1
        f = self._first_files[k]
        n = index - self._first_pieces[k]
        return f, n, min(self.piece_length, self.lengths[f] - n * self.piece_length)

    def expected(self, index: int) -> bytes | None:
        """The v2 hash piece ``index`` must have; None when unknown (a hybrid whose
        piece layer for that file is missing)."""
        f, n, _ = self.piece_file(index)
        root = self.roots[f]
        if self.lengths[f] <= self.piece_length:
            return root
        layer = self.piece_layers.get(root)
        if layer is None:
            return None
        return layer[n * merkle.HASH_SIZE:(n + 1) * merkle.HASH_SIZE]

    def verify(self, index: int, data) -> bool:
        """True when the piece's bytes (as in the stream: padding after the file's own
        bytes is ignored) pass their v2 hash; also True when the hash is unknown."""
        f, _, size = self.piece_file(index)
        want = self.expected(index)
        if want is None:
            return self.hybrid
        view = memoryview(data).cast("B")
        if view.nbytes < size:
            return False
        return merkle.piece_hash(view[:size], self.lengths[f], self.piece_length) == want


def build(top: dict, info_bytes: bytes, files: list[TreeFile], rows: list[Row],
          piece_length: int, hybrid: bool) -> V2Info:
    """The V2Info of a parsed torrent: ``rows`` is the stream's file list (the v1
    ``files`` of a hybrid, ``pad_layout`` of a v2-only torrent). Checks the piece
    layers against the roots."""
    if piece_length < merkle.BLOCK_SIZE or piece_length & (piece_length - 1):
        raise V2Error(f"invalid torrent: v2 'piece length' {piece_length} is not a power "
                      "of two of at least 16 KiB")
    layers_in = top.get(b"piece layers", {})
    if not isinstance(layers_in, dict):
        raise V2Error("invalid torrent: 'piece layers' is not a dictionary")
    tree = iter(files)  # the rows' real files are the tree's, in order
    roots: list[bytes | None] = []
    lengths: list[int] = []
    firsts: list[int] = []
    first_files: list[int] = []
    layers: dict[bytes, bytes] = {}
    offset = 0
    for i, (path, n, pad, _) in enumerate(rows):
        lengths.append(n)
        tf = None if pad else next(tree)
        root = tf.root if tf is not None else None
        roots.append(root)
        if root is not None:
            firsts.append(offset // piece_length)
            first_files.append(i)
            if n > piece_length and root not in layers:
                layers[root] = _layer(layers_in, root, n, piece_length, tf.path, hybrid)
        offset += n
    layers = {k: v for k, v in layers.items() if v is not None}
    return V2Info(
        info_hash=hashlib.sha256(info_bytes).digest(), piece_length=piece_length,
        hybrid=hybrid, roots=tuple(roots), lengths=tuple(lengths), piece_layers=layers,
        _first_pieces=tuple(firsts), _first_files=tuple(first_files),
        num_pieces=-(-offset // piece_length),
        _root_files={r: i for i, r in enumerate(roots) if r is not None})


def hybrid(top: dict, info: dict, info_bytes: bytes, rows: list[Row], piece_length: int,
           component, check_length) -> V2Info:
    """The V2Info of a hybrid whose v1 file list is ``rows``: its tree must match."""
    tree, multi = tree_files(info, component, check_length)
    check_hybrid(rows, tree, piece_length, multi)
    return build(top, info_bytes, tree, rows, piece_length, True)


def v2_only(top: dict, info: dict, info_bytes: bytes, piece_length: int, component,
            check_length) -> tuple[V2Info, list[Row], bool, list[tuple[str, ...] | None]]:
    """A v2-only torrent's V2Info, its stream's file rows (``pad_layout``), whether
    it is multi-file, and each row's symlink target (None: not a symlink)."""
    tree, multi = tree_files(info, component, check_length)
    rows = pad_layout(tree, piece_length)
    links: list[tuple[str, ...] | None] = []
    for f in tree:  # the rows are the tree's files, each followed by its padding if any
        links.append(f.symlink)
        if f.length % piece_length:
            links.append(None)
    return build(top, info_bytes, tree, rows, piece_length, False), rows, multi, links


def _layer(layers_in: dict, root: bytes, length: int, piece_length: int,
           path: tuple[str, ...], hybrid: bool) -> bytes | None:
    shown = "/".join(path)
    layer = layers_in.get(root)
    if layer is None:
        if hybrid:
            return None
        raise V2Error(f"v2 torrent has no piece layer for {shown!r} (fetching piece "
                      "layers from peers is not supported yet)")
    pieces = -(-length // piece_length)
    if not isinstance(layer, bytes) or len(layer) != pieces * merkle.HASH_SIZE:
        raise V2Error(f"invalid torrent: the piece layer of {shown!r} is not "
                      f"{pieces} hashes of 32 bytes")
    hashes = [layer[i:i + merkle.HASH_SIZE] for i in range(0, len(layer), merkle.HASH_SIZE)]
    if merkle.root_from_piece_layer(hashes, piece_length) != root:
        raise V2Error(f"invalid torrent: the piece layer of {shown!r} does not match its "
                      "pieces root")
    return layer


def layer_needs(info: dict) -> tuple[int, list[tuple[bytes, int]]]:
    """``(piece length, [(pieces root, file length), ...])`` of the files of a v2 info
    dictionary longer than one piece: the piece layers a torrent made from it (a
    magnet link's metadata) must get from peers. V2Error if it is not usable v2."""
    if not is_v2(info):
        return 0, []
    piece_length = info.get(b"piece length")
    if (not isinstance(piece_length, int) or piece_length < merkle.BLOCK_SIZE
            or piece_length & (piece_length - 1)):
        raise V2Error("invalid torrent: bad v2 'piece length'")

    def length(value, what):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise V2Error(f"invalid torrent: bad length for {what}")
        return value
    files, _ = tree_files(info, lambda name, shown: name, length)
    needs = {f.root: f.length for f in files if f.root is not None and f.length > piece_length}
    return piece_length, list(needs.items())
