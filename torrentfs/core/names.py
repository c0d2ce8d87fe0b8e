"""Names from a torrent, repaired as libtorrent repairs them. Pure.

A torrent's names become paths on the user's disk (the cache) and in the mount, so
each component must be a plain name. libtorrent (2.0, ``sanitize_append_path_element``
and ``resolve_duplicate_filenames``) loads torrents whose names are not, repairing
them; we repair the same way, so a file has the same name in torrentfs as in
libtorrent, qBittorrent or Deluge:

* ``/``, ``\\``, NUL and the Unicode writing-direction controls inside a component
  are dropped (``a/../../b`` becomes ``a....b``);
* a component that is ``.`` or ``..`` (after that) is dropped, so a path can never
  climb out; an empty one becomes ``_``; a path left with no component becomes
  ``_``;
* a torrent name that is dropped becomes the info-hash in hex (a multi-file
  torrent: the folder's name; a single file without a name is refused);
* a file whose path is taken already (by an earlier file, or by a folder; compared
  without ASCII case, as libtorrent does) is renamed ``name.1.ext`` (``.2``, ... until
  free);
* a BEP 47 padding file needs no path (it is never shown).

Control characters and over-long components are mended by ``metainfo`` (``_`` and a
cut at 255 bytes). Every repair is described in one line for the log.
"""

from __future__ import annotations

#: Characters libtorrent drops from names: separators, NUL, and the writing-direction
#: controls that make ``exe.avi`` show as ``iva.exe``.
DROPPED = frozenset("/\\\x00\u202a\u202b\u202c\u202d\u202e\u200e\u200f")


def component(text: str) -> str | None:
    """One path component repaired; None when it is dropped (``.``, ``..``)."""
    if text == ".":
        return None
    if text == "":
        return "_"
    if not DROPPED.isdisjoint(text):
        text = "".join(c for c in text if c not in DROPPED)
    if len(text) <= 2 and text.strip(".") == "":
        return None  # "", "." or ".." once the dropped characters are gone
    return text


def path(texts: list[str]) -> tuple[str, ...]:
    """A file's path repaired: dropped components left out, ``_`` if none is left."""
    out = tuple(c for c in map(component, texts) if c is not None)
    return out or ("_",)


def _key(parts: tuple[str, ...]) -> str | bytes:
    """The path compared without ASCII case (libtorrent's ``string_eq_no_case``)."""
    text = "/".join(parts)
    if text.isascii():
        return text.lower()
    return text.encode("utf-8", "surrogatepass").lower()  # ASCII letters only


def dedupe(paths: list[tuple[str, ...] | None]) -> tuple[list[tuple[str, ...] | None], list[str]]:
    """Rename files whose path is taken, as libtorrent does: every folder first, then
    each file in order (``None`` entries, padding, take no name). Returns the paths
    and one line per renamed file."""
    taken: set[str | bytes] = set()
    folders = {p[:-1] for p in paths if p is not None and len(p) > 1}
    for folder in folders:
        for depth in range(1, len(folder) + 1):
            taken.add(_key(folder[:depth]))
    out: list[tuple[str, ...] | None] = []
    notes: list[str] = []
    for p in paths:
        if p is None:
            out.append(p)
            continue
        key = _key(p)
        if key in taken:
            last = p[-1]
            dot = last.rfind(".")
            base, ext = (last[:dot], last[dot:]) if dot >= 0 else (last, "")
            n = 0
            while True:
                n += 1
                renamed = (*p[:-1], f"{base}.{n}{ext}")
                key = _key(renamed)
                if key not in taken:
                    break
            notes.append(f"{'/'.join(p)!r} is taken: renamed {'/'.join(renamed)!r}")
            p = renamed
        taken.add(key)
        out.append(p)
    return out, notes


def symlink_target(target: tuple[str, ...], files: set[tuple[str, ...]],
                   folders: set[tuple[str, ...]]) -> tuple[str, ...] | None:
    """A BEP 47 symlink's target (components from the torrent's root), if it names a
    file or folder of the torrent without leaving it; else None (the link is shown
    broken, pointing at itself, as libtorrent makes it)."""
    parts: list[str] = []
    for c in target:
        if c in ("", "."):
            continue
        if c == "..":
            if not parts:
                return None
            parts.pop()
            continue
        if not DROPPED.isdisjoint(c):
            return None
        parts.append(c)
    t = tuple(parts)
    return t if t and (t in files or t in folders) else None


def decode(raw: bytes) -> str:
    """Bytes of a name as text, as libtorrent reads them: valid UTF-8 as it is; each
    invalid sequence (as long as its first byte says) becomes one ``_``."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        pass
    out = []
    i, n = 0, len(raw)
    while i < n:
        b = raw[i]
        seq = 1 if b < 0x80 else 2 if b >> 5 == 0b110 else 3 if b >> 4 == 0b1110 \
            else 4 if b >> 3 == 0b11110 else 0
        if seq == 0:
            out.append("_")
            i += 1
            continue
        chunk = raw[i:i + seq]
        try:
            out.append(chunk.decode("utf-8") if len(chunk) == seq else "_")
        except UnicodeDecodeError:
            out.append("_")
        i += seq
    return "".join(out)


#: libtorrent cuts a component once it reaches this many bytes, keeping an
#: extension found in its last 10 bytes.
CUT_AT = 240


def truncate(text: str) -> str:
    """A long component cut as libtorrent cuts it: at the first character that
    brings it to 240 bytes of UTF-8, then the extension (a dot in the last 10 bytes)
    appended."""
    raw = text.encode("utf-8")
    n = len(raw)
    if n <= CUT_AT:
        return text
    out = bytearray()
    found = False
    i = 0
    while i < n:
        b = raw[i]
        seq = 1 if b < 0x80 else 2 if b >> 5 == 0b110 else 3 if b >> 4 == 0b1110 else 4
        out += raw[i:i + seq]
        if len(out) >= CUT_AT and not found:
            dot = next((j for j in range(n - 1, max(n - 10, i), -1) if raw[j] == 0x2E), -1)
            if dot == -1:
                break
            found = True
            i = dot
            continue
        i += seq
    return out.decode("utf-8", "replace")
