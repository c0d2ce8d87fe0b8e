"""The ``files`` list of a torrent's status (``status.snapshot``), kept encoded.

A torrent of 100,000 files has a status file of 5.5 MB, nearly all of it this list;
building its dicts and ``json.dumps`` of them took 0.15 s of the trio thread at every
publish, right as the kernel lists a fresh mount. Paths and sizes never change, only
each file's verified bytes, which change only with the verified pieces. So each
file's entry is encoded once, as JSON text, and only the entries of files whose
pieces changed since the last snapshot are encoded again; a snapshot joins them.

``Files`` is what the snapshots that ``status.publish`` takes hold under ``"files"``
(other snapshots hold the plain list it iterates); its ``json()`` is the encoded
list, which ``status.encode`` splices into the document.
"""

from __future__ import annotations

import re
import weakref
from json.encoder import encode_basestring_ascii as _quote  # what json.dumps uses

_CHANGED = re.compile(rb"[^\x00]")
#: Past this many changed pieces, every file's entry is encoded again (cheaper than
#: mapping each piece to its files).
_MANY = 4096
#: Up to this many files, each file's verified bytes are counted at every snapshot.
_FEW = 256


def file_path(meta, index: int) -> str:
    """A file's path as the mount shows it (the torrent's folder first)."""
    f = meta.files[index]
    return "/".join((meta.name, *f.path)) if meta.multi_file else meta.name


class _Encoded:
    """One torrent's entries as JSON text (None for a padding file), and the
    verified pieces they show. Only the entries are kept (11 MB for 100,000 files):
    the list is joined again at each snapshot (milliseconds)."""

    def __init__(self, meta, geometry) -> None:
        self.meta, self.geometry = meta, geometry
        top = meta.name + "/" if meta.multi_file else None  # no list of paths besides
        self.entries: list[str | None] = [
            None if f.padding else
            f'{{"path":{_quote(meta.name if top is None else top + "/".join(f.path))},'
            f'"size":{size},"verified":0}}'
            for f, size in zip(meta.files, geometry.file_lengths)]
        # The verified pieces shown, to find what changed: only for many files (a
        # million pieces in one file would keep a megabyte for nothing).
        self.flags = bytes(geometry.num_pieces) if len(self.entries) > _FEW else None

    def update(self, have) -> str:
        if self.flags is None:  # few files: each counted again, cheap
            g, entries = self.geometry, self.entries
            for i, entry in enumerate(entries):
                if entry is not None:
                    entries[i] = f"{entry[:entry.rindex(':') + 1]}{g.file_verified(have, i)}}}"
            return "[" + ",".join(filter(None, entries)) + "]"
        flags = bytes(have.flags())
        if flags != self.flags:
            g, entries = self.geometry, self.entries
            diff = (int.from_bytes(flags, "little") ^ int.from_bytes(self.flags, "little")
                    ).to_bytes(len(flags), "little")
            changed = [m.start() for m in _CHANGED.finditer(diff)]
            if len(changed) > _MANY:
                files = range(len(entries))
            else:
                files = {s.file_index for p in changed for s in g.piece_spans(p)}
            for i in files:
                entry = entries[i]
                if entry is not None:
                    head = entry[:entry.rindex(":") + 1]  # all but the verified bytes
                    entries[i] = f"{head}{g.file_verified(have, i)}}}"
            self.flags = flags
        return "[" + ",".join(filter(None, self.entries)) + "]"


_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class Files:
    """A torrent's files as its status shows them (no padding files), in order:
    iterating gives the plain dicts, ``json()`` the list encoded."""

    def __init__(self, torrent) -> None:
        self.torrent = torrent
        self.meta, self.geometry, self.have = torrent.meta, torrent.geometry, torrent.have

    def json(self) -> str:
        """The list encoded as JSON (compact, ASCII, as ``json.dumps`` writes it)."""
        try:
            enc = _cache.get(self.torrent)
        except TypeError:  # not weakly referable (a stand-in in a test): no cache
            enc = None
        if enc is None or enc.meta is not self.meta or enc.geometry is not self.geometry:
            enc = _Encoded(self.meta, self.geometry)
            try:
                _cache[self.torrent] = enc
            except TypeError:
                pass
        return enc.update(self.have)

    def __iter__(self):
        g, have, meta = self.geometry, self.have, self.meta
        return ({"path": file_path(meta, i), "size": g.file_lengths[i],
                 "verified": g.file_verified(have, i)}
                for i, f in enumerate(meta.files) if not f.padding)
