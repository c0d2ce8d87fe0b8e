"""BEP 10, the extension protocol: the extension handshake, and the bounded
bencode reader the extension messages need.

Pure.  ``messages`` frames extended messages (id 20, then one byte of extension
id, then the payload); this module gives the payloads meaning:

* Extension id 0 is the handshake, a bencoded dictionary.  Its ``m`` maps
  extension names to the ids *the sender* wants to receive them under; id 0
  means "disabled".  We read ``m``, ``metadata_size`` (BEP 9), ``p`` (the
  sender's listen port), ``v`` (client name) and ``reqq``; everything else is
  ignored, and so are ill-typed values (a peer that sends ``p: "x"`` simply
  has no known listen port).  A payload that is not a bencoded dictionary is
  an :class:`ExtensionError`.
* The ids *we* assign are fixed: :data:`OUR_IDS` (the same numbers as
  libtorrent).  A message that arrives with id N is ours-numbered; a message we
  send uses the peer's number for that extension.

:func:`bdecode_prefix` decodes one bencoded value at the start of a buffer and
says where it ended (a BEP 9 ``data`` message is a dictionary followed by raw
bytes).  It raises ExtensionError on malformed input, on nesting deeper than
``MAX_DEPTH`` and on dictionary keys that are not strings, and never reads past
the buffer; its work is linear in the input.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

import bencodepy

__all__ = ["ExtensionError", "ExtHandshake", "OUR_IDS", "UT_METADATA", "UT_PEX",
           "bdecode_prefix", "bdecode", "bencode", "encode_handshake", "parse_handshake"]

UT_METADATA = "ut_metadata"
UT_PEX = "ut_pex"
OUR_IDS = {UT_PEX: 1, UT_METADATA: 2}
"""The ids we ask peers to use for the extensions we speak (as libtorrent)."""

MAX_DEPTH = 16
MAX_CLIENT_NAME = 64


class ExtensionError(ValueError):
    """A malformed extension message; ``str()`` is one line."""


# ---------------------------------------------------------------------------
# bencode

def _int_at(data: bytes, i: int, end_byte: int, what: str) -> tuple[int, int]:
    """Parse decimal digits from ``i`` up to ``end_byte``; (value, index after it)."""
    j = data.find(end_byte, i, i + 22)
    if j < 0:
        raise ExtensionError(f"bad bencode: {what} at byte {i} unterminated or too long")
    text = data[i:j]
    neg = text.startswith(b"-")
    digits = text[1:] if neg else text
    if not digits or not digits.isdigit() or not digits.isascii():
        raise ExtensionError(f"bad bencode: bad {what} at byte {i}")
    if (digits[0:1] == b"0" and len(digits) > 1) or (neg and (what != "integer"
                                                                or digits == b"0")):
        raise ExtensionError(f"bad bencode: bad {what} at byte {i}")
    value = int(digits)
    return (-value if neg else value), j + 1


def _decode(data: bytes, i: int, depth: int) -> tuple[object, int]:
    if i >= len(data):
        raise ExtensionError("bad bencode: truncated")
    c = data[i]
    if c == 0x69:  # i
        return _int_at(data, i + 1, ord("e"), "integer")
    if 0x30 <= c <= 0x39:
        n, j = _int_at(data, i, ord(":"), "string length")
        if j + n > len(data):
            raise ExtensionError("bad bencode: string runs past the end")
        return data[j:j + n], j + n
    if c in (0x6C, 0x64):  # l, d
        if depth >= MAX_DEPTH:
            raise ExtensionError("bad bencode: nested too deep")
        i += 1
        if c == 0x6C:
            items = []
            while i < len(data) and data[i] != 0x65:
                value, i = _decode(data, i, depth + 1)
                items.append(value)
            if i >= len(data):
                raise ExtensionError("bad bencode: unterminated list")
            return items, i + 1
        d: dict[bytes, object] = {}
        while i < len(data) and data[i] != 0x65:
            if not 0x30 <= data[i] <= 0x39:
                raise ExtensionError("bad bencode: dictionary key is not a string")
            key, i = _decode(data, i, depth + 1)
            value, i = _decode(data, i, depth + 1)
            d[key] = value  # type: ignore[index]
        if i >= len(data):
            raise ExtensionError("bad bencode: unterminated dictionary")
        return d, i + 1
    raise ExtensionError(f"bad bencode: unexpected byte {c:#04x} at {i}")


def bdecode_prefix(data: bytes) -> tuple[object, int]:
    """Decode the bencoded value at the start of ``data``: (value, where it ended)."""
    return _decode(bytes(data), 0, 0)


def bdecode(data: bytes) -> object:
    """Decode exactly one bencoded value filling all of ``data``."""
    value, end = bdecode_prefix(data)
    if end != len(data):
        raise ExtensionError(f"bad bencode: {len(data) - end} bytes after the value")
    return value


def bencode(value: object) -> bytes:
    return bencodepy.encode(value)


# ---------------------------------------------------------------------------
# The extension handshake

@dataclass(frozen=True)
class ExtHandshake:
    """What a peer told us in its extension handshake."""

    ids: dict[str, int] = field(default_factory=dict)  # extension -> its id (non-zero)
    metadata_size: int | None = None
    listen_port: int | None = None
    client: str | None = None
    reqq: int | None = None
    ipv6: str | None = None       # its IPv6 address (BEP 7 'ipv6'), if it told one
    ipv4: str | None = None       # its IPv4 address ('ipv4')
    yourip: str | None = None     # our address as it sees it ('yourip')

    def supports(self, name: str) -> bool:
        return name in self.ids


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _packed_ip(text: str | None, version: int | None = None) -> bytes | None:
    try:
        ip = ipaddress.ip_address(text) if text else None
    except ValueError:
        return None
    return ip.packed if ip is not None and version in (None, ip.version) else None


def _ip_of(raw: object, size: int) -> str | None:
    if isinstance(raw, bytes) and len(raw) == size:
        return str(ipaddress.ip_address(raw))
    return None


def encode_handshake(ids: dict[str, int], *, metadata_size: int | None = None,
                     port: int | None = None, client: str | None = None,
                     reqq: int | None = None, yourip: str | None = None,
                     ipv6: str | None = None) -> bytes:
    """The payload of our extension handshake (send it with extension id 0):
    ``yourip`` is the peer's address as we see it, ``ipv6`` ours (BEP 7), each left
    out unless an IP literal (of version 6 for ``ipv6``)."""
    d: dict[bytes, object] = {b"m": {k.encode(): v for k, v in ids.items()}}
    if metadata_size is not None:
        d[b"metadata_size"] = metadata_size
    if port:
        d[b"p"] = port
    if client:
        d[b"v"] = client.encode()
    if reqq:
        d[b"reqq"] = reqq
    if (packed := _packed_ip(yourip)) is not None:
        d[b"yourip"] = packed
    if (packed := _packed_ip(ipv6, 6)) is not None:
        d[b"ipv6"] = packed
    return bencode(d)


def parse_handshake(payload: bytes) -> ExtHandshake:
    """Read a peer's extension handshake; ExtensionError if it is not a dictionary."""
    top = bdecode(payload)
    if not isinstance(top, dict):
        raise ExtensionError("extension handshake is not a dictionary")
    ids: dict[str, int] = {}
    m = top.get(b"m")
    if isinstance(m, dict):
        for key, value in m.items():
            if _is_int(value) and 0 < value < 256:
                try:
                    ids[key.decode()] = value
                except UnicodeDecodeError:
                    continue
    size = top.get(b"metadata_size")
    port = top.get(b"p")
    client = top.get(b"v")
    reqq = top.get(b"reqq")
    return ExtHandshake(
        ids=ids,
        metadata_size=size if _is_int(size) else None,
        listen_port=port if _is_int(port) and 0 < port < 65536 else None,
        client=client[:MAX_CLIENT_NAME].decode(errors="replace")
        if isinstance(client, bytes) else None,
        reqq=reqq if _is_int(reqq) and reqq > 0 else None,
        ipv6=_ip_of(top.get(b"ipv6"), 16),
        ipv4=_ip_of(top.get(b"ipv4"), 4),
        yourip=_ip_of(top.get(b"yourip"), 4) or _ip_of(top.get(b"yourip"), 16),
    )
