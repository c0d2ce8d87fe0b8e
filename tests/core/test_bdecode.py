"""The strict decoder's quick read of the common file entry (``{length, path}``, in
``core.bdecode``'s list loop): the same values as the general reading, and the same
refusals, whatever is malformed in or after such an entry."""

from __future__ import annotations

import bencodepy
import pytest

from torrentfs.core.bdecode import MAX_DEPTH, BencodeError, decode_torrent


def top(files: bytes) -> bytes:
    return b"d5:filesl" + files + b"ee"


ENTRY = b"d6:lengthi5e4:pathl1:a3:bcdee"


@pytest.mark.parametrize("files", [
    ENTRY,
    ENTRY * 3,
    b"d6:lengthi0e4:pathlee",                            # an empty path
    b"d6:lengthi123456789012345678901234567890e4:pathl0:1:xee",  # big, empty component
    b"d6:lengthi5e4:pathl1:ai3eee",                      # a number in the path
    b"d6:lengthi-5e4:pathl1:aee",                        # negative: the general way
    b"d4:attr1:p6:lengthi5e4:pathl1:aee",                # more keys
    b"d4:pathl1:ae6:lengthi5ee",                         # keys out of order
    b"d6:lengthi5e4:pathl1:ae4:zzzzi1ee",                # a key after the path
    b"d6:lengthi5e4:pathl4:e:eeee" + ENTRY,               # 'e' and ':' inside names
    b"d6:lengthi5e4:pathl1:aeel1:be",                    # a list after the entry
])
def test_entries_read_as_bencodepy_reads_them(files):
    data = top(files)
    value, span, end = decode_torrent(data)
    assert value == bencodepy.decode(data) and end == len(data) and span is None


@pytest.mark.parametrize("files, why", [
    (b"d6:lengthi5e4:pathl03:abcee", "leading zero"),
    (b"d6:lengthi05e4:pathl1:aee", "leading zero"),
    (b"d6:lengthi-0e4:pathl1:aee", "leading zero"),
    (b"d6:lengthi5e4:pathl9:abcee", "runs past the end"),
    (b"d6:lengthi5e4:pathl1:ae", "unterminated"),
    (b"d6:lengthi5e4:pathl1:a", "unterminated"),
    (b"d6:lengthi5e4:pathl1:ae6:lengthi6ee", "duplicate"),
    (b"d6:lengthi5e4:pathl1:axe", "unexpected byte"),
])
def test_malformed_entries_are_refused(files, why):
    with pytest.raises(BencodeError, match=why):
        decode_torrent(top(files) if not files.endswith(b"1:a") else b"d5:filesl" + files)


def test_the_depth_limit_holds_for_file_entries():
    def nested(depth: int) -> bytes:  # the entry's path list at ``depth`` (top: 0)
        return b"d1:x" + b"l" * (depth - 2) + ENTRY + b"e" * (depth - 2) + b"e"
    decode_torrent(nested(MAX_DEPTH - 1))
    with pytest.raises(BencodeError, match="nesting"):
        decode_torrent(nested(MAX_DEPTH))
