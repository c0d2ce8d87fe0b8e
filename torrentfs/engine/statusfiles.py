"""The ``files`` list of a torrent's status (``status.snapshot``), kept encoded.

A torrent of 100,000 files has a status file of 5.5 MB, nearly all of it this list;
building its dicts and ``json.dumps`` of them took 0.15 s of the trio thread at every
publish, right as the kernel lists a fresh mount. Paths and sizes never change, only
each file's verified bytes, which change only with the verified pieces. So each
file's entry is encoded once, as JSON text, and only the entries of files whose
pieces changed since the last snapshot are encoded again; with no change the
previous text is used as it is.

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


def file_path(meta, index: int) -> str:
    """A file's path as the mount shows it (the torrent's folder first)."""
    f = meta.files[index]
    return "/".join((meta.name, *f.path)) if meta.multi_file else meta.name


class _Encoded:
    """One torrent's entries as JSON text, and the verified pieces they show."""

    def __init__(self, meta, geometry) -> None:
        self.meta, self.geometry = meta, geometry
        self.shown = [i for i, f in enumerate(meta.files) if not f.padding]
        self.position = {index: n for n, index in enumerate(self.shown)}
        self.heads = [f'{{"path":{_quote(file_path(meta, i))},'
                      f'"size":{geometry.file_lengths[i]},"verified":' for i in self.shown]
        self.verified = [0] * len(self.shown)
        self.entries = [head + "0}" for head in self.heads]
        self.flags = bytes(geometry.num_pieces)  # nothing verified yet
        self.text: str | None = None

    def update(self, have) -> str:
        flags = bytes(have.flags())
        if self.text is not None and flags == self.flags:
            return self.text
        g = self.geometry
        diff = (int.from_bytes(flags, "little") ^ int.from_bytes(self.flags, "little")
                ).to_bytes(len(flags), "little")
        changed = [m.start() for m in _CHANGED.finditer(diff)]
        if len(changed) > _MANY:
            files = self.shown
        else:
            files = sorted({s.file_index for p in changed for s in g.piece_spans(p)})
        for i in files:
            n = self.position.get(i)
            if n is not None:
                v = g.file_verified(have, i)
                if v != self.verified[n]:
                    self.verified[n] = v
                    self.entries[n] = f"{self.heads[n]}{v}}}"
        self.flags = flags
        self.text = "[" + ",".join(self.entries) + "]"
        return self.text


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
