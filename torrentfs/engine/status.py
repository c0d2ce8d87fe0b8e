"""What a running torrent is doing, as plain data: for ``torrentfs status``, its
``--json`` and ``--watch``, and the extended attributes of the mounted files.

``snapshot(torrent)`` reads a ``Torrent``'s state in the trio thread and returns a
dict of plain values (no I/O, cheap: one pass over the pieces; in ``publish`` its
``files`` is a ``statusfiles.Files``, kept encoded, that ``encode`` splices in). The daemon
publishes it (``publish``) once a second (less often for a torrent so big that its
snapshot takes over 20 ms) as a JSON file written atomically (temp file, rename)
next to the mount's state file, ``<cache>/mounts/<key>.status.json``;
the CLI reads that file and never talks to the daemon, so a busy or wedged daemon
cannot hang ``torrentfs status`` (a stale file shows by its ``updated`` time).

The JSON document (``SCHEMA`` 1; fields are only ever added, never renamed or
retyped within a schema number; sizes in bytes, rates in bytes/s, times in s)::

    {"schema": 1, "pid": 1234, "mountpoint": "/mnt/x", "updated": 1700000000.0,
     "torrents": [TORRENT],                  # one per torrent the daemon serves
     "state": "mounted" | "seeding after unmount",
     # a watch mount's only (mount --watch):
     "watched": "/the/folder", "skipped": [{"file": str, "why": str}],
     "fetching": [str]}                      # .magnet files waiting for metadata

    # in a watch mount, TORRENT also has "file" (in the watched folder) and
    # "folder" (its name in the mount)

    TORRENT = {"name": str, "info_hash": "40 hex digits",
      "size": int, "verified": int,          # bytes of the torrent, bytes verified
      "pieces": {"total": int, "verified": int, "length": int},
      "complete": bool, "prefetch": bool, "seeding": bool,
      "peers": {"connected": int,            # past the handshake
                "unchoked_us": int,          # may request from them
                "we_unchoked": int,          # may request from us
                "interested": int,           # want our data
                "known": int, "banned": int, # addresses known, peers banned
                "list": [{"address": "ip:port", "client": str, "outgoing": bool,
                          "unchoked_us": bool, "we_unchoked": bool,
                          "interested": bool, "snubbed": bool,
                          "download_rate": float, "upload_rate": float,
                          "downloaded": int, "uploaded": int}]},
      "rates": {"download": float, "upload": float},   # over the last 2 s
      "trackers": [{"url": str, "status": "ok" | "error" | "not tried",
                    "message": str,          # the error, for "error"
                    "peers": int,            # peers in its last answer
                    "at": float | null,      # when (Unix time) it last answered
                    "warning": str | null}], # tier order
      "totals": {"downloaded": int, "uploaded": int, "wasted": int},
      "reads": [{"pieces": [int], "waiting": float, "why": str}],  # oldest first
      "cache": {"folder": str, "bytes": int, "limit": int | null,
                "limit_from": "--cache-size" | "free space" | null,
                "disk_full": {"count": int,      # writes failed for a full disk
                              "last": float | null}},  # when (Unix time), latest
      "files": [{"path": str, "size": int, "verified": int}],     # no padding files
      "metrics": FIGURES}  # what --metrics serves: bytes by source, pieces passed and
                           # failed, read latency... (``engine.metrics``' docstring)
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import secrets
import time
from pathlib import Path

import trio

from torrentfs.core.address import show_addr
from torrentfs.disk.private import write_private
from torrentfs.engine.metrics import figures
from torrentfs.engine.statusfiles import Files, file_path

__all__ = ["SCHEMA", "client_name", "document", "encode", "file_path", "node_facts",
           "publish", "snapshot", "status_path"]

log = logging.getLogger("torrentfs.status")

SCHEMA = 1
PUBLISH_EVERY = 1.0  # seconds between status files ...
BUSY_SHARE = 50     # ... or more: a huge torrent's snapshot takes at most 1/50 of the time
#: True while ``publish`` takes snapshots: their ``files`` stay ``statusfiles.Files``
#: for ``encode`` (a 100,000-file list is neither rebuilt nor encoded again).
_PUBLISHING = contextvars.ContextVar("publishing", default=False)


def client_name(peer_id: bytes | None) -> str:
    """A peer's client, from an Azureus-style peer id (``-lt2060-``: ``lt 2060``);
    only letters, digits and dots, whatever the peer sent."""
    if not peer_id:
        return ""
    if len(peer_id) >= 8 and peer_id[:1] == b"-" and peer_id[7:8] == b"-":
        text = f"{peer_id[1:3].decode('latin-1')} {peer_id[3:7].decode('latin-1')}"
    else:
        text = peer_id[:8].decode("latin-1")
    return re.sub(r"[^0-9A-Za-z. ]", "?", text)


def snapshot(torrent, now: float | None = None) -> dict:
    """The torrent's state as plain data (the TORRENT object of the schema above)."""
    now = trio.current_time() if now is None else now
    g, have, meta = torrent.geometry, torrent.have, torrent.meta
    peers = [s for s in torrent.sessions.values() if s.registered and not s.closed]
    listed = []
    for s in sorted(peers, key=lambda p: -p.down.rate(now)):
        listed.append({
            "address": show_addr(s.addr),
            "client": client_name(s.peer_id), "outgoing": s.outgoing,
            "unchoked_us": not s.peer_choking, "we_unchoked": not s.am_choking,
            "interested": s.peer_interested, "snubbed": s.snubbed,
            "download_rate": round(s.down.shown(now), 1),
            "upload_rate": round(s.up.shown(now), 1),
            "downloaded": s.down.total, "uploaded": s.up.total})
    reads = []
    for since, pieces in sorted(torrent.waiting_reads.values(), key=lambda r: r[0]):
        missing = [i for i in pieces if i not in have]
        if missing:
            reads.append({"pieces": missing, "waiting": round(now - since, 3),
                          "why": torrent.who_has(missing[0])})
    files = Files(torrent)  # encoded once, then only what changed (``statusfiles``)
    if not _PUBLISHING.get():
        files = list(files)  # plain data
    return {
        "name": meta.name, "info_hash": meta.info_hash.hex(),
        "size": g.total_length, "verified": g.verified_total(have),
        "pieces": {"total": g.num_pieces, "verified": have.count,
                   "length": g.piece_length},
        "complete": have.complete, "prefetch": torrent.picker.prefetch,
        "seeding": torrent.seeding,
        "peers": {"connected": len(peers),
                  "unchoked_us": sum(1 for s in peers if not s.peer_choking),
                  "we_unchoked": sum(1 for s in peers if not s.am_choking),
                  "interested": sum(1 for s in peers if s.peer_interested),
                  "known": len(torrent.candidates), "banned": len(torrent.banned_ips),
                  "list": listed},
        "rates": {"download": round(sum(s.down.shown(now) for s in peers), 1),
                  "upload": round(sum(s.up.shown(now) for s in peers), 1)},
        "trackers": torrent.announcer.tracker_states(),
        "totals": {"downloaded": torrent.downloaded, "uploaded": torrent.uploaded,
                   "wasted": torrent.wasted},
        "reads": reads,
        "cache": {"folder": os.path.abspath(torrent.storage.folder),
                  "bytes": torrent.cache.books.used, "limit": torrent.cache.limit,
                  "limit_from": None if torrent.cache.limit is None else
                  "free space" if torrent.options.cache_size_auto else "--cache-size",
                  "disk_full": torrent.cache.full.as_dict()},
        "files": files,
        "metrics": figures(torrent),
    }


