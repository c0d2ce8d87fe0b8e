"""KRPC, the mainline DHT's message format (BEP 5): bytes in, messages out.

Pure: no sockets, no clock. ``decode(datagram)`` returns one of the message
dataclasses below or raises ``KrpcError`` (with the transaction id when it could be
read, so a query that is merely malformed can still be answered with error 203);
``encode(message)`` returns the datagram.

Contract
--------
* Any input of any length gives a message or ``KrpcError``, nothing else. Datagrams
  over ``MAX_DATAGRAM`` bytes, nesting deeper than ``MAX_DEPTH``, non-canonical
  integers, repeated dictionary keys and trailing bytes are refused (key order is
  not checked: some clients write their dictionaries by hand).
* Types and lengths are checked: node ids, targets and info-hashes are 20 bytes,
  transaction ids at most ``MAX_TID`` bytes, tokens 1..``MAX_TOKEN`` bytes, ports
  1..65535, compact node lists a whole number of 26-byte (IPv4) or 38-byte (IPv6)
  entries, peer values 6 (IPv4) or 18 (IPv6) bytes each.
* A response is not typed by its method in KRPC (only the transaction id links it to
  its query), so there is one ``Response`` carrying whatever of ``nodes``, ``nodes6``,
  ``values`` and ``token`` it had, each validated; its reader knows what it asked.
* Unknown keys are ignored (BEP 5 allows extensions); an unknown query method gives
  ``UnknownQuery``, to be answered with error 204.
* ``find_node`` and ``get_peers`` carry BEP 32's ``want``: the node families the
  asker wants in the answer, ``"n4"`` (``nodes``) and/or ``"n6"`` (``nodes6``); empty
  when absent (the answerer then gives its own family). Entries other than those
  two, and a ``want`` that is not a list, are ignored; at most ``MAX_WANT`` entries
  are looked at.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torrentfs.core.address import Addr, pack_addr, unpack_addr

MAX_DATAGRAM = 8192
MAX_DEPTH = 8
MAX_TID = 32
MAX_TOKEN = 64
MAX_VALUES = 512
MAX_WANT = 8
WANTS = ("n4", "n6")  # BEP 32: IPv4 nodes, IPv6 nodes
ID_LEN = 20

# Error codes (BEP 5).
GENERIC_ERROR, SERVER_ERROR, PROTOCOL_ERROR, METHOD_UNKNOWN = 201, 202, 203, 204

class KrpcError(Exception):
    """A datagram that is not a valid KRPC message. ``tid`` is its transaction id
    when that much could be read (None otherwise)."""

    def __init__(self, why: str, tid: bytes | None = None) -> None:
        super().__init__(why)
        self.tid = tid


# -- bencode, strict and bounded ------------------------------------------------------

def bdecode(data: bytes) -> object:
    """Decode one bencoded value that fills ``data`` exactly; ``KrpcError`` otherwise."""
    if len(data) > MAX_DATAGRAM:
        raise KrpcError(f"datagram of {len(data)} bytes is too large")
    value, end = _decode_at(bytes(data), 0, 0)
    if end != len(data):
        raise KrpcError("trailing bytes after the message")
    return value


def _decode_at(data: bytes, i: int, depth: int) -> tuple[object, int]:
    if depth > MAX_DEPTH:
        raise KrpcError("nested too deeply")
    c = data[i:i + 1]
    if c == b"i":
        end = data.find(b"e", i + 1)
        if end < 0:
            raise KrpcError("unterminated integer")
        text = data[i + 1:end]
        if not _canonical_int(text):
            raise KrpcError("malformed integer")
        return int(text), end + 1
    if c == b"l":
        items, i = [], i + 1
        while data[i:i + 1] != b"e":
            if i >= len(data):
                raise KrpcError("unterminated list")
            v, i = _decode_at(data, i, depth + 1)
            items.append(v)
        return items, i + 1
    if c == b"d":
        d: dict[bytes, object] = {}
        i += 1
        while data[i:i + 1] != b"e":
            if i >= len(data):
                raise KrpcError("unterminated dictionary")
            k, i = _decode_at(data, i, depth + 1)
            if not isinstance(k, bytes):
                raise KrpcError("dictionary key is not a string")
            if k in d:
                raise KrpcError("dictionary key repeated")
            d[k], i = _decode_at(data, i, depth + 1)
        return d, i + 1
    if c.isdigit():
        colon = data.find(b":", i, i + 12)
        if colon < 0 or not _canonical_int(data[i:colon]) or data[i:colon].startswith(b"-"):
            raise KrpcError("malformed string length")
        n = int(data[i:colon])
        if colon + 1 + n > len(data):
            raise KrpcError("string runs past the end")
        return data[colon + 1:colon + 1 + n], colon + 1 + n
    raise KrpcError("not bencode" if c else "truncated")


def _canonical_int(text: bytes) -> bool:
    digits = text[1:] if text.startswith(b"-") else text
    return (digits.isdigit() and digits.isascii() and (digits == b"0" or not digits.startswith(b"0"))
            and text != b"-0" and len(digits) <= 20)


def bencode(value: object) -> bytes:
    """Encode ints, bytes, lists and dicts with bytes keys (sorted)."""
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


def _encode(v: object, out: list[bytes]) -> None:
    if isinstance(v, bool):
        v = int(v)
    if isinstance(v, int):
        out.append(b"i%de" % v)
    elif isinstance(v, (bytes, bytearray)):
        out.append(b"%d:" % len(v))
        out.append(bytes(v))
    elif isinstance(v, str):
        _encode(v.encode(), out)
    elif isinstance(v, (list, tuple)):
        out.append(b"l")
        for x in v:
            _encode(x, out)
        out.append(b"e")
    elif isinstance(v, dict):
        out.append(b"d")
        for k in sorted(v):
            _encode(k, out)
            _encode(v[k], out)
        out.append(b"e")
    else:
        raise TypeError(f"cannot bencode {type(v).__name__}")


# -- compact forms ----------------------------------------------------------------------

@dataclass(frozen=True)
class NodeInfo:
    """A DHT node: its 160-bit id and UDP address."""
    id: bytes
    addr: Addr


def pack_nodes(nodes: list[NodeInfo] | tuple[NodeInfo, ...]) -> bytes:
    return b"".join(n.id + pack_addr(n.addr) for n in nodes)


def unpack_nodes(raw: bytes, v6: bool = False) -> tuple[NodeInfo, ...]:
    """Compact node info: 26 bytes a node (IPv4), 38 with ``v6``. Nodes with port 0
    are dropped (nobody can be reached there)."""
    size = 38 if v6 else 26
    if len(raw) % size:
        raise KrpcError(f"compact node list of {len(raw)} bytes is not a multiple of {size}")
    out = []
    for off in range(0, len(raw), size):
        host, port = unpack_addr(raw[off + ID_LEN:off + size])
        if port:
            out.append(NodeInfo(raw[off:off + ID_LEN], (host, port)))
    return tuple(out)


# -- messages ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Message:
    tid: bytes


@dataclass(frozen=True)
class Query(Message):
    id: bytes                 # the querying node's id
    read_only: bool = field(default=False, kw_only=True)  # BEP 43: not for routing tables


@dataclass(frozen=True)
class Ping(Query):
    pass


@dataclass(frozen=True)
class FindNode(Query):
    target: bytes
    want: frozenset[str] = field(default=frozenset(), kw_only=True)  # BEP 32: n4, n6


@dataclass(frozen=True)
class GetPeers(Query):
    info_hash: bytes
    want: frozenset[str] = field(default=frozenset(), kw_only=True)  # BEP 32: n4, n6


@dataclass(frozen=True)
class AnnouncePeer(Query):
    info_hash: bytes
    port: int
    token: bytes
    implied_port: bool = False


@dataclass(frozen=True)
class UnknownQuery(Query):
    method: bytes


@dataclass(frozen=True)
class Response(Message):
    id: bytes                               # the answering node's id
    nodes: tuple[NodeInfo, ...] = ()        # IPv4 nodes ("nodes")
    nodes6: tuple[NodeInfo, ...] = ()       # IPv6 nodes ("nodes6", BEP 32)
    values: tuple[Addr, ...] = ()           # peers (get_peers)
    token: bytes | None = None              # get_peers: for a later announce_peer
    ip: Addr | None = None                  # BEP 42: how the responder sees us


@dataclass(frozen=True)
class Error(Message):
    code: int
    message: str


_METHODS = {b"ping": Ping, b"find_node": FindNode, b"get_peers": GetPeers,
            b"announce_peer": AnnouncePeer}


def decode(data: bytes) -> Message:
    """Parse one datagram. Raises ``KrpcError`` for anything that is not a valid
    message (its ``tid`` set when the transaction id could be read)."""
    top = bdecode(data)
    if not isinstance(top, dict):
        raise KrpcError("message is not a dictionary")
    tid = top.get(b"t")
    if not isinstance(tid, bytes) or len(tid) > MAX_TID:
        raise KrpcError("missing or bad transaction id")
    try:
        kind = top.get(b"y")
        if kind == b"q":
            return _query(tid, top)
        if kind == b"r":
            return _response(tid, top)
        if kind == b"e":
            return _error(tid, top)
        raise KrpcError("unknown message type")
    except KrpcError as e:
        raise KrpcError(str(e), tid) from None


def _id(d: dict, key: bytes, what: str) -> bytes:
    v = d.get(key)
    if not isinstance(v, bytes) or len(v) != ID_LEN:
        raise KrpcError(f"{what} is not 20 bytes")
    return v


def _query(tid: bytes, top: dict) -> Query:
    method = top.get(b"q")
    args = top.get(b"a")
    if not isinstance(method, bytes) or not isinstance(args, dict):
        raise KrpcError("query without method or arguments")
    node_id = _id(args, b"id", "node id")
    ro = top.get(b"ro", 0) == 1
    cls = _METHODS.get(method)
    if cls is None:
        return UnknownQuery(tid, node_id, method[:64], read_only=ro)
    if cls is Ping:
        return Ping(tid, node_id, read_only=ro)
    if cls is FindNode:
        return FindNode(tid, node_id, _id(args, b"target", "target"), read_only=ro,
                        want=_want(args))
    if cls is GetPeers:
        return GetPeers(tid, node_id, _id(args, b"info_hash", "info-hash"), read_only=ro,
                        want=_want(args))
    port, token, implied = args.get(b"port"), args.get(b"token"), args.get(b"implied_port", 0)
    if not isinstance(implied, int) or implied not in (0, 1):
        raise KrpcError("bad implied_port")
    if not isinstance(port, int) or not 0 < port < 65536:
        if not (implied and isinstance(port, int)):
            raise KrpcError("bad port")
        port = 0  # implied: the UDP source port is used instead
    if not isinstance(token, bytes) or not 0 < len(token) <= MAX_TOKEN:
        raise KrpcError("bad token")
    return AnnouncePeer(tid, node_id, _id(args, b"info_hash", "info-hash"), port, token,
                        bool(implied), read_only=ro)


def _want(args: dict) -> frozenset[str]:
    """BEP 32's ``want`` of a query's arguments (see the module docstring)."""
    raw = args.get(b"want")
    if not isinstance(raw, list):
        return frozenset()
    return frozenset(w for w in WANTS if w.encode() in raw[:MAX_WANT])


def _response(tid: bytes, top: dict) -> Response:
    r = top.get(b"r")
    if not isinstance(r, dict):
        raise KrpcError("response without a body")
    node_id = _id(r, b"id", "node id")
    nodes = nodes6 = ()
    if b"nodes" in r:
        if not isinstance(r[b"nodes"], bytes):
            raise KrpcError("nodes is not a string")
        nodes = unpack_nodes(r[b"nodes"])
    if b"nodes6" in r:
        if not isinstance(r[b"nodes6"], bytes):
            raise KrpcError("nodes6 is not a string")
        nodes6 = unpack_nodes(r[b"nodes6"], v6=True)
    values: list[Addr] = []
    if b"values" in r:
        raw = r[b"values"]
        if not isinstance(raw, list) or len(raw) > MAX_VALUES:
            raise KrpcError("values is not a bounded list")
        for v in raw:
            if not isinstance(v, bytes):
                raise KrpcError("a value is not a string")
            if len(v) not in (6, 18):
                raise KrpcError(f"compact address of {len(v)} bytes")
            addr = unpack_addr(v)
            if addr[1]:
                values.append(addr)
    token = r.get(b"token")
    if token is not None and (not isinstance(token, bytes) or not 0 < len(token) <= MAX_TOKEN):
        raise KrpcError("bad token")
    ip = None
    raw_ip = top.get(b"ip")
    if isinstance(raw_ip, bytes) and len(raw_ip) in (6, 18):
        ip = unpack_addr(raw_ip)
    return Response(tid, node_id, nodes, nodes6, tuple(values), token, ip)


def _error(tid: bytes, top: dict) -> Error:
    e = top.get(b"e")
    if (not isinstance(e, list) or len(e) < 2 or not isinstance(e[0], int)
            or not isinstance(e[1], bytes)):
        raise KrpcError("malformed error")
    return Error(tid, e[0], e[1][:200].decode("utf-8", "replace"))


def encode(msg: Message, *, ip: Addr | None = None, version: bytes | None = None) -> bytes:
    """The datagram for a message. ``ip`` (responses and errors) tells the remote
    node how we see it (BEP 42); ``version`` is the ``v`` key."""
    top: dict[bytes, object] = {b"t": msg.tid}
    if isinstance(msg, Query):
        top[b"y"] = b"q"
        args: dict[bytes, object] = {b"id": msg.id}
        if isinstance(msg, (FindNode, GetPeers)) and msg.want:
            args[b"want"] = [w.encode() for w in WANTS if w in msg.want]
        if isinstance(msg, FindNode):
            top[b"q"] = b"find_node"
            args[b"target"] = msg.target
        elif isinstance(msg, GetPeers):
            top[b"q"] = b"get_peers"
            args[b"info_hash"] = msg.info_hash
        elif isinstance(msg, AnnouncePeer):
            top[b"q"] = b"announce_peer"
            args.update({b"info_hash": msg.info_hash, b"port": msg.port,
                         b"token": msg.token, b"implied_port": int(msg.implied_port)})
        elif isinstance(msg, UnknownQuery):
            top[b"q"] = msg.method
        else:
            top[b"q"] = b"ping"
        if msg.read_only:
            top[b"ro"] = 1
        top[b"a"] = args
    elif isinstance(msg, Response):
        top[b"y"] = b"r"
        body: dict[bytes, object] = {b"id": msg.id}
        if msg.nodes:
            body[b"nodes"] = pack_nodes(msg.nodes)
        if msg.nodes6:
            body[b"nodes6"] = pack_nodes(msg.nodes6)
        if msg.values:
            body[b"values"] = [pack_addr(a) for a in msg.values]
        if msg.token is not None:
            body[b"token"] = msg.token
        top[b"r"] = body
    elif isinstance(msg, Error):
        top[b"y"] = b"e"
        top[b"e"] = [msg.code, msg.message.encode()]
    else:
        raise TypeError(f"not a KRPC message: {msg!r}")
    if ip is not None:
        top[b"ip"] = pack_addr(ip)
    if version is not None:
        top[b"v"] = version
    return bencode(top)
