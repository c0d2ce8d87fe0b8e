"""Tests for torrentfs.metainfo (pure .torrent parsing)."""

from __future__ import annotations

import hashlib
import re
from urllib.parse import parse_qsl, urlsplit

import bencodepy
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torrentfs.core.magnet import link as magnet_link
from torrentfs.core.metainfo import FileEntry, Metainfo, MetainfoError, parse

PL = 16384  # piece length used by the helpers


def sha1(b: bytes) -> bytes:
    return hashlib.sha1(b).digest()


def fake_pieces(total: int, piece_length: int = PL) -> bytes:
    n = -(-total // piece_length)
    return b"".join(sha1(i.to_bytes(4, "big")) for i in range(n))


def _extra(info: dict, extra: dict | None, kw: dict) -> dict:
    info.update(extra or {})
    info.update({k.replace("_", " ").encode(): v for k, v in kw.items()})
    return info


def single_info(name=b"file.bin", length=40000, extra=None, **kw) -> dict:
    """A valid single-file info dict; ``extra`` (bytes keys) / ``kw`` override."""
    pieces = fake_pieces(length) if isinstance(length, int) and length > 0 else b""
    info = {b"name": name, b"piece length": PL, b"length": length, b"pieces": pieces}
    return _extra(info, extra, kw)


def multi_info(files, name=b"top", extra=None, **kw) -> dict:
    """files: list of (path components as bytes, length) or ready dicts."""
    entries = [
        f if isinstance(f, dict) else {b"path": list(f[0]), b"length": f[1]} for f in files
    ]
    total = sum(e[b"length"] for e in entries if isinstance(e.get(b"length"), int))
    info = {b"name": name, b"piece length": PL, b"files": entries, b"pieces": fake_pieces(max(total, 0))}
    return _extra(info, extra, kw)


def torrent(info, **top) -> bytes:
    d = {b"announce": b"http://tracker.example/announce", b"info": info}
    for k, v in top.items():  # announce_list -> 'announce-list', created_by -> 'created by'
        sep = "-" if k.endswith("_list") else " "
        d[k.replace("_", sep).encode()] = v
    return bencodepy.encode(d)


def raw_info_span(data: bytes) -> bytes:
    """The bytes of the info value of a torrent built by torrent()."""
    start = data.index(b"4:info") + len(b"4:info")
    return data[start:-1]  # 'info' is the last key, so its value runs to the final 'e'


# ---------------------------------------------------------------------------
# Happy paths


def test_single_file():
    data = torrent(
        single_info(),
        comment=b"hello",
        created_by=b"mktorrent 1.1",
        creation_date=1700000000,
    )
    m = parse(data)
    assert isinstance(m, Metainfo)
    assert m.name == "file.bin"
    assert not m.multi_file
    assert m.files == (FileEntry(("file.bin",), 40000, 0, False, False),)
    assert m.total_length == 40000
    assert m.piece_length == PL
    assert m.num_pieces == 3
    assert m.piece_hash(0) == sha1((0).to_bytes(4, "big"))
    assert m.piece_hash(2) == sha1((2).to_bytes(4, "big"))
    with pytest.raises(IndexError):
        m.piece_hash(3)
    with pytest.raises(IndexError):
        m.piece_hash(-1)
    assert [m.piece_size(i) for i in range(3)] == [PL, PL, 40000 - 2 * PL]
    assert m.info_bytes == raw_info_span(data)
    assert m.info_hash == sha1(m.info_bytes)
    assert m.info_hash_hex == m.info_hash.hex()
    assert m.announce_list == (("http://tracker.example/announce",),)
    assert m.url_list == ()
    assert m.private is False
    assert m.comment == "hello"
    assert m.created_by == "mktorrent 1.1"
    assert m.creation_date == 1700000000


def test_multi_file():
    files = [((b"a.txt",), 100), ((b"sub", b"b.bin"), 50000), ((b"sub", b"deeper", b"c"), 0)]
    data = torrent(multi_info(files, name=b"My Stuff", private=1))
    m = parse(data)
    assert m.multi_file
    assert m.name == "My Stuff"
    assert m.files == (
        FileEntry(("a.txt",), 100, 0, False, False),
        FileEntry(("sub", "b.bin"), 50000, 100, False, False),
        FileEntry(("sub", "deeper", "c"), 0, 50100, False, False),
    )
    assert [f.end for f in m.files] == [100, 50100, 50100]
    assert m.total_length == 50100
    assert m.num_pieces == 4
    assert m.private is True
    assert m.info_hash == sha1(raw_info_span(data))


def test_non_canonical_info_dict_hashes_raw_bytes():
    # Keys deliberately out of order ('pieces' before 'name'), hand-encoded.
    pieces = fake_pieces(5)
    info_raw = (
        b"d6:pieces20:" + pieces + b"4:name5:x.bin12:piece lengthi16384e6:lengthi5ee"
    )
    data = b"d4:info" + info_raw + b"8:announce9:http://t/e"
    m = parse(data)
    assert m.info_bytes == info_raw
    assert m.info_hash == sha1(info_raw)
    reencoded = bencodepy.encode(bencodepy.decode(info_raw))
    assert reencoded != info_raw
    assert m.info_hash != sha1(reencoded)
    assert m.name == "x.bin" and m.total_length == 5
    assert m.announce_list == (("http://t/",),)


def test_info_bytes_span_not_fooled_by_nested_info_keys():
    # An 'info' key inside another dict (and a string containing "4:info")
    # must not be taken for the top-level one.
    info = single_info(length=10)
    data = bencodepy.encode(
        {b"a": {b"info": b"decoy"}, b"comment": b"4:infod1:xi1ee", b"info": info}
    )
    m = parse(data)
    assert m.info_bytes == bencodepy.encode(info)


def test_padding_and_executable_attrs():
    files = [
        {b"path": [b"a.bin"], b"length": 1000},
        {b"path": [b".pad", b"15384"], b"length": 15384, b"attr": b"p"},
        {b"path": [b"run.sh"], b"length": 1000, b"attr": b"x"},
        {b"path": [b".pad", b"15384"], b"length": 15384, b"attr": b"p"},  # same name: allowed for pads
        {b"path": [b"c.bin"], b"length": 10, b"attr": b"hx"},
        {b"path": [b".pad", b"77"], b"length": 77},  # no attr: NOT padding
    ]
    m = parse(torrent(multi_info(files)))
    assert [f.padding for f in m.files] == [False, True, False, True, False, False]
    assert [f.executable for f in m.files] == [False, False, True, False, True, False]
    assert m.files[2].offset == PL
    assert m.files[4].offset == 2 * PL


def test_utf8_keys_preferred():
    files = [{b"path": [b"caf\xe9.txt"], b"path.utf-8": ["café.txt".encode()], b"length": 10}]
    info = multi_info(files, name=b"\xc4\xe9", extra={b"name.utf-8": "Äé".encode()})
    m = parse(torrent(info, **{"comment.utf-8": "ça va".encode(), "comment": b"\xe7a va"}))
    assert m.name == "Äé"
    assert m.files[0].path == ("café.txt",)
    assert m.comment == "ça va"


def test_wrongly_typed_utf8_key_is_ignored():
    files = [{b"path": [b"plain.txt"], b"path.utf-8": b"not-a-list", b"length": 10}]
    info = multi_info(files, name=b"plain", extra={b"name.utf-8": 5})
    m = parse(torrent(info))
    assert m.name == "plain"
    assert m.files[0].path == ("plain.txt",)


def test_invalid_utf8_is_replaced():
    # As libtorrent: each invalid sequence (as long as its first byte says) is one _.
    m = parse(torrent(single_info(name=b"bad\xff\xfename")))
    assert m.name == "bad__name"
    assert parse(torrent(single_info(name=b"caf\xe9 \xff.bin"))).name == "caf_.bin"
    m.name.encode("utf-8")  # always valid str


def test_long_names_cut_keeping_the_extension():
    # As libtorrent: cut once 240 bytes are reached, then an extension found in the
    # last 10 bytes is added.
    m = parse(torrent(single_info(name=LONG + b".mkv")))
    assert m.name == "x" * 240 + ".mkv"
    files = [((b"dir", "é".encode() * 128), 10), ((b"dir", b"a" * 300 + b"." + b"e" * 40), 10),
             ((b"." + b"h" * 300,), 10), ((b"y" * 300 + b".tar.gz",), 10)]
    m = parse(torrent(multi_info(files)))
    assert m.files[0].path == ("dir", "é" * 120)  # cut at a character boundary: 240 bytes
    assert m.files[1].path == ("dir", "a" * 240)  # a 41-byte "extension" is not kept
    assert m.files[2].path == ("." + "h" * 239,)
    assert m.files[3].path == ("y" * 240 + ".gz",)
    assert all(len(c.encode()) <= 255 for f in m.files for c in f.path)


def test_control_characters_become_underscores():
    files = [((b"a\nb\x1b[31m.txt",), 10), ((b"tab\there\x7f",), 10)]
    info = multi_info(files, name=b"top\r\n")
    m = parse(torrent(info, comment=b"line1\nline2\x1b]0;pwned\x07\x00",
                      announce_list=[[b"http://t/\nfake", b"http://good/"]]))
    assert m.name == "top__"
    assert [f.path for f in m.files] == [("a_b_[31m.txt",), ("tab_here_",)]
    assert m.comment == "line1_line2_]0;pwned__"
    assert m.trackers == ("http://good/",)


def test_creation_date_out_of_range_is_ignored():
    assert parse(torrent(single_info(), creation_date=2**62)).creation_date is None
    assert parse(torrent(single_info(), creation_date=-5)).creation_date is None


def test_piece_length_need_not_be_a_power_of_two():
    info = single_info(length=50_000, extra={b"piece length": 20_000, b"pieces": fake_pieces(50_000, 20_000)})
    m = parse(torrent(info))
    assert m.piece_length == 20_000 and m.num_pieces == 3 and m.piece_size(2) == 10_000


def test_oversized_input_refused_before_scanning():
    from torrentfs.core.metainfo import MAX_TORRENT_BYTES
    with pytest.raises(MetainfoError, match="over the 100 MiB limit"):
        parse(b"d" + b"0" * MAX_TORRENT_BYTES)


def test_announce_list_tiers_and_dedupe():
    data = torrent(
        single_info(),
        announce_list=[
            [b"http://a/ann", b"udp://b:80", b"http://a/ann"],  # duplicate within the tier
            [],  # empty tier dropped
            [b"udp://c:6969", 42, [b"nested"], b"\xff\xfe", b"  "],  # junk dropped
            [b"http://a/ann"],  # same URL in another tier is kept
        ],
        url_list=[b"http://seed/", b"http://seed/", 7],
    )
    m = parse(data)
    assert m.announce_list == (
        ("http://a/ann", "udp://b:80"),
        ("udp://c:6969",),
        ("http://a/ann",),
    )
    assert m.trackers == ("http://a/ann", "udp://b:80", "udp://c:6969")
    assert m.url_list == ("http://seed/",)


def test_announce_fallback_and_none():
    m = parse(torrent(single_info(), announce_list=[[], [5]]))
    assert m.announce_list == (("http://tracker.example/announce",),)
    m = parse(bencodepy.encode({b"info": single_info()}))
    assert m.announce_list == ()
    assert m.comment is None and m.created_by is None and m.creation_date is None
    m = parse(bencodepy.encode({b"info": single_info(), b"announce": 5, b"url-list": b"http://ws/"}))
    assert m.announce_list == ()
    assert m.url_list == ("http://ws/",)


def test_wrong_typed_optional_fields_ignored():
    m = parse(torrent(single_info(), comment=5, created_by=[b"x"], creation_date=b"yesterday"))
    assert m.comment is None and m.created_by is None and m.creation_date is None


def test_magnet():
    data = torrent(
        single_info(name="a b&c/ü".replace("/", "_").encode()),
        announce_list=[[b"http://t1/announce?x=1&y=2"], [b"udp://t2:80"]],
    )
    m = parse(data)
    link = magnet_link(m)
    assert link.startswith(f"magnet:?xt=urn:btih:{m.info_hash_hex}&dn=")
    assert " " not in link and "ü" not in link
    query = parse_qsl(urlsplit(link).query)
    assert query == [
        ("xt", f"urn:btih:{m.info_hash_hex}"),
        ("dn", "a b&c_ü"),
        ("tr", "http://t1/announce?x=1&y=2"),
        ("tr", "udp://t2:80"),
    ]


def test_magnet_without_trackers():
    m = parse(bencodepy.encode({b"info": single_info(name=b"x")}))
    assert magnet_link(m) == f"magnet:?xt=urn:btih:{m.info_hash_hex}&dn=x"


def test_accepts_bytearray_and_memoryview():
    data = torrent(single_info())
    assert parse(bytearray(data)) == parse(data) == parse(memoryview(data))


def test_repr_is_short():
    m = parse(torrent(single_info(length=PL * 5000)))
    assert len(repr(m)) < 1000


# ---------------------------------------------------------------------------
# Validation: one row per bad torrent

GOOD_PIECES = fake_pieces(40000)
LONG = b"x" * 256

BAD = [
    # not bencode at all / not a dictionary
    pytest.param(b"", "empty", id="empty-input"),
    pytest.param(b"hello world", "does not start with a bencoded dictionary", id="garbage"),
    pytest.param(b"li1ee", "does not start with a bencoded dictionary", id="top-is-list"),
    pytest.param(b"4:spam", "does not start with a bencoded dictionary", id="top-is-string"),
    # malformed bencode, reported with a byte offset
    pytest.param(b"d4:infoi03ee", "bad bencode at byte 7", id="int-leading-zero"),
    pytest.param(b"d4:infoi-0ee", "bad bencode at byte 7", id="int-negative-zero"),
    pytest.param(b"d4:infoiee", "bad bencode at byte 8", id="int-no-digits"),
    pytest.param(b"d4:infoi1x", "bad bencode at byte 9", id="int-unterminated"),
    pytest.param(b"d04:infoi1ee", "leading zero", id="string-length-leading-zero"),
    pytest.param(b"d4:info99:abce", "runs past the end", id="string-too-long"),
    pytest.param(b"di1ei2ee", "key is not a string", id="int-key"),
    pytest.param(b"d1:ai1e1:ai2ee", "duplicate dictionary key", id="duplicate-key"),
    pytest.param(b"d1:ae", "key has no value", id="key-without-value"),
    pytest.param(b"d1:ai1e", "unterminated", id="truncated"),
    pytest.param(b"d1:ax", "unexpected byte", id="bad-value-byte"),
    pytest.param(b"d1:a" + b"l" * 100 + b"e" * 100 + b"e", "nesting deeper", id="too-deep"),
    pytest.param(b"d1:ai" + b"9" * 33 + b"ee", "more than 32 digits", id="int-too-many-digits"),
    # info
    pytest.param(bencodepy.encode({b"announce": b"x"}), "missing 'info'", id="no-info"),
    pytest.param(bencodepy.encode({b"info": b"x"}), "'info' is not a dictionary", id="info-string"),
    # piece length
    pytest.param(torrent({k: v for k, v in single_info().items() if k != b"piece length"}),
                 "missing 'piece length'", id="no-piece-length"),
    pytest.param(torrent(single_info(extra={b"piece length": b"16384"})),
                 "'piece length' is not an integer", id="piece-length-string"),
    pytest.param(torrent(single_info(extra={b"piece length": 0})), "must be positive", id="piece-length-zero"),
    pytest.param(torrent(single_info(extra={b"piece length": -16384})), "must be positive",
                 id="piece-length-negative"),
    pytest.param(torrent(single_info(extra={b"piece length": 1024 * 1024 * 1024})), "larger than 512 MiB",
                 id="piece-length-huge"),
    # pieces
    pytest.param(torrent({k: v for k, v in single_info().items() if k != b"pieces"}),
                 "missing 'pieces'", id="no-pieces"),
    pytest.param(torrent(single_info(pieces=[GOOD_PIECES])), "'pieces' is not a byte string",
                 id="pieces-list"),
    pytest.param(torrent(single_info(extra={b"pieces": GOOD_PIECES[:-1]})), "not a multiple of 20",
                 id="pieces-ragged"),
    pytest.param(torrent(single_info(extra={b"pieces": GOOD_PIECES[:-20]})), "holds 2 hashes",
                 id="too-few-pieces"),
    pytest.param(torrent(single_info(extra={b"pieces": GOOD_PIECES + GOOD_PIECES[:20]})), "holds 4 hashes",
                 id="too-many-pieces"),
    # name
    pytest.param(torrent({k: v for k, v in single_info().items() if k != b"name"}), "missing 'name'",
                 id="no-name"),
    pytest.param(torrent(single_info(name=7)), "'name' is not a string", id="name-int"),
    pytest.param(torrent(single_info(name=b"")), "unsafe path in torrent: ''", id="name-empty"),
    pytest.param(torrent(single_info(name=b"..")), "unsafe path in torrent: '..'", id="name-dotdot"),
    pytest.param(torrent(single_info(name=b".")), "unsafe path in torrent: '.'", id="name-dot"),
    pytest.param(torrent(single_info(extra={b"name.utf-8": b".."})), "unsafe path in torrent: '..'",
                 id="name-utf8-dotdot"),  # the preferred key is the one validated
    # length / files
    pytest.param(torrent(single_info(files=[{b"path": [b"a"], b"length": 1}])), "both 'length' and 'files'",
                 id="length-and-files"),
    pytest.param(torrent({k: v for k, v in single_info().items() if k != b"length"}),
                 "neither 'length' nor 'files'", id="no-length-no-files"),
    pytest.param(torrent(single_info(length=b"40000")), "not an integer", id="length-string"),
    pytest.param(torrent(single_info(length=-1)), "negative length -1", id="length-negative"),
    pytest.param(torrent(single_info(length=b"x") | {b"length": 2**64}), "over the 1 PiB limit", id="length-over-2**63"),
    pytest.param(torrent({b"name": b"t", b"piece length": PL, b"pieces": b"", b"files": [
                     {b"path": [p], b"length": n} for p, n in ((b"a", 2**49), (b"b", 2**49), (b"c", 1))]}),
                 "total length 1125899906842625 is over the 1 PiB limit", id="total-over-limit"),
    pytest.param(torrent(single_info(length=0, pieces=b"")), "torrent has no data", id="single-empty"),
    pytest.param(torrent(multi_info([])), "torrent has no data", id="files-empty-list"),
    pytest.param(torrent(multi_info([((b"a",), 0), ((b"b",), 0)])), "torrent has no data", id="all-files-empty"),
    pytest.param(torrent({b"name": b"t", b"piece length": PL, b"pieces": b"", b"files": b"a"}),
                 "'files' is not a list", id="files-string"),
    pytest.param(torrent(multi_info([((b"a",), 10)]) | {b"files": [b"a"]}),
                 "entry 0 of 'files' is not a dictionary", id="file-entry-string"),
    pytest.param(torrent(multi_info([{b"length": 10}])), "has no 'path'", id="file-no-path"),
    pytest.param(torrent(multi_info([{b"path": b"a/b", b"length": 10}])), "not a list of strings",
                 id="file-path-string"),
    pytest.param(torrent(multi_info([{b"path": [b"a", 5], b"length": 10}])), "not a list of strings",
                 id="file-path-int-component"),
    pytest.param(torrent(multi_info([{b"path": [], b"length": 10}])), "empty path", id="file-path-empty"),
    pytest.param(torrent(multi_info([{b"path": [b"a"]}]) | {b"pieces": fake_pieces(1)}),
                 "file 'a' has no 'length'", id="file-no-length"),
    pytest.param(torrent(multi_info([((b"a",), 10), {b"path": [b"b"], b"length": -5}])),
                 "negative length -5 for file 'b'", id="file-length-negative"),
    pytest.param(torrent(multi_info([{b"path": [b"a"], b"length": b"10"}]) | {b"pieces": fake_pieces(1)}),
                 "length of file 'a' is not an integer", id="file-length-string"),
]


# ---------------------------------------------------------------------------
# Repaired as libtorrent repairs: one row per torrent, the paths a mount shows (the
# torrent's folder first). tests/core/test_names.py checks libtorrent agrees.

REPAIRED = [
    pytest.param(torrent(single_info()) + b"\n", ["file.bin"], id="trailing-newline"),
    pytest.param(torrent(single_info()) + b"d1:bi2ee", ["file.bin"], id="two-dicts"),
    pytest.param(torrent(multi_info([((b"a",), 10)], name=b"")), ["_/a"], id="multi-name-empty"),
    pytest.param(torrent(single_info(name=b"/etc/passwd")), ["etcpasswd"], id="name-absolute"),
    pytest.param(torrent(single_info(name=b"../etc/passwd")), ["..etcpasswd"], id="name-traversal"),
    pytest.param(torrent(single_info(name=b"a\\b")), ["ab"], id="name-backslash"),
    pytest.param(torrent(single_info(name=b"a\x00b")), ["ab"], id="name-nul"),
    pytest.param(torrent(multi_info([((b"a",), 10)], name=b"..")), None, id="multi-name-dotdot"),
    pytest.param(torrent(multi_info([((b"..", b"etc", b"passwd"), 10)])), ["top/etc/passwd"],
                 id="path-dotdot"),
    pytest.param(torrent(multi_info([((b"a", b".", b"b"), 10)])), ["top/a/b"], id="path-dot"),
    pytest.param(torrent(multi_info([((b"a", b"", b"b"), 10)])), ["top/a/_/b"],
                 id="path-empty-component"),
    pytest.param(torrent(multi_info([((b"/etc/passwd",), 10)])), ["top/etcpasswd"], id="path-absolute"),
    pytest.param(torrent(multi_info([((b"a/../../b",), 10)])), ["top/a....b"],
                 id="path-slash-in-component"),
    pytest.param(torrent(multi_info([((b"a\n..",), 10), ((b"..",), 10)])), ["top/a_..", "top/_"],
                 id="path-dotdot-after-mended"),
    pytest.param(torrent(multi_info([((b"..\\..\\windows",), 10)])), ["top/....windows"],
                 id="path-backslash"),
    pytest.param(torrent(multi_info([((b"a\x00.txt",), 10)])), ["top/a.txt"], id="path-nul"),
    pytest.param(torrent(multi_info([((b"C:\\x",), 10)])), ["top/C:x"], id="path-drive-backslash"),
    pytest.param(torrent(multi_info([{b"path": [b".."], b"length": 1, b"attr": b"p"}, ((b"a",), 10)])),
                 ["top/a"], id="padding-path-dotdot"),
    pytest.param(torrent(multi_info([{b"length": 16374, b"attr": b"p"}, ((b"a",), 10)])),
                 ["top/a"], id="padding-without-path"),
    pytest.param(torrent(multi_info([{b"path": [b"ok"], b"path.utf-8": [b".."], b"length": 10}])),
                 ["top/_"], id="path-utf8-dotdot"),
    pytest.param(torrent(multi_info([((b"a", b"b"), 10), ((b"a", b"b"), 10)])), ["top/a/b", "top/a/b.1"],
                 id="duplicate-path"),
    pytest.param(torrent(multi_info([((b"x.txt",), 1), ((b"x.txt",), 1), ((b"x.1.txt",), 1)])),
                 ["top/x.txt", "top/x.1.txt", "top/x.1.1.txt"], id="duplicate-renamed-taken"),
    pytest.param(torrent(multi_info([((b"Readme",), 1), ((b"README",), 1)])),
                 ["top/Readme", "top/README.1"], id="duplicate-but-for-case"),
    pytest.param(torrent(multi_info([{b"path": [b"caf\xe9"], b"length": 1},
                                     {b"path": [b"caf\xe8"], b"length": 1}])),
                 ["top/caf_", "top/caf_.1"], id="duplicate-after-replace"),
    pytest.param(torrent(multi_info([((LONG + b".mkv",), 10), ((LONG + b"y.mkv",), 10)])),
                 ["top/" + "x" * 240 + ".mkv", "top/" + "x" * 240 + ".1.mkv"],
                 id="duplicate-after-truncation"),
    pytest.param(torrent(multi_info([((b"a\x01",), 10), ((b"a\x02",), 10)])), ["top/a_", "top/a_.1"],
                 id="duplicate-after-control-chars"),
    pytest.param(torrent(multi_info([((b"a",), 10), ((b"a", b"b"), 10)])), ["top/a.1", "top/a/b"],
                 id="file-then-dir"),
    pytest.param(torrent(multi_info([((b"x", b"a", b"b"), 10), ((b"x", b"a"), 10)])),
                 ["top/x/a/b", "top/x/a.1"], id="dir-then-file"),
]


def shown_paths(m) -> list[str]:
    return ["/".join((m.name, *f.path)) if m.multi_file else m.name
            for f in m.files if not f.padding]


@pytest.mark.parametrize("data, paths", REPAIRED)
def test_repaired_torrents(data, paths):
    m = parse(data)
    if paths is None:  # a folder whose name is dropped is named by the info-hash
        paths = [m.info_hash_hex + "/a"]
    assert shown_paths(m) == paths
    assert m.repairs and all("\n" not in r for r in m.repairs)
    for p in shown_paths(m):
        assert all(c not in ("", ".", "..") and "\\" not in c and "\x00" not in c
                   for c in p.split("/"))


@pytest.mark.parametrize("data, message", BAD)
def test_invalid_torrents(data, message):
    with pytest.raises(MetainfoError) as excinfo:
        parse(data)
    text = str(excinfo.value)
    assert message in text
    assert "\n" not in text
    assert text.startswith(("not a torrent file: ", "invalid torrent: ", "unsafe path in torrent: ",
                            "path component too long"))


def test_bad_bencode_offset_example():
    # 17 bytes of a valid prefix, then a non-canonical integer at byte 17.
    data = b"d1:x6:abcdef3:keyi01ee"
    assert data.index(b"i01e") == 17
    with pytest.raises(MetainfoError, match=r"^not a torrent file: bad bencode at byte 17"):
        parse(data)


def test_non_bytes_input():
    with pytest.raises(MetainfoError, match="expected bytes"):
        parse("d4:infodee")  # type: ignore[arg-type]
    with pytest.raises(MetainfoError):
        parse(None)  # type: ignore[arg-type]


def test_metainfo_error_is_value_error():
    assert issubclass(MetainfoError, ValueError)


def test_deep_nesting_limit_does_not_recurse():
    deep = b"d1:a" + b"l" * 100000 + b"e" * 100000 + b"e"
    with pytest.raises(MetainfoError, match="nesting deeper"):
        parse(deep)


# ---------------------------------------------------------------------------
# Property tests: parse never raises anything but MetainfoError

VALID = [
    torrent(single_info(), comment=b"c", announce_list=[[b"http://a"], [b"udp://b:1"]]),
    torrent(multi_info(
        [((b"a",), 100), {b"path": [b".pad", b"16284"], b"length": 16284, b"attr": b"p"}, ((b"d", b"e"), 20000)],
        extra={b"name.utf-8": "ü".encode()},
    ), url_list=[b"http://ws/"]),
]


def check(data: bytes) -> None:
    try:
        result = parse(data)
    except MetainfoError as e:
        assert str(e) and "\n" not in str(e)
    else:
        assert isinstance(result, Metainfo)
        assert result.info_hash == sha1(result.info_bytes)
        assert result.info_bytes in data
        assert result.num_pieces * result.piece_length >= result.total_length > 0
        assert sum(f.length for f in result.files) == result.total_length
        for part in (result.name,) + tuple(c for f in result.files for c in f.path):
            assert_safe_component(part)
        for text in (result.comment or "", result.created_by or "", *result.trackers):
            assert not CONTROL.search(text)


CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def assert_safe_component(part: str) -> None:
    """What a mended name must be: one UTF-8 path component the kernel accepts,
    going nowhere, with nothing a terminal or a log line would act on."""
    assert part not in ("", ".", "..")
    assert "/" not in part and "\\" not in part
    assert not CONTROL.search(part)
    assert len(part.encode("utf-8")) <= 255


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_parse_arbitrary_bytes(data):
    check(data)


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_parse_arbitrary_bytes_in_a_dict(data):
    check(b"d" + data)
    check(b"d4:info" + data)


@st.composite
def mutated(draw):
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[i] = draw(st.sampled_from(b"deil0123456789:-x\x00/."))
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[i:i + draw(st.integers(1, 8))]
        else:
            del data[i:]
    return bytes(data)


@settings(max_examples=1000)
@given(mutated())
def test_parse_mutated_torrents(data):
    check(data)


bvalue = st.recursive(
    st.integers(-(2**70), 2**70) | st.binary(max_size=30) | st.sampled_from([b"..", b"", b"a/b", b"\xff"]),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(
        st.sampled_from([b"name", b"length", b"files", b"path", b"pieces", b"piece length", b"attr",
                         b"path.utf-8", b"name.utf-8", b"private", b"x"]),
        children,
        max_size=5,
    ),
    max_leaves=20,
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from([single_info(), multi_info([((b"a",), 100), ((b"b", b"c"), 100)])]),
       key=st.sampled_from([b"name", b"length", b"files", b"pieces", b"piece length", b"private",
                            b"name.utf-8", b"attr"]),
       value=bvalue)
def test_parse_structurally_fuzzed_info(base, key, value):
    info = dict(base)
    info[key] = value
    check(torrent(info, announce_list=value, url_list=value, comment=value))


# Whole torrents built from parts of the right and the wrong types, hostile names
# among them, so the fuzzing gets past the first type check into every later one.
hostile_text = st.one_of(
    st.sampled_from([b"..", b".", b"", b"a/b", b"/etc", b"a\\b", b"\x00", b"\xff\xfe", b"x" * 300,
                     "é".encode() * 130 + b".mkv", b"\x1b[2J", b"a\nb", b"ok", b"ok"]),
    st.binary(max_size=12),
)
any_int = st.one_of(st.integers(-5, 70000), st.sampled_from([0, 2**63, 2**64, 2**50 + 1, -(2**70)]))


def right_or_wrong(right: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly ``right``; one time in six any bencode value at all."""
    return st.sampled_from(range(6)).flatmap(lambda i: bvalue if i == 5 else right)


def maybe(draw, d: dict, key: bytes, strategy: st.SearchStrategy, p_missing: int = 10) -> None:
    """Set ``d[key]`` from ``strategy``, except about one time in ``p_missing``."""
    if draw(st.sampled_from(range(p_missing))) != p_missing - 1:
        d[key] = draw(strategy)


@st.composite
def file_entry(draw) -> dict:
    e: dict = {}
    maybe(draw, e, b"path", right_or_wrong(st.lists(hostile_text, min_size=1, max_size=4)))
    maybe(draw, e, b"path.utf-8", right_or_wrong(st.lists(hostile_text, max_size=3)), 2)
    maybe(draw, e, b"length", right_or_wrong(any_int))
    maybe(draw, e, b"attr", right_or_wrong(st.sampled_from([b"p", b"x", b"px", b""])), 2)
    return e


@st.composite
def whole_torrent(draw) -> dict:
    info: dict = {}
    maybe(draw, info, b"name", right_or_wrong(hostile_text))
    maybe(draw, info, b"name.utf-8", right_or_wrong(hostile_text), 2)
    maybe(draw, info, b"piece length",
          right_or_wrong(st.sampled_from([16384] * 6 + [1, 20000, 0, -1, 2**40])))
    if draw(st.booleans()):
        maybe(draw, info, b"length", right_or_wrong(any_int))
    else:
        maybe(draw, info, b"files", right_or_wrong(st.lists(file_entry(), max_size=4)))
    if draw(st.sampled_from(range(4))):  # mostly the right number of hashes, when one can tell
        files = info.get(b"files")
        files = files if isinstance(files, list) else []
        lengths = [info.get(b"length")] + [f.get(b"length") for f in files if isinstance(f, dict)]
        total = sum(n for n in lengths if isinstance(n, int) and 0 <= n < 2**40)
        pl = info.get(b"piece length")
        n = -(-total // pl) if isinstance(pl, int) and 0 < pl < 2**30 else 1
        info[b"pieces"] = b"\x01" * 20 * min(n, 10000)
    else:
        maybe(draw, info, b"pieces", right_or_wrong(st.integers(0, 5).map(lambda n: b"\x01" * 20 * n)))
    maybe(draw, info, b"private", bvalue, 2)
    top = {b"info": draw(right_or_wrong(st.just(info)))}
    maybe(draw, top, b"announce", right_or_wrong(hostile_text), 2)
    maybe(draw, top, b"announce-list",
          right_or_wrong(st.lists(st.lists(hostile_text, max_size=2), max_size=2)), 2)
    maybe(draw, top, b"comment", right_or_wrong(hostile_text), 2)
    maybe(draw, top, b"created by", right_or_wrong(hostile_text), 2)
    maybe(draw, top, b"creation date", right_or_wrong(any_int), 2)
    maybe(draw, top, b"url-list", bvalue, 2)
    return top


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow])
@given(whole_torrent())
def test_parse_structured_torrents(top):
    check(bencodepy.encode(top))


# Bencode token soup: mostly well-formed pieces in random order, deep into the scanner.
token = st.sampled_from([b"d", b"l", b"e", b"i", b"ie", b"i-0e", b"i01e", b"i-1e", b"i7e", b"0:",
                         b"1:a", b"4:info", b"5:files", b"4:name", b"6:length", b"4:path", b"01:a",
                         b"3:ab", b":", b"-", b"9", b"x"])


@settings(max_examples=1000)
@given(st.lists(token, max_size=40))
def test_parse_bencode_token_soup(tokens):
    check(b"d" + b"".join(tokens))
    check(b"d4:info" + b"".join(tokens) + b"e")


def test_piece_length_up_to_libtorrents_limit():
    # libtorrent 2.0 loads 512 MiB pieces and refuses 1 GiB ones (BAD above).
    m = parse(torrent(single_info(extra={b"piece length": 512 * 1024 * 1024,
                                         b"pieces": GOOD_PIECES[:20]})))
    assert m.piece_length == 512 << 20 and m.num_pieces == 1