def document(torrents: list[dict], mountpoint: str, pid: int | None = None,
             updated: float | None = None) -> dict:
    """The whole status file: who wrote it, when, and each torrent's snapshot."""
    return {"schema": SCHEMA, "pid": os.getpid() if pid is None else pid,
            "mountpoint": mountpoint,
            "updated": round(time.time() if updated is None else updated, 3),
            "torrents": torrents}


def status_path(state_file: Path) -> Path:
    """Where the daemon behind ``state_file`` (``cli.state.mount_state_file``) publishes."""
    return state_file.with_name(state_file.stem + ".status.json")


def encode(doc: dict) -> bytes:
    """The status document as compact JSON; each torrent's ``files`` (``Files``) is
    spliced in as it was encoded (``statusfiles``), not encoded again."""
    nonce = secrets.token_hex(16)  # in no name: a placeholder nothing else can be
    lists: list[str] = []

    def raw(o):
        if isinstance(o, Files):
            lists.append(o.json())
            return f"{nonce}:{len(lists) - 1}"
        raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")

    text = json.dumps(doc, separators=(",", ":"), default=raw)
    for n, listed in enumerate(lists):
        text = text.replace(f'"{nonce}:{n}"', listed, 1)
    return text.encode()


def status_file(torrents, mountpoint: str, extra=None) -> bytes:
    """The status file's bytes now (``publish``'s arguments)."""
    token = _PUBLISHING.set(True)
    try:
        doc = document([t.status() for t in torrents()], mountpoint)
    finally:
        _PUBLISHING.reset(token)
    if extra is not None:
        doc.update(extra())
    return encode(doc)


