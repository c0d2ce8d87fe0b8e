"""Web seeds (BEP 19, the torrent's ``url-list``): the pure part. No sockets, no clock.

A web seed is a plain HTTP(S) server holding the torrent's files. The shell
(``net/webseed.py``) treats it as a peer that has every piece and fetches runs of
blocks with range requests; this module says which URLs and byte ranges a run
needs, whether a response may be used, and how long to wait after a failure.

* URLs (BEP 19): single-file torrent: the URL itself, or URL + name when it ends
  with ``/``; multi-file: URL + name + ``/`` + path (a ``/`` is added to the URL
  when it lacks one). Every name and path part is percent-encoded.
* A run of blocks is a range of the torrent's byte stream; ``fetches`` cuts it into
  one range per file with ``Geometry.spans`` (padding files are not fetched: zeros).
* ``check_response`` accepts a 206 whose ``Content-Range`` is exactly the range
  asked for, and a 200 (a server that ignores ``Range``) only when the range starts
  at the file's first byte: the caller reads just the bytes it needs and hangs up.
  A 200 for any other range means the server cannot serve us without sending whole
  files: ``IgnoresRange``, and the seed is given up. Anything else is a
  ``ResponseError`` the seed is retried after (``retry_delay``: 5 s doubling to
  5 min, longer if the server's ``Retry-After`` asks for it, within that bound).
"""

from __future__ import annotations

import re
from typing import Mapping, NamedTuple
from urllib.parse import quote, urlsplit

from torrentfs.core.geometry import Geometry

RETRY_MIN = 5.0
RETRY_MAX = 300.0

Block = tuple[int, int, int]  # (piece index, begin, length)


class ResponseError(Exception):
    """A response we cannot use; ``str()`` is one line. The seed is retried later."""


class IgnoresRange(ResponseError):
    """The server answers a range request with whole files: the seed is given up."""


def usable(url: str) -> bool:
    """True for an ``http``/``https`` URL with a host (other schemes are ignored)."""
    try:
        parts = urlsplit(url)
        parts.port  # raises for a port that is not a number in range
    except ValueError:
        return False
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def _part(text: str) -> str:
    return quote(text, safe="")


def file_url(base: str, name: str, path: tuple[str, ...], multi_file: bool) -> str:
    """The URL of one of the torrent's files at the web seed ``base``."""
    if not multi_file:
        return base + _part(name) if base.endswith("/") else base
    if not base.endswith("/"):
        base += "/"
    return base + "/".join(_part(p) for p in (name, *path))


class Fetch(NamedTuple):
    """``length`` bytes at ``offset`` in the file at ``url`` (None: a padding file,
    whose bytes are zeros and are not fetched)."""

    url: str | None
    offset: int
    length: int


def fetches(geometry: Geometry, urls: list[str | None], index: int, begin: int,
            length: int) -> list[Fetch]:
    """The per-file ranges of ``length`` bytes at ``begin`` in piece ``index``, in
    order (``urls[i]``: file ``i``'s URL, None for padding)."""
    start = geometry.piece_offset(index) + begin
    return [Fetch(urls[s.file_index], s.file_offset, s.length)
            for s in geometry.spans(start, length)]


def range_header(offset: int, length: int) -> str:
    return f"bytes={offset}-{offset + length - 1}"


_CONTENT_RANGE = re.compile(r"bytes\s+(\d{1,20})-(\d{1,20})/(\d{1,20}|\*)", re.ASCII)


def parse_content_range(value: str) -> tuple[int, int, int | None]:
    """``(first, last, total)`` of a ``Content-Range: bytes first-last/total`` header
    (total None for ``*``). Raises ResponseError for anything else."""
    m = _CONTENT_RANGE.fullmatch(value.strip())
    if m is None:
        raise ResponseError(f"unreadable Content-Range {value[:60]!r}")
    first, last = int(m[1]), int(m[2])
    total = None if m[3] == "*" else int(m[3])
    if last < first or (total is not None and last >= total):
        raise ResponseError(f"impossible Content-Range {value[:60]!r}")
    return first, last, total


def check_response(status: int, headers: Mapping[str, str], offset: int, length: int) -> None:
    """Raise unless a response to ``Range: bytes=offset-(offset+length-1)`` carries
    those bytes first in its body (see the module docstring). ``headers`` are
    looked up by lower-case name."""
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if status in (200, 206) and encoding not in ("", "identity"):
        raise ResponseError(f"compressed body ({encoding[:20]}) though we asked for none")
    if status == 206:
        if "multipart/" in headers.get("content-type", "").lower():
            raise ResponseError("multipart answer to a single range")
        first, last, _ = parse_content_range(headers.get("content-range", ""))
        if (first, last) != (offset, offset + length - 1):
            raise ResponseError(f"sent bytes {first}-{last} for {offset}-"
                                f"{offset + length - 1}")
        return
    if status == 200:
        if offset:
            raise IgnoresRange("ignores Range (200 with the whole file)")
        size = headers.get("content-length")
        if size is not None and size.strip().isdigit() and int(size) < length:
            raise ResponseError(f"file is {int(size)} bytes, we need {length}")
        return
    if status == 416:
        raise ResponseError("416: the file is shorter than the torrent says")
    raise ResponseError(f"HTTP {status}")


def retry_delay(failures: int, retry_after: str | None = None) -> float:
    """Seconds to wait after the ``failures``-th failure in a row (at least 1):
    RETRY_MIN doubling up to RETRY_MAX, or the server's ``Retry-After`` (in seconds)
    if longer, never beyond RETRY_MAX."""
    delay = min(RETRY_MIN * 2 ** min(max(failures, 1) - 1, 16), RETRY_MAX)
    if retry_after is not None and retry_after.strip().isdigit():
        delay = max(delay, min(float(retry_after.strip()[:8]), RETRY_MAX))
    return delay


def split_run(blocks: list[Block]) -> tuple[list[Block], list[Block]]:
    """The first run of ``blocks`` (contiguous blocks of one piece, as picked) and
    the rest. One range request fetches a run."""
    if not blocks:
        return [], []
    run = [blocks[0]]
    for b in blocks[1:]:
        index, begin, length = run[-1]
        if b[0] != index or b[1] != begin + length:
            break
        run.append(b)
    return run, blocks[len(run):]
