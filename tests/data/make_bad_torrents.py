#!/usr/bin/env python3
"""Write the corpus of malformed and hostile .torrent files in bad_torrents/.

Reproducible: no randomness, no clock; running it again gives the same bytes
(tests/test_corpus.py checks that the committed files are what this script makes).
Each case also goes into bad_torrents/INDEX, one line per file:

    FILE | OUTCOME | EXPECT | WHAT IS WRONG

OUTCOME is ``error`` (``torrentfs info`` and ``torrentfs mount`` print one line
holding EXPECT and exit non-zero), ``mounts-sanitised`` (the torrent mounts;
EXPECT is the JSON list of every path the mount shows, as mended by metainfo) or
``repaired`` (likewise, and the names are libtorrent's: libtorrent loads the
torrent, repairing it, and the files get the same names in both).

Usage: python tests/data/make_bad_torrents.py [OUT_DIR]
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

PL = 16384


# -- a tiny bencoder that can also write what a correct one never would ----------

def enc(v, sort: bool = True) -> bytes:
    if isinstance(v, bool):
        raise TypeError("no booleans in bencode")
    if isinstance(v, int):
        return b"i%de" % v
    if isinstance(v, str):
        v = v.encode()
    if isinstance(v, bytes):
        return b"%d:%s" % (len(v), v)
    if isinstance(v, list):
        return b"l" + b"".join(enc(x, sort) for x in v) + b"e"
    if isinstance(v, dict):
        items = sorted(v.items()) if sort else list(v.items())
        return b"d" + b"".join(enc(k, sort) + enc(x, sort) for k, x in items) + b"e"
    raise TypeError(type(v))


def pieces(total: int, piece_length: int = PL) -> bytes:
    n = -(-total // piece_length)
    return b"".join(hashlib.sha1(i.to_bytes(4, "big")).digest() for i in range(n))


def single(name=b"file.bin", length=40000, **extra) -> dict:
    info = {b"name": name, b"piece length": PL, b"length": length,
            b"pieces": pieces(length) if isinstance(length, int) and 0 < length < 1 << 30 else b""}
    info.update({k.encode() if isinstance(k, str) else k: v for k, v in extra.items()})
    return info


def multi(files, name=b"top", **extra) -> dict:
    """files: (path components, length) pairs or ready entry dicts."""
    entries = [f if isinstance(f, dict) else {b"path": list(f[0]), b"length": f[1]}
               for f in files]
    total = sum(e[b"length"] for e in entries if isinstance(e.get(b"length"), int))
    info = {b"name": name, b"piece length": PL, b"files": entries,
            b"pieces": pieces(total) if 0 < total < 1 << 30 else b""}
    info.update({k.encode() if isinstance(k, str) else k: v for k, v in extra.items()})
    return info


def without(d: dict, *keys: bytes) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def torrent(info, **top) -> bytes:
    d = {b"info": info}
    d.update({k.replace("_", " ").encode(): v for k, v in top.items()})
    return enc(d)


GOOD = torrent(single())
GOOD_INFO = enc(single())
LONG = b"x" * 300


# -- the cases ----------------------------------------------------------------------

CASES: list[tuple[str, str, object, str, bytes]] = []


def error(name: str, expect: str, why: str, data: bytes) -> None:
    CASES.append((name, "error", expect, why, data))


def mounts(name: str, paths: list[str], why: str, data: bytes) -> None:
    CASES.append((name, "mounts-sanitised", paths, why, data))


def repaired(name: str, paths: list[str], why: str, data: bytes) -> None:
    CASES.append((name, "repaired", paths, why, data))


# bad bencode
error("empty", "the data is empty", "an empty file", b"")
error("not-bencode", "does not start with a bencoded dictionary", "an HTML page, not bencode",
      b"<html><body>404 Not Found</body></html>\n")
error("top-level-list", "does not start with a bencoded dictionary",
      "a valid torrent wrapped in a list", b"l" + GOOD + b"e")
error("truncated", "unterminated", "the last byte is missing", GOOD[:-1])
error("truncated-in-string", "runs past the end", "cut in the middle of the piece hashes",
      GOOD[:GOOD.index(b"6:pieces") + 20])
error("int-leading-zero", "leading zero", "length written i040000e",
      GOOD.replace(b"i40000e", b"i040000e"))
error("int-negative-zero", "negative zero", "an integer written i-0e",
      torrent(single(private=0)).replace(b"i0e", b"i-0e"))
error("int-too-many-digits", "more than 32 digits", "a 40-digit length",
      GOOD.replace(b"i40000e", b"i" + b"9" * 40 + b"e"))
error("int-no-digits", "integer has no digits", "a length written ie",
      GOOD.replace(b"i40000e", b"ie"))
error("string-length-leading-zero", "string length has a leading zero", "a key written 04:name",
      GOOD.replace(b"4:name", b"04:name"))
error("string-length-huge", "runs past the end", "a string claiming 99 GB",
      b"d4:info99999999999:xe")
error("string-length-absurd", "absurdly large", "a string length of 25 digits",
      b"d4:info" + b"9" * 25 + b":xe")
error("duplicate-key", "duplicate dictionary key b'name'", "the info dictionary has 'name' twice",
      b"d4:infod6:lengthi40000e4:name3:abc4:name8:file.bin12:piece lengthi16384e6:pieces60:"
      + pieces(40000) + b"ee")
error("key-not-string", "dictionary key is not a string", "an integer used as a dictionary key",
      b"d4:infod" + GOOD_INFO[1:-1] + b"i1ei2eee")
error("key-without-value", "dictionary key has no value", "'info' with nothing after it",
      b"d4:infoe")
repaired("trailing-garbage", ["file.bin"],
         "bytes after the torrent's dictionary: ignored, as libtorrent does (was refused)",
         GOOD + b"\nGARBAGE")
repaired("trailing-newline", ["file.bin"], "a newline after the torrent's dictionary: ignored",
         GOOD + b"\n")
error("nesting-depth-bomb", "nesting deeper than 64", "100000 nested lists",
      b"d7:comment" + b"l" * 100_000 + b"e" * 100_000 + b"4:info" + GOOD_INFO + b"e")
error("bad-byte", "unexpected byte", "a value starting with 'x'", b"d4:infox")
# wrong types
error("info-is-list", "'info' is not a dictionary", "info is a list",
      torrent([single()]))
error("name-is-int", "'name' is not a string", "name is an integer", torrent(single(name=42)))
error("length-is-string", "length of 'file.bin' is not an integer", "length is a string",
      torrent(single(length=b"40000") | {b"pieces": pieces(40000)}))
error("pieces-is-list", "'pieces' is not a byte string", "pieces is a list of hashes",
      torrent(single() | {b"pieces": [pieces(40000)]}))
error("pieces-is-int", "'pieces' is not a byte string", "pieces is an integer",
      torrent(single() | {b"pieces": 3}))
error("piece-length-is-string", "'piece length' is not an integer", "piece length is a string",
      torrent(single() | {b"piece length": b"16384"}))
error("files-is-dict", "'files' is not a list", "files is a dictionary",
      torrent(multi([((b"a",), 10)]) | {b"files": {b"a": 10}}))
error("file-entry-is-list", "entry 0 of 'files' is not a dictionary", "a files entry is a list",
      torrent(multi([((b"a",), 10)]) | {b"files": [[b"a", 10]]}))
error("path-is-string", "not a list of strings", "a path is a string, not a list",
      torrent(multi([{b"path": b"dir/a", b"length": 10}])))
error("path-has-int", "not a list of strings", "a path component is an integer",
      torrent(multi([{b"path": [b"dir", 7], b"length": 10}])))
# missing keys
error("missing-info", "missing 'info'", "no info dictionary",
      enc({b"announce": b"http://127.0.0.1:1/announce"}))
error("missing-pieces", "missing 'pieces'", "info has no pieces",
      torrent(without(single(), b"pieces")))
error("missing-piece-length", "missing 'piece length'", "info has no piece length",
      torrent(without(single(), b"piece length")))
error("missing-name", "missing 'name'", "info has no name", torrent(without(single(), b"name")))
error("missing-length-and-files", "neither 'length' nor 'files'", "info has neither length nor files",
      torrent(without(single(), b"length")))
error("both-length-and-files", "both 'length' and 'files'", "info has both length and files",
      torrent(single(files=[{b"path": [b"a"], b"length": 40000}])))
error("file-without-length", "file 'a' has no 'length'", "a files entry has no length",
      torrent(multi([{b"path": [b"a"]}]) | {b"pieces": pieces(1)}))
error("v2-only", "no valid 'pieces root'", "a BEP 52 v2-only info whose pieces root is all zeros",
      torrent({b"name": b"v2", b"piece length": PL, b"meta version": 2,
               b"file tree": {b"a": {b"": {b"length": 10, b"pieces root": b"\0" * 32}}}}))
# lengths
error("length-negative", "negative length -1", "a length of -1",
      torrent(single(length=-1)))
error("file-length-negative", "negative length -40000 for file 'b'",
      "a negative file length that would cancel another one out",
      torrent(multi([((b"a",), 80000), ((b"b",), -40000)]) | {b"pieces": pieces(40000)}))
error("length-over-2-63", "over the 1 PiB limit", "a length of 2**64 (does not fit off_t)",
      torrent(single(length=2**64)))
error("total-over-limit", "total length 1407374883553280 is over the 1 PiB limit",
      "five files of 256 TiB each: every one is allowed, their sum is not",
      torrent(multi([((b"f%d" % i,), 2**48) for i in range(5)])))
error("pieces-not-multiple-of-20", "not a multiple of 20", "pieces is 59 bytes",
      torrent(single() | {b"pieces": pieces(40000)[:-1]}))
error("piece-count-too-few", "holds 2 hashes", "2 hashes for 3 pieces",
      torrent(single() | {b"pieces": pieces(40000)[:40]}))
error("piece-count-too-many", "holds 4 hashes", "4 hashes for 3 pieces",
      torrent(single() | {b"pieces": pieces(40000) + pieces(1)}))
error("piece-length-2-40", "larger than 512 MiB", "a 1 TiB piece length (would exhaust memory)",
      torrent(single() | {b"piece length": 2**40, b"pieces": pieces(1)}))
error("piece-length-zero", "'piece length' must be positive, got 0", "a piece length of 0",
      torrent(single() | {b"piece length": 0}))
error("piece-length-negative", "'piece length' must be positive", "a negative piece length",
      torrent(single() | {b"piece length": -16384}))
error("files-empty-list", "torrent has no data", "an empty files list", torrent(multi([])))
error("zero-total-length", "torrent has no data", "a single file of length 0",
      torrent(single(length=0)))
error("all-files-empty", "torrent has no data", "every file has length 0",
      torrent(multi([((b"a",), 0), ((b"b",), 0)])))
# hostile paths
# hostile paths: libtorrent repairs them (was: refused); no repaired name leaves the folder
repaired("path-dotdot", ["top", "top/etc", "top/etc/cron.d", "top/etc/cron.d/evil"],
         "a path climbing out of the torrent with ..: the .. components are dropped",
         torrent(multi([((b"..", b"..", b"..", b"..", b"etc", b"cron.d", b"evil"), 10)])))
error("name-dotdot", "unsafe path in torrent: '..'", "a single file named .. (nothing is left)",
      torrent(single(name=b"..")))
repaired("name-dot", ["adfc745e0ee9c437109211dc78059bb931812f16",
                      "adfc745e0ee9c437109211dc78059bb931812f16/a"],
         "a multi-file torrent named .: the folder is named by the info-hash",
         torrent(multi([((b"a",), 10)], name=b".")))
repaired("name-absolute", ["etcpasswd"], "an absolute name: the slashes are dropped",
         torrent(single(name=b"/etc/passwd")))
repaired("path-absolute", ["top", "top/root.sshauthorized_keys"],
         "an absolute path as a component: the slashes are dropped",
         torrent(multi([((b"/root/.ssh/authorized_keys",), 10)])))
repaired("name-nul", ["evil.exe.txt"], "a NUL in the name (evil.exe\\0.txt): dropped",
         torrent(single(name=b"evil.exe\x00.txt")))
repaired("path-nul", ["top", "top/dir", "top/dir/ab"], "a NUL in a path component: dropped",
         torrent(multi([((b"dir", b"a\x00b"), 10)])))
repaired("path-empty-component", ["top", "top/a", "top/a/_", "top/a/_/b"],
         "an empty path component: becomes _",
         torrent(multi([((b"a", b"", b"b"), 10)])))
error("path-empty-list", "entry 0 of 'files' has an empty path", "a file with no path at all",
      torrent(multi([((), 10)])))
repaired("path-slash-in-component", ["top", "top/a....b"], "'/' inside one component: dropped",
         torrent(multi([((b"a/../../b",), 10)])))
repaired("path-backslash", ["top", "top/....evil.exe"],
         "a Windows traversal with backslashes: dropped",
         torrent(multi([((b"..\\..\\evil.exe",), 10)])))
repaired("path-utf8-dotdot", ["top", "top/_"],
         "a harmless path whose preferred path.utf-8 is ..: nothing is left, so _",
         torrent(multi([{b"path": [b"ok"], b"path.utf-8": [b".."], b"length": 10}])))
repaired("padding-path-dotdot", ["top", "top/a"], "a BEP 47 padding file named .. (never shown)",
         torrent(multi([{b"path": [b".."], b"length": 16374, b"attr": b"p"}, ((b"a",), 10)])))
repaired("padding-without-path", ["top", "top/a", "top/b"], "a BEP 47 padding file with no path",
         torrent(multi([((b"a",), 10), {b"length": 16374, b"attr": b"p"}, ((b"b",), 10)])))
# tree conflicts: libtorrent renames the later file name.1.ext (was: refused)
repaired("duplicate-paths", ["top", "top/dir", "top/dir/a", "top/dir/a.1"],
         "the same path twice: the second is renamed",
         torrent(multi([((b"dir", b"a"), 10), ((b"dir", b"a"), 20)])))
repaired("duplicate-after-mending", ["top", "top/caf_", "top/caf_.1"],
         "two Latin-1 names that both decode to caf_: the second is renamed",
         torrent(multi([((b"caf\xe9",), 10), ((b"caf\xe8",), 10)])))
repaired("duplicate-after-truncation", ["top", "top/" + "x" * 240, "top/" + "x" * 240 + ".1"],
         "two 300-byte names equal in their first 240 bytes: the second is renamed",
         torrent(multi([((LONG + b"a",), 10), ((LONG + b"b",), 10)])))
repaired("file-and-dir-same-name", ["top", "top/a", "top/a.1", "top/a/b"],
         "a is a file and also a directory: the file is renamed",
         torrent(multi([((b"a",), 10), ((b"a", b"b"), 10)])))

# mounted, with names mended
repaired("name-non-utf8", ["caf_.bin"],
       "a Latin-1 name: each invalid UTF-8 sequence becomes _, as in libtorrent",
       torrent(single(name=b"caf\xe9 \xff.bin")))
repaired("path-non-utf8", ["top", "top/_dir", "top/_dir/f_.txt"],
       "invalid UTF-8 in path components",
       torrent(multi([((b"\xc3\x28dir", b"f\xfe.txt"), 100)])))
repaired("name-too-long", ["x" * 240 + ".mkv"],
       "a 304-byte name: cut at 240 bytes, keeping .mkv, as in libtorrent",
       torrent(single(name=LONG + b".mkv")))
repaired("path-too-long-multibyte", ["top", "top/" + "é" * 120 + ".txt"],
       "a 404-byte component of 2-byte characters: cut at 240 bytes, keeping .txt",
       torrent(multi([((("é" * 200 + ".txt").encode(),), 10)])))
repaired("control-characters", ["top_", "top_/evil_[2J_.txt", "top_/tab_and_cr"],
       "newline, ESC, BEL, tab and CR in names become _",
       torrent(multi([((b"evil\x1b[2J\x07.txt",), 10), ((b"tab\tand\rcr",), 10)], name=b"top\n")))
mounts("utf8-keys-override", ["Grüße", "Grüße/ok.txt"],
       "garbage name and path, good name.utf-8 and path.utf-8 (preferred)",
       torrent(multi([{b"path": [b"\xff\xfe"], b"path.utf-8": [b"ok.txt"], b"length": 10}],
                     name=b"\xff", **{"name.utf-8": "Grüße".encode()})))
mounts("unsorted-info-keys", ["x.bin"],
       "info keys out of order: accepted, hashed as they stand in the file",
       b"d4:infod6:pieces20:" + pieces(5) + b"4:name5:x.bin12:piece lengthi16384e6:lengthi5eee")
mounts("piece-length-not-power-of-two", ["odd.bin"], "a piece length of 20000 (BEP 3 allows it)",
       torrent(single(name=b"odd.bin", length=50000) | {b"piece length": 20000,
                                                        b"pieces": pieces(50000, 20000)}))
mounts("piece-length-below-block", ["tiny.bin"], "a piece length of 1000, below the 16 KiB block",
       torrent(single(name=b"tiny.bin", length=5500) | {b"piece length": 1000,
                                                        b"pieces": pieces(5500, 1000)}))
mounts("padding-files", ["top", "top/a.bin", "top/b.bin", "top/c.bin"],
       "BEP 47 padding files with the same name: hidden, not duplicates",
       torrent(multi([((b"a.bin",), 100), {b"path": [b".pad", b"16284"], b"length": 16284, b"attr": b"p"},
                      ((b"b.bin",), 100), {b"path": [b".pad", b"16284"], b"length": 16284, b"attr": b"p"},
                      ((b"c.bin",), 100)])))
mounts("junk-optional-keys", ["file.bin"],
       "announce, announce-list, comment, created by, creation date, url-list, private of wrong types",
       torrent(single(private=b"yes"), announce=5, announce_list=[b"x", [7, [b"y"]], 3],
               comment=[b"c"], created_by=9, creation_date=b"yesterday", url_list=12))
mounts("creation-date-huge", ["file.bin"], "a creation date of 2**62 s (would overflow st_mtime_ns)",
       torrent(single(), creation_date=2**62))
mounts("comment-escape-sequences", ["file.bin"],
       "terminal escape sequences in comment and created by (info prints them as _)",
       torrent(single(), comment=b"\x1b]0;pwned\x07\x1b[2J", created_by=b"evil\r\nfake: line"))
mounts("tracker-url-newline", ["file.bin"], "a tracker URL with a newline: dropped",
       torrent(single(), announce=b"http://127.0.0.1:1/\nfake"))
mounts("unknown-keys", ["top", "top/a"],
       "unknown keys at every level, nested deep: ignored",
       torrent(multi([{b"path": [b"a"], b"length": 10, b"md5sum": b"0" * 32, b"x": {b"y": [[[]]]}}],
                     **{"x-evil": {b"..": b"/etc/passwd"}}), x={b"info": 1}))
mounts("deep-tree", ["top"] + ["top/" + "/".join(["d"] * n) for n in range(1, 41)]
       + ["top/" + "/".join(["d"] * 40 + ["f"]), "top/z"],
       "a file 40 directories deep and zero-length files",
       torrent(multi([((b"d",) * 40 + (b"f",), 0), ((b"z",), 10)])))


def write(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.torrent"):
        old.unlink()
    lines = ["# FILE | OUTCOME | EXPECT | WHAT IS WRONG  (written by tests/data/make_bad_torrents.py)",
             "# error: one line naming EXPECT, non-zero exit; mounts-sanitised: EXPECT lists the mount"]
    for name, outcome, expect, why, data in CASES:
        (out / f"{name}.torrent").write_bytes(data)
        shown = json.dumps(expect) if outcome != "error" else expect
        lines.append(f"{name}.torrent | {outcome} | {shown} | {why}")
    (out / "INDEX").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("bad_torrents"))
