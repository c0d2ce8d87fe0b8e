"""Many torrents in one mount: ``torrentfs mount --watch DIR MOUNTPOINT``.

``MultiMount.run`` lists DIR every ``POLL`` seconds (a stat of each candidate
file: bounded, no dependency; ``watchdir.DirWatch`` decides what changed), starts
a ``Torrent`` for each .torrent that appears and shows it as a folder
(``multifs.MultiFS``), and stops it when its file goes. A file that cannot be
loaded (a bad .torrent, an unknown suffix, the same torrent as another file) is
skipped with one log line, and tried again only once it changes.

All the torrents share (``Shared``):
* one listening port, TCP and uTP (whose UDP socket the DHT shares, and every
  torrent dials uTP from): an incoming connection's handshake names the torrent it
  wants (its info-hash, bytes 28-48 of a plain one, the SKEY of an encrypted one:
  ``net.mse.open_incoming``, bounded by its ``HANDSHAKE_TIMEOUT``), the
  connection is handed to that torrent with the bytes read given again, or closed
  if no torrent has that hash;
* one upload and one download token bucket, and one cap on connections
  (``--max-peers`` counts every torrent's peers);
* one DHT node (each public torrent looks itself up there).

A removed file stops its torrent as an unmount does: its folder goes at once,
waiting and later reads of its files still open fail with EIO, its peers are
closed, trackers told ``stopped`` and its resume file saved; its verified data
stays in the cache for the next time.

Loaders (``sources.LOADERS``, ``sources.watch_loader``) turn a file into a
``Source``: a .torrent at once, a .magnet file (a text file holding a magnet link)
with ``meta=None`` and a ``resolve`` that fetches the metadata (its folder appears
once it is known).
"""

from __future__ import annotations

import contextvars
import logging
import os
import stat
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable

import trio

from torrentfs.core.metainfo import Metainfo
from torrentfs.core.ratelimit import TokenBucket
from torrentfs.core.tree import Tree
from torrentfs.core.watchdir import MAX_FILES, DirWatch, Signature, candidates
from torrentfs.disk.lock import Locked, TorrentLock
from torrentfs.disk.private import private_dir
from torrentfs.disk.space import NoRoom, free_space_limit
from torrentfs.engine.options import TorrentOptions
from torrentfs.engine.sources import Skip, Source, SourceError, load_file
from torrentfs.engine.swarms import other_hashes, swarm_hashes
from torrentfs.engine.torrent import Torrent
from torrentfs.net.listen import WILDCARDS, open_listeners
from torrentfs.net.mse import MSEError, open_incoming
from torrentfs.net.peer import tune
from torrentfs.net.utp import UtpSocket

log = logging.getLogger("torrentfs.multi")

POLL = 1.0             # seconds between two listings of the watched folder
STOP_WAIT = 20.0       # a removed torrent gets this long to tell its trackers and save


# The file whose torrent a task works for: trio tasks inherit it from the task that
# starts them, so every log line of a torrent's tasks can say which it is.
current_file: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "torrentfs_multi_file", default=None)


class TorrentTag(logging.Filter):
    """Prefix the log lines of a torrent's tasks with its file's name: one log holds
    every torrent of the mount."""

    def filter(self, record: logging.LogRecord) -> bool:
        file = current_file.get()
        if file is not None and not record.name.startswith("torrentfs.multi"):
            record.msg, record.args = f"[{file}] {record.getMessage()}", ()
        return True


def list_folder(path: Path, limit: int = MAX_FILES) -> tuple[dict[str, Signature], int]:
    """The candidate files of the watched folder with their stat signatures, and
    how many were left out over ``limit``. Files that vanish meanwhile, folders and
    other non-files are not listed. Raises OSError if the folder cannot be read."""
    with os.scandir(path) as it:
        names, over = candidates((e.name for e in it), limit)
    listing = {}
    for name in names:
        try:
            st = os.stat(path / name)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            listing[name] = (st.st_size, st.st_mtime_ns, st.st_ino)
    return listing, over


def _leaf(e: BaseException) -> BaseException:
    """The one exception inside nested one-exception groups (trio's nurseries)."""
    while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
        e = e.exceptions[0]
    return e


