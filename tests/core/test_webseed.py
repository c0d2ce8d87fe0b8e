"""The pure web seed core (BEP 19): URLs, per-file ranges, response checks, retry
delays. No sockets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentfs.core.geometry import Geometry
from torrentfs.core.webseed import (
    Fetch,
    IgnoresRange,
    ResponseError,
    check_response,
    fetches,
    file_url,
    parse_content_range,
    range_header,
    retry_delay,
    split_run,
    usable,
)


def test_single_file_url():
    assert file_url("http://h/f.iso", "f.iso", ("f.iso",), False) == "http://h/f.iso"
    assert file_url("http://h/dir/", "a b#?.iso", ("a b#?.iso",), False) == \
        "http://h/dir/a%20b%23%3F.iso"


def test_multi_file_url():
    assert file_url("http://h/pub/", "Top", ("sub", "é x.bin"), True) == \
        "http://h/pub/Top/sub/%C3%A9%20x.bin"
    # BEP 19: a multi-file URL names a folder; a missing '/' is added.
    assert file_url("https://h/pub", "Top", ("a",), True) == "https://h/pub/Top/a"
    assert file_url("http://h/", "T", ("a/b", "%"), True) == "http://h/T/a%2Fb/%25"


@pytest.mark.parametrize("url,ok", [
    ("http://h/x", True), ("HTTPS://h:8080/", True), ("ftp://h/x", False),
    ("file:///etc/passwd", False), ("http://", False), ("h/x", False), ("", False),
    ("http://[::1/", False), ("http://h:99999/x", False), ("http://h:x/", False),
    ("http://[::1]:8080/x", True),
])
def test_usable(url, ok):
    assert usable(url) is ok


G = Geometry(100, (150, 0, 30, 70, 50))  # 300 bytes, pieces of 100
URLS = ["u0", "u1", None, "u3", "u4"]    # file 2 is padding


def test_fetches_cut_a_run_at_file_edges():
    assert fetches(G, URLS, 0, 0, 100) == [Fetch("u0", 0, 100)]
    # Piece 1: the end of file 0, the empty file skipped, padding, then file 3.
    assert fetches(G, URLS, 1, 0, 100) == [Fetch("u0", 100, 50), Fetch(None, 0, 30),
                                          Fetch("u3", 0, 20)]
    assert fetches(G, URLS, 2, 10, 80) == [Fetch("u3", 30, 40), Fetch("u4", 0, 40)]
    assert fetches(G, URLS, 2, 90, 10) == [Fetch("u4", 40, 10)]


def test_range_header():
    assert range_header(0, 1) == "bytes=0-0"
    assert range_header(16384, 16384) == "bytes=16384-32767"


def test_partial_content_must_be_the_range_asked():
    h = {"content-range": "bytes 100-199/1000"}
    check_response(206, h, 100, 100)
    with pytest.raises(ResponseError, match="sent bytes 100-199 for 100-149"):
        check_response(206, h, 100, 50)
    with pytest.raises(ResponseError, match="sent bytes 100-199 for 0-99"):
        check_response(206, h, 0, 100)
    with pytest.raises(ResponseError, match="unreadable"):
        check_response(206, {}, 100, 100)
    with pytest.raises(ResponseError, match="multipart"):
        check_response(206, {**h, "content-type": "multipart/byteranges; boundary=x"},
                       100, 100)
    with pytest.raises(ResponseError, match="compressed"):
        check_response(206, {**h, "content-encoding": "gzip"}, 100, 100)
    check_response(206, {**h, "content-encoding": "identity"}, 100, 100)


def test_a_server_ignoring_range():
    check_response(200, {"content-length": "1000"}, 0, 100)  # read the prefix
    check_response(200, {}, 0, 100)
    with pytest.raises(ResponseError, match="file is 50 bytes"):
        check_response(200, {"content-length": "50"}, 0, 100)
    with pytest.raises(IgnoresRange):
        check_response(200, {"content-length": "1000"}, 100, 100)


@pytest.mark.parametrize("status", [301, 403, 404, 416, 429, 500, 503, 999])
def test_other_statuses_are_errors(status):
    with pytest.raises(ResponseError) as e:
        check_response(status, {}, 0, 10)
    assert not isinstance(e.value, IgnoresRange)


@pytest.mark.parametrize("value,parsed", [
    ("bytes 0-0/1", (0, 0, 1)), ("bytes 5-9/*", (5, 9, None)),
    (" bytes 1-2/3 ", (1, 2, 3)),
])
def test_content_range(value, parsed):
    assert parse_content_range(value) == parsed


@pytest.mark.parametrize("value", [
    "", "bytes", "bytes 9-5/10", "bytes 0-10/10", "bytes */10", "items 0-1/2",
    "bytes -1-2/3", "bytes 0-1/2, 3-4/5", "bytes ０-1/2", "bytes 0-1/" + "9" * 30,
])
def test_bad_content_range(value):
    with pytest.raises(ResponseError):
        parse_content_range(value)


@given(st.text(max_size=80))
def test_content_range_never_raises_anything_else(value):
    try:
        first, last, total = parse_content_range(value)
    except ResponseError:
        return
    assert 0 <= first <= last and (total is None or last < total)


@given(st.integers(0, 1000), st.dictionaries(
    st.sampled_from(["content-range", "content-length", "content-encoding",
                     "content-type", "retry-after"]), st.text(max_size=40)),
    st.integers(0, 10**6), st.integers(1, 10**6))
def test_check_response_raises_only_response_errors(status, headers, offset, length):
    try:
        check_response(status, headers, offset, length)
    except ResponseError:
        return
    assert status in (200, 206)


def test_retry_delay():
    assert [retry_delay(n) for n in range(1, 9)] == [5, 10, 20, 40, 80, 160, 300, 300]
    assert retry_delay(0) == 5 and retry_delay(10**9) == 300
    assert retry_delay(1, "120") == 120
    assert retry_delay(6, "120") == 160            # never shorter than ours
    assert retry_delay(1, "999999999999") == 300   # never beyond the bound
    assert retry_delay(1, "Wed, 21 Oct 2015 07:28:00 GMT") == 5
    assert retry_delay(1, "-3") == 5


def test_split_run():
    blocks = [(3, 0, 16), (3, 16, 16), (3, 48, 16), (4, 0, 16)]
    assert split_run(blocks) == (blocks[:2], blocks[2:])
    assert split_run([(1, 0, 5), (2, 5, 5)]) == ([(1, 0, 5)], [(2, 5, 5)])
    assert split_run([]) == ([], [])