def publish_now(torrents, path: Path, mountpoint: str, extra=None) -> None:
    """Write the status file at once, in this thread: a change of state that
    ``torrentfs status`` must show as soon as ``torrentfs list`` does (the registry
    is written at once; ``publish`` writes every second)."""
    try:
        write_private(path, status_file(torrents, mountpoint, extra))
    except OSError as e:
        log.warning("cannot write the status file %s: %s", path, e)


async def publish(torrents, path: Path, mountpoint: str, every: float = PUBLISH_EVERY,
                  offload=trio.to_thread.run_sync, extra=None) -> None:
    """Write the status file every ``every`` seconds until cancelled, then remove
    it. ``torrents`` is a callable giving the torrents served (the snapshots are
    taken in the trio thread, the file written by ``offload``: a worker thread);
    ``extra()``, if given, gives more top-level fields (``state``, ``skipped``...)."""
    try:
        while True:
            t0 = time.perf_counter()
            data = status_file(torrents, mountpoint, extra)
            took = time.perf_counter() - t0  # in the trio thread: keep it a small share
            try:
                await offload(write_private, path, data)  # atomic: old or new, never half
            except OSError as e:
                log.warning("cannot write the status file %s: %s", path, e)
            await trio.sleep(max(every, took * BUSY_SHARE))
    finally:
        path.unlink(missing_ok=True)


def node_facts(torrent, tree, node) -> dict[str, str]:
    """The extended attributes of a mounted node (name without ``user.torrentfs.``
    -> value): a file's or folder's verified bytes and progress; on the root, the
    torrent's too, with its info-hash and peers."""
    g, have = torrent.geometry, torrent.have
    if node.inode == tree.root.inode:
        size, verified = g.total_length, g.verified_total(have)
        pieces = range(g.num_pieces)
    else:
        files = _files_under(tree, node)
        size = sum(g.file_lengths[i] for i in files)
        verified = sum(g.file_verified(have, i) for i in files)
        pieces = sorted({p for i in files for p in g.file_pieces(i)})
    facts = {"progress": f"{verified}/{size}", "verified": str(verified),
             "pieces": f"{sum(1 for p in pieces if p in have)}/{len(pieces)}"}
    if node.inode == tree.root.inode:
        now = trio.current_time()
        peers = [s for s in torrent.sessions.values() if s.registered and not s.closed]
        facts.update({
            "infohash": torrent.meta.info_hash.hex(),
            "name": torrent.meta.name,
            "peers": str(len(peers)),
            "peers_unchoked_us": str(sum(1 for s in peers if not s.peer_choking)),
            "peers_we_unchoked": str(sum(1 for s in peers if not s.am_choking)),
            "download_rate": str(int(sum(s.down.shown(now) for s in peers))),
            "upload_rate": str(int(sum(s.up.shown(now) for s in peers))),
            "reads_waiting": str(len(torrent.waiting_reads)),
        })
    return facts


def _files_under(tree, node) -> list[int]:
    """The file indexes of ``node`` (a file) or of every file below it (a folder)."""
    if not node.is_dir:
        return [node.file_index]
    out: list[int] = []
    stack = [node]
    while stack:
        n = stack.pop()
        for inode in n.children.values():
            child = tree.nodes[inode]
            if child.is_dir:
                stack.append(child)
            else:
                out.append(child.file_index)
    return out


def why_missing(torrent, index: int) -> str:
    """Why a piece is not coming, for the log and ``status``: no peers, or peers
    without it, or with it but choking us; and how the web seeds fare, if any."""
    peers = [s for s in torrent.sessions.values() if s.registered]
    if not peers:
        why = "no peers connected"
    else:
        having = [s for s in peers if torrent.picker.peer_has(s, index)]
        if not having:
            why = f"none of the {len(peers)} peers connected has it"
        else:
            unchoked = sum(1 for s in having if not s.peer_choking)
            why = (f"{len(having)} of {len(peers)} peers connected have it, "
                   f"{unchoked} of them unchoked us")
    seeds = torrent.webseeds.active()
    if seeds:  # they have every piece
        down = sum(1 for s in seeds if not s.up)
        why += f"; {down} of {len(seeds)} web seeds down" if down else \
            f"; {len(seeds)} web seeds up"
    return why