class Shared:
    """What the torrents of one mount share: rate limits and the connection cap."""

    def __init__(self, max_peers: int, upload_rate: float | None = None,
                 download_rate: float | None = None) -> None:
        self.max_peers = max_peers
        self.upload = TokenBucket(upload_rate)
        self.download = TokenBucket(download_rate)
        self.torrents: list[Torrent] = []

    def connections(self) -> int:
        return sum(t.connector.connections for t in self.torrents)

    def room(self) -> bool:
        """Room for one more connection, whichever torrent makes it."""
        return self.connections() < self.max_peers


@dataclass
class _Entry:
    """A file of the watched folder being mounted, mounted, or stopping."""
    file: str
    source: Source
    scope: trio.CancelScope = field(default_factory=trio.CancelScope)
    stopped: trio.Event = field(default_factory=trio.Event)
    torrent: Torrent | None = None
    nursery: trio.Nursery | None = None  # where its torrent and its peers run
    folder: str | None = None            # the name it is shown as


class MultiMount:
    """The torrents of a watched folder, served together (see the module docstring).
    ``fs`` shows them (``add(name, torrent, tree) -> name``, ``remove(name)``);
    ``torrent_options`` go to every ``Torrent`` (but its port, peers and listening
    are the mount's); ``peers`` are tried for each;
    ``open_dht(nursery, port)`` starts a DHT node (``dht.DHT``), asked for every
    public torrent's peers."""

    def __init__(self, folder: Path, fs, cache: Path, shared: Shared, *, port: int = 0,
                 listen_host: str | None = None, peers=(), open_dht=None,
                 torrent_options: TorrentOptions = TorrentOptions(),
                 load: Callable[[Path], Source] = load_file,
                 mountpoint: str | None = None) -> None:
        self.folder = Path(folder)
        self.fs = fs
        self.cache = Path(cache)
        self.shared = shared
        self.port = port
        self.listen_host = listen_host
        self.peers = list(peers)
        self.open_dht = open_dht
        self.dht = None
        self.utp: UtpSocket | None = None   # uTP on the UDP port of the same number
        self.torrent_options = torrent_options
        self.load = load
        self.watch = DirWatch()
        self.by_file: dict[str, _Entry] = {}
        self.by_hash: dict[bytes, _Entry] = {}
        self._duplicates: dict[str, bytes] = {}  # skipped file -> the hash it repeats
        self.skipped: dict[str, str] = {}        # file not shown -> why (for status)
        self.mountpoint = mountpoint             # named in each torrent's lock
        self._nursery: trio.Nursery | None = None
        self._listing_error: str | None = None
        self._over = 0
        self._scanning = trio.Lock()  # one scan at a time: each acts on what it saw
        self.poll = POLL

    async def run(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Listen, mount what the folder holds, and follow it until cancelled.
        Ready once listening and the torrents present at the start are shown."""
        o = self.torrent_options
        listeners = []
        if o.tcp:  # IPv4 and IPv6 on one port unless a host is named
            listeners = await open_listeners(self.port, self.listen_host)
            self.port = listeners[0].socket.getsockname()[1]
        if o.utp:  # uTP: IPv4 and IPv6 (one socket) unless a host is named
            host = None if self.listen_host in WILDCARDS else self.listen_host
            sock = UtpSocket(host=host, port=self.port,
                             accept=partial(self._route, transport="utp"))
            try:
                sock.bind()
            except OSError as e:
                if not o.tcp:
                    raise
                log.warning("uTP off: cannot bind UDP port %d: %s", self.port, e.strerror)
            else:
                self.utp, self.port = sock, sock.port
        log.info("listening on port %d for every torrent", self.port)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            if listeners:
                nursery.start_soon(trio.serve_listeners, self._incoming, listeners)
            if self.utp is not None:
                await nursery.start(self.utp.run)
            if self.open_dht is not None:
                self.dht = await (self.open_dht(nursery, self.port, transport=self.utp)
                                  if self.utp else self.open_dht(nursery, self.port))
            await self.scan()
            task_status.started()
            while True:
                await trio.sleep(self.poll)
                await self.scan()

    # -- the watched folder ---------------------------------------------------------

    async def scan(self) -> None:
        """One listing of the folder, and what follows from it."""
        async with self._scanning:
            await self._scan()

    async def _scan(self) -> None:
        try:
            listing, over = await trio.to_thread.run_sync(list_folder, self.folder)
        except OSError as e:
            why = e.strerror or str(e)
            if why != self._listing_error:  # one line per new trouble, not per poll
                log.warning("cannot list %s: %s (keeping what is mounted)", self.folder, why)
            self._listing_error = why
            return
        self._listing_error = None
        if over and over != self._over:
            log.warning("%s holds more than %d torrents: %d ignored", self.folder,
                        MAX_FILES, over)
        self._over = over
        changes = self.watch.update(listing)
        for name in changes.removed:
            await self._remove(name)
        for name in changes.added:
            await self._add(name)

    async def _add(self, file: str) -> None:
        try:
            source = await trio.to_thread.run_sync(self.load, self.folder / file)
        except Skip as e:
            self._skip(file, str(e))
            return
        same = self.by_hash.get(source.info_hash)
        if same is not None:
            self._skip(file, f"the same torrent as {same.file}")
            self._duplicates[file] = source.info_hash
            return
        entry = _Entry(file, source)
        self.by_file[file] = entry
        self.by_hash[source.info_hash] = entry
        try:
            await self._nursery.start(self._serve, entry)
        except Skip as e:  # its cache folder cannot be used, say
            self._skip(file, str(e))
            self._forget(entry)

    def _skip(self, file: str, why: str) -> None:
        """``file`` is not shown: one log line, and the reason kept for status."""
        log.warning("skipped %s: %s", file, why)
        self.skipped[file] = why

    def fetching(self) -> list[str]:
        """The files whose metadata is being fetched (magnet links)."""
        return [e.file for e in self.by_file.values() if e.torrent is None]

    def _forget(self, entry: _Entry) -> None:
        if self.by_file.get(entry.file) is entry:
            del self.by_file[entry.file]
        for h, e in list(self.by_hash.items()):  # its v1 hash, and a hybrid's v2 one
            if e is entry:
                del self.by_hash[h]
        # A file skipped as a duplicate of this one gets its turn.
        for file, h in list(self._duplicates.items()):
            if h == entry.source.info_hash:
                del self._duplicates[file]
                self.watch.forget(file)

    async def _remove(self, file: str) -> None:
        self._duplicates.pop(file, None)
        self.skipped.pop(file, None)
        entry = self.by_file.get(file)
        if entry is None:
            return  # it was skipped
        self._forget(entry)
        if entry.folder is not None:
            self.fs.remove(entry.folder)
            log.info("removed %s: %s is gone", entry.folder, file)
            entry.folder = None
        entry.scope.cancel()
        with trio.move_on_after(STOP_WAIT):
            await entry.stopped.wait()
        if not entry.stopped.is_set():
            log.warning("%s is still stopping after %.0f s", file, STOP_WAIT)

    async def _serve(self, entry: _Entry, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Run one torrent until its file goes (``entry.scope`` is cancelled). Ready
        once its folder is shown (a magnet link: once its metadata is being
        fetched). Whatever goes wrong ends this torrent only: before it is ready
        as a ``Skip`` for ``_add``, after with a log line."""
        current_file.set(entry.file)
        started = False

        def ready() -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started()

        try:
            with entry.scope:
                meta = entry.source.meta
                if meta is None:  # a magnet link: the folder waits for the metadata
                    ready()
                    meta = await entry.source.resolve()
                await self._run_torrent(entry, meta, ready)
        except Exception as e:
            leaf = _leaf(e)
            if not isinstance(leaf, (Skip, OSError, SourceError)):
                log.error("torrent of %s failed", entry.file, exc_info=leaf)
            if not started:
                raise Skip(str(leaf) or type(leaf).__name__) from None
            log.warning("stopped %s: %s", entry.file, leaf)
            self.skipped[entry.file] = str(leaf) or type(leaf).__name__
            if self.by_file.get(entry.file) is entry:
                self._forget(entry)
            if entry.folder is not None:
                self.fs.remove(entry.folder)
                entry.folder = None
        finally:
            entry.stopped.set()

    async def _run_torrent(self, entry: _Entry, meta: Metainfo,
                           ready: Callable[[], None]) -> None:
        cache_size = self.torrent_options.cache_size
        if cache_size is not None and cache_size < 2 * meta.piece_length:
            raise Skip(f"--cache-size is too small for it (pieces of {meta.piece_length} "
                       "bytes; two are needed)")
        folder = self.cache / meta.info_hash.hex()
        private_dir(folder)
        try:  # one daemon per torrent and cache folder
            lock = TorrentLock(folder).acquire(mountpoint=self.mountpoint, what="mounted on")
        except Locked as e:
            raise Skip(f"this torrent is {e}") from None
        with lock:
            options = replace(self.torrent_options, port=self.port, listen=False,
                              peers=(*self.peers, *entry.source.peers))
            if cache_size is None:  # a small disk: a limit from its free space
                options = await self._free_space_limit(options, meta, folder)
            await self._run_locked(entry, meta, folder, ready, options)

    async def _free_space_limit(self, options: TorrentOptions, meta: Metainfo,
                                folder: Path) -> TorrentOptions:
        """``options`` with the cache limit a torrent gets from the disk's free space
        if it does not fit there (as a single mount's: one warning line, shown in
        status); what the mount's other torrents may still write is not free.
        Raises ``Skip`` if not even two of its pieces fit."""
        promised = sum(max(0, (t.cache.limit if t.cache.limit is not None
                               else t.meta.total_length) - t.cache.books.used)
                       for t in self.shared.torrents)
        try:
            limit, note = await trio.to_thread.run_sync(
                free_space_limit, folder, meta.total_length, meta.piece_length, promised)
        except NoRoom as e:
            raise Skip(str(e)) from None
        if limit is None:
            return options
        log.warning("%s: %s", current_file.get(), note)
        return replace(options, cache_size=limit, cache_size_auto=True)

    async def _run_locked(self, entry: _Entry, meta: Metainfo, folder: Path,
                          ready: Callable[[], None], options: TorrentOptions) -> None:
        torrent = Torrent(meta, folder, options, shared=self.shared, utp=self.utp)
        tree = Tree.from_metainfo(meta)
        for h in other_hashes(meta):  # a hybrid: peers of its v2 swarm are routed here too
            self.by_hash.setdefault(h, entry)
        async with trio.open_nursery() as nursery:
            await nursery.start(torrent.run)
            entry.torrent, entry.nursery = torrent, nursery
            self.shared.torrents.append(torrent)
            try:
                if self.dht is not None and not meta.private:
                    from torrentfs.net.dht import keep_torrent_found
                    for h in swarm_hashes(meta):  # each swarm of the torrent
                        nursery.start_soon(partial(
                            keep_torrent_found, self.dht, h, port=lambda: self.port,
                            add_peer=torrent.add_peer,
                            peer_count=lambda: len(torrent.sessions)))
                entry.folder = self.fs.add(meta.name, torrent, tree)
                log.info("added %s as %s (info-hash %s)", entry.file, entry.folder,
                         meta.info_hash.hex())
                self.skipped.pop(entry.file, None)
                ready()
                await trio.sleep_forever()
            finally:
                self.shared.torrents.remove(torrent)

    # -- incoming peers --------------------------------------------------------------

    async def _incoming(self, stream: trio.SocketStream) -> None:
        """A TCP connection: routed as any other (``_route``)."""
        try:
            host, port, *_ = stream.socket.getpeername()
            tune(stream)
        except OSError:
            await stream.aclose()
            return
        await self._route(stream, (host, port))

    async def _route(self, stream: trio.abc.Stream, addr: tuple[str, int], *,
                     transport: str = "tcp") -> None:
        """Route a connection (TCP or uTP, plain or encrypted) to the torrent its
        handshake names, or close it."""
        host, port = addr[:2]
        serving = [h for h, e in self.by_hash.items() if e.nursery is not None]
        try:
            incoming = await open_incoming(stream, serving, self.torrent_options.encryption)
        except (MSEError, trio.TooSlowError, trio.BrokenResourceError,
                trio.ClosedResourceError, OSError) as e:
            log.debug("incoming %s:%d refused: %s", host, port, e)
            with trio.CancelScope(shield=True):
                await stream.aclose()
            return
        if incoming.encrypted:
            log.info("encrypted connection from %s:%d (%s)", host, port,
                     "RC4" if incoming.stream.encrypted else "plaintext selected")
        entry = self.by_hash.get(incoming.info_hash)
        if entry is None or entry.nursery is None:
            log.debug("incoming %s:%d: no torrent here has info-hash %s", host, port,
                      incoming.info_hash.hex())
            with trio.CancelScope(shield=True):
                await stream.aclose()
            return
        # The session runs in the torrent's nursery, so that it ends with the
        # torrent; this task waits for it (serve_listeners closes the stream after).
        done = trio.Event()

        async def session() -> None:
            current_file.set(entry.file)
            try:
                await entry.torrent.accept(incoming.stream, (host, port),
                                           transport=transport)
            finally:
                done.set()

        try:
            entry.nursery.start_soon(session)
        except RuntimeError:  # the torrent is stopping
            return
        await done.wait()
