"""The ``torrentfs`` command: mount, unmount, status, seed, info, create.

Every failure a user can cause ends in one line on stderr (``torrentfs: error: ...``)
and a non-zero exit, never a traceback. ``mount`` daemonises like sshfs: the command
returns once the filesystem is mounted and ready (or prints why it could not be), and
the daemon logs to ``torrentfs.log`` in the torrent's cache folder; ``-f`` stays in the
foreground and logs to stderr.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import appdirs

from torrentfs import __version__
from torrentfs.cli.output import CliError, OneLineFormatter, human, setup_logging  # noqa: F401
from torrentfs.cli.state import default_cache_dir, mount_log_file, mount_state_file  # noqa: F401
from torrentfs.core.magnet import link as magnet_link
from torrentfs.engine.sources import (  # noqa: F401
    SourceError,
    cached_metainfo,
    load_target,
    load_torrent,
)
from torrentfs.fs.procfs import fuse_mount_type, is_mounted, pid_alive, probe_mount  # noqa: F401

log = logging.getLogger("torrentfs")

READY_TIMEOUT = 60.0  # a mount that is not ready by then is killed and reported
METADATA_TIMEOUT = 120.0  # default --metadata-timeout for magnet links


# -- helpers ------------------------------------------------------------------------

def parse_size(text: str) -> int:
    """'256K', '1M', '1MiB', '16384' -> bytes."""
    m = re.fullmatch(r"\s*(\d+)\s*([kmg]?)(i?b)?\s*", text, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 256K or 1M)")
    return int(m.group(1)) * {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]


def parse_peer(text: str) -> tuple[str, int]:
    """'HOST:PORT' or '[V6]:PORT' -> (host, port)."""
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]+):(\d+)", text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not HOST:PORT: {text!r}")
    host, port = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
    if not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"port out of range in {text!r}")
    return host, int(port)


async def fetch_metainfo(magnet, folder: Path, args, peer_id: bytes, port: int, progress,
                         dht=None):
    """(Metainfo, peers) of a magnet: cached, or fetched within --metadata-timeout
    from the peers its trackers, its x.pe hints, --peer and (with ``dht``) the DHT
    know."""
    from torrentfs.core.magnet import MagnetError
    from torrentfs.net.magnetfetch import MetadataTimeout, default_sources, resolve
    sources = default_sources(magnet, peer_id, port, args.peer)
    if dht is not None:
        from torrentfs.net.dht import keep_torrent_found

        async def dht_source(add) -> None:
            await keep_torrent_found(dht, magnet.info_hash, port=lambda: port,
                                     add_peer=lambda addr: add([addr]),
                                     peer_count=lambda: 0)
        sources.append(dht_source)
    try:
        return await resolve(magnet, folder, peer_id=peer_id, port=port,
                             timeout=args.metadata_timeout, peers=args.peer,
                             sources=sources, progress=progress)
    except (MetadataTimeout, MagnetError) as e:
        raise CliError(str(e)) from None


def free_port() -> int:
    """A TCP port free right now (announced while the metadata is fetched)."""
    import socket
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def terminal_progress():
    """A progress callback that rewrites one stderr line, or None off a terminal."""
    if not sys.stderr.isatty():
        return None

    def progress(text: str) -> None:
        print(f"\r{text}\x1b[K", end="", file=sys.stderr, flush=True)
    return progress


def write_private(path: Path, data: bytes) -> None:
    """Write ``path`` (0600, in a 0700 folder) whatever the umask."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path.parent, 0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
    finally:
        os.close(fd)


def check_mountpoint(mountpoint: str) -> str:
    """The mountpoint's real path, once it is known to be an empty directory with
    nothing mounted on it. A dead FUSE mount left there by a crashed daemon (any
    FUSE filesystem's, not only ours) is detached first with a lazy unmount."""
    path = os.path.abspath(mountpoint)
    if fuse_mount_type(path) is not None:
        answer = probe_mount(path)
        if answer is None:
            raise CliError(f"mountpoint {mountpoint}: something is already mounted there "
                           "(and it does not answer)")
        if answer != errno.ENOTCONN:
            raise CliError(f"mountpoint {mountpoint}: something is already mounted there")
        exe = shutil.which("fusermount3") or shutil.which("fusermount")
        r = subprocess.run([exe or "fusermount3", "-uz", path], capture_output=True,
                           text=True, timeout=30)
        if r.returncode != 0:
            raise CliError(f"mountpoint {mountpoint}: stale mount from a crashed run "
                           "that fusermount3 -uz cannot clear")
        print(f"torrentfs: cleared a stale mount on {mountpoint} (its daemon had died)",
              file=sys.stderr, flush=True)
    try:
        os.stat(path)  # raises for a missing mountpoint (or a stale one not ours to see)
    except FileNotFoundError:
        raise CliError(f"mountpoint {mountpoint}: no such directory") from None
    except OSError as e:
        if e.errno == errno.ENOTCONN:
            raise CliError(f"mountpoint {mountpoint}: stale mount from a crashed run; "
                           f"clear it with: torrentfs unmount {mountpoint}") from None
        raise CliError(f"mountpoint {mountpoint}: {e.strerror}") from None
    if not os.path.isdir(path):
        raise CliError(f"mountpoint {mountpoint}: not a directory")
    if os.path.ismount(path):
        raise CliError(f"mountpoint {mountpoint}: something is already mounted there")
    if os.listdir(path):
        raise CliError(f"mountpoint {mountpoint}: directory is not empty")
    path = os.path.realpath(path)  # now, while stat on it cannot reach our own mount
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        raise CliError("cannot open /dev/fuse: is FUSE installed (apt install fuse3)?")
    return path


# -- commands -----------------------------------------------------------------------

def cmd_info(args) -> int:
    meta, magnet = load_target(args.torrent)
    if meta is None:
        meta = _info_of_magnet(magnet, args)
    print(f"name:       {meta.name}")
    print(f"info-hash:  {meta.info_hash.hex()}")
    print(f"size:       {human(meta.total_length)} ({meta.total_length} bytes)")
    print(f"pieces:     {meta.num_pieces} x {human(meta.piece_length)}")
    if meta.private:
        print("private:    yes")
    if meta.comment:
        print(f"comment:    {meta.comment}")
    if meta.created_by:
        print(f"created by: {meta.created_by}")
    for n, tier in enumerate(meta.announce_list):
        for url in tier:
            print(f"tracker:    {url}  (tier {n})")
    for url in meta.url_list:
        print(f"web seed:   {url}")
    print(f"magnet:     {magnet_link(meta)}")
    shown = [f for f in meta.files if not f.padding]
    print(f"files:      {len(shown)}")
    for f in shown:
        path = "/".join((meta.name, *f.path)) if meta.multi_file else meta.name
        print(f"  {f.length:>14}  {path}")
    return 0


def _info_of_magnet(magnet, args):
    """Fetch (or take from the cache) a magnet's metadata for ``info``."""
    import trio

    from torrentfs.engine.torrent import make_peer_id
    folder = Path(args.cache_dir or default_cache_dir()) / magnet.info_hash_hex
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise CliError(f"cache folder {folder}: {e.strerror}") from None
    meta = cached_metainfo(magnet, folder)
    if meta is not None:
        return meta
    progress = terminal_progress()
    try:
        meta, _ = trio.run(fetch_metainfo, magnet, folder, args, make_peer_id(),
                           free_port(), progress)
    finally:
        if progress:
            print(file=sys.stderr)
    return meta


def cmd_create(args) -> int:
    from torrentfs.cli.progress import progress_bar
    from torrentfs.disk.create import CreateError, create_torrent
    out = Path(args.output)
    try:
        with progress_bar("hashing") as progress:  # a bar on a terminal only
            data = create_torrent(args.path, trackers=args.tracker or [],
                                  web_seeds=args.web_seed or [],
                                  piece_length=args.piece_size, comment=args.comment,
                                  private=args.private, progress=progress)
    except CreateError as e:
        raise CliError(str(e)) from None
    tmp = out.with_name(out.name + ".tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, out)
    except OSError as e:
        raise CliError(f"{out}: cannot write: {e.strerror}") from None
    from torrentfs.core.metainfo import parse
    meta = parse(data)
    print(f"created {out}: {meta.name}, {human(meta.total_length)}, "
          f"{meta.num_pieces} pieces of {human(meta.piece_length)}")
    print(f"info-hash: {meta.info_hash.hex()}")
    print(f"magnet:    {magnet_link(meta)}")
    return 0


def cmd_unmount(args) -> int:
    path = os.path.abspath(args.mountpoint)
    state = mount_state_file(Path(args.cache_dir or default_cache_dir()), path)
    pid = None
    try:
        pid = int(state.read_text().strip())
    except (OSError, ValueError):
        pass
    exe = shutil.which("fusermount3") or shutil.which("fusermount")
    if exe is None:
        raise CliError("fusermount3 not found (apt install fuse3)")
    real = os.path.realpath(path)
    r = subprocess.run([exe, "-u", path], capture_output=True, text=True)
    if r.returncode != 0 and pid and pid_alive(pid):
        # Busy: a process has a file open, perhaps blocked in a read that waits for
        # a piece. The daemon fails its waiting reads and unmounts on SIGTERM.
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline and pid_alive(pid) and is_mounted(real):
            time.sleep(0.05)
    if r.returncode != 0 and (is_mounted(real) or not (pid and pid_alive(pid))):
        # A crashed daemon leaves "Transport endpoint is not connected": detach lazily.
        r2 = subprocess.run([exe, "-uz", path], capture_output=True, text=True)
        if r2.returncode != 0 and (is_mounted(real) or not pid):
            msg = (r.stderr.strip().splitlines() or ["failed"])[-1]
            raise CliError(f"cannot unmount {args.mountpoint}: {msg}")
    if pid:
        # The daemon removes its state file when done (or when it stays on to seed).
        deadline = time.monotonic() + args.wait
        while time.monotonic() < deadline and pid_alive(pid) and state.exists():
            time.sleep(0.05)
        if pid_alive(pid) and state.exists():
            print(f"torrentfs: warning: daemon {pid} still shutting down", file=sys.stderr)
    return 0


def cmd_mount(args) -> int:
    if args.watch:  # issue 7 hook: many torrents in one mount (multi.py)
        return cmd_mount_watch(args)
    meta, magnet = load_target(args.torrent)
    mountpoint = check_mountpoint(args.mountpoint)
    os.umask(0o077)  # everything the daemon creates is the user's alone
    cache = Path(args.cache_dir or default_cache_dir())
    folder = cache / (meta or magnet).info_hash.hex()
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(cache, 0o700)
        os.chmod(folder, 0o700)
    except OSError as e:
        raise CliError(f"cache folder {folder}: {e.strerror}") from None
    if meta is None:
        meta = cached_metainfo(magnet, folder)  # None: the daemon fetches it first
    if (meta is not None and args.cache_size is not None
            and args.cache_size < 2 * meta.piece_length):
        raise CliError(f"--cache-size {human(args.cache_size)} is too small: this torrent "
                       f"needs at least two pieces ({human(2 * meta.piece_length)})")
    if args.foreground:
        setup_logging(args.log_level, stream=sys.stderr)
        return _serve(meta, magnet, mountpoint, folder, args, ready=lambda msg: None)
    return _daemonise(meta, magnet, mountpoint, folder, args)


def _daemonise(meta, magnet, mountpoint: str, folder: Path, args, serve=None,
               logfile: Path | None = None) -> int:
    """Fork; the child serves, the parent waits for its word that the mount is ready
    (or why it failed) and exits with that. A magnet mount's daemon fetches the
    metadata first: the parent waits that much longer, showing the daemon's
    progress lines on a terminal. ``serve(ready)`` (default: ``_serve`` of ``meta``)
    and ``logfile`` (default: in the torrent's folder) are for ``mount --watch``."""
    logfile = logfile or folder / "torrentfs.log"
    r, w = os.pipe()
    wait = READY_TIMEOUT + (args.metadata_timeout if meta is None else 0)
    pid = os.fork()
    if pid:
        os.close(w)
        word = _read_word(r, wait, terminal_progress())
        if word == "ok":
            return 0
        if word is None:  # the daemon wedged: do not leave it or its mount behind
            os.kill(pid, signal.SIGKILL)
            subprocess.run(["fusermount3", "-uz", mountpoint], capture_output=True)
            word = (f"mount did not become ready in {wait:.0f} s; "
                    f"see {logfile}")
        elif not word:
            word = f"mount failed; see {logfile}"
        raise CliError(word)
    # The child: a new session, no terminal, logs to a file.
    os.close(r)
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    setup_logging(args.log_level, filename=logfile)

    def ready(error: str | None) -> None:
        nonlocal w
        if w is not None:
            os.write(w, b"ok\n" if error is None else error.encode() + b"\n")
            os.close(w)
            w = None

    def progress(text: str) -> None:
        if w is not None:
            try:
                os.write(w, b"progress: " + text.encode() + b"\n")
            except OSError:
                pass

    code = 1
    try:
        code = (serve or partial(_serve, meta, magnet, mountpoint, folder, args,
                                 progress=progress))(ready)
    except CliError as e:
        log.error("%s", e)
        ready(str(e))
    except BaseException as e:  # the daemon must tell its parent, whatever happened
        log.exception("daemon failed")
        ready(f"mount failed: {e}")
    finally:
        os._exit(code)


def cmd_seed(args) -> int:
    """Verify the data in DATA_DIR and serve it to the swarm until interrupted."""
    import trio

    from torrentfs.engine.torrent import Torrent
    meta = load_torrent(args.torrent)
    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise CliError(f"{args.data_dir}: no such directory")
    if not (data_dir / meta.name).exists():
        raise CliError(f"{args.data_dir}: has no {meta.name!r} (the torrent's "
                       f"{'folder' if meta.multi_file else 'file'})")
    setup_logging(args.log_level, stream=sys.stderr)
    os.umask(0o077)  # our state files are the user's alone
    cache = Path(args.cache_dir or default_cache_dir())
    state = cache / meta.info_hash.hex()
    from torrentfs.cli.progress import progress_bar

    async def main() -> None:
        torrent = Torrent(meta, state, torrent_options(args, seed_only=True,
                                                       data_dir=data_dir))
        async with trio.open_nursery() as nursery:
            try:
                with progress_bar("verifying", unit="pieces") as progress:  # a terminal only
                    torrent.check_progress = progress
                    await nursery.start(torrent.run)
            except OSError as e:
                raise CliError(f"cannot listen on port {args.port}: {e.strerror}") from None
            have = torrent.have
            print(f"seeding {meta.name}: {have.count} of {have.size} pieces verified, "
                  f"port {torrent.port}", file=sys.stderr, flush=True)
            if not have.count:
                raise CliError(f"no piece of {meta.name} in {data_dir} verifies")
            if not meta.private:
                dht = await _start_dht(nursery, args, cache, torrent.port)
                if dht is not None:
                    _keep_found(nursery, dht, torrent)
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as sigs:
                async for sig in sigs:
                    log.info("got %s: stopping", signal.Signals(sig).name)
                    break
            nursery.cancel_scope.cancel()

    _run(main)
    return 0


def _run(main) -> None:
    """``trio.run(main)`` for the commands that serve: a CliError raised inside comes
    out as itself (not in an exception group), and Ctrl-C before the signal
    receivers are up ends quietly."""
    import trio
    try:
        trio.run(main)
    except* (CliError, SourceError) as eg:
        raise eg.exceptions[0] from None
    except* KeyboardInterrupt:
        pass


def _read_word(fd: int, timeout: float, progress=None) -> str | None:
    """Everything written to the pipe until its writer closes it, or None if that
    takes longer than ``timeout`` seconds. Lines ``progress: TEXT`` are passed to
    ``progress`` as they come (when given) and are not part of the word."""
    import select
    deadline = time.monotonic() + timeout
    data = b""
    word: list[str] = []
    shown = False
    try:
        with os.fdopen(fd, "rb", buffering=0) as pipe:
            while True:
                left = deadline - time.monotonic()
                if left <= 0 or not select.select([pipe], [], [], left)[0]:
                    return None
                chunk = pipe.read(4096)
                lines = (data + chunk).split(b"\n")
                data = lines.pop() if chunk else b""
                for line in lines:
                    text = line.decode(errors="replace")
                    if text.startswith("progress: "):
                        if progress:
                            progress(text[len("progress: "):])
                            shown = True
                    else:
                        word.append(text)
                if not chunk:
                    return "\n".join(word).strip()
    finally:
        if shown:
            print(file=sys.stderr)


def _serve(meta, magnet, mountpoint: str, folder: Path, args, ready, progress=None) -> int:
    """Serve the mount until unmounted. With no ``meta`` (a magnet whose metadata is
    not cached), fetch the metadata first: the mount appears, and ``ready`` is
    called, only once the tree is known."""
    import trio

    from torrentfs.core.tree import Tree
    from torrentfs.engine.status import publish, status_path
    from torrentfs.engine.torrent import Torrent, make_peer_id
    from torrentfs.fs.fuse import TorrentFS, mount_options, set_kernel_readahead

    state = mount_state_file(Path(args.cache_dir or default_cache_dir()), mountpoint)

    async def main() -> None:
        import pyfuse3
        nonlocal meta
        peer_id, port, peers = make_peer_id(), args.port, list(args.peer)
        cache = Path(args.cache_dir or default_cache_dir())
        async with trio.open_nursery() as nursery:
            dht = None
            if meta is None:
                port = port or free_port()
                # The DHT is up first: a magnet's metadata may come from peers only
                # it knows (never for a private torrent, which a magnet can't say).
                dht = await _start_dht(nursery, args, cache, port)
                t0 = trio.current_time()
                meta, peers = await fetch_metainfo(magnet, folder, args, peer_id, port,
                                                   progress, dht)
                log.info("metadata of %s (%s) fetched in %.2f s", meta.info_hash.hex(),
                         meta.name, trio.current_time() - t0)
            elif magnet is not None:
                log.info("metadata of %s (%s) from the cache", meta.info_hash.hex(), meta.name)
                peers += magnet.peers
            options = torrent_options(args, port=port, peers=peers,
                                      web_seeds=_web_seeds(meta, args))
            torrent = Torrent(meta, folder, options, peer_id=peer_id)
            fs = TorrentFS(torrent, Tree.from_metainfo(meta))
            try:
                await nursery.start(torrent.run)
            except OSError as e:
                raise CliError(f"cannot listen on port {port}: {e.strerror}") from None
            if dht is None and not meta.private:
                dht = await _start_dht(nursery, args, cache, torrent.port)
            if dht is not None and not meta.private:
                _keep_found(nursery, dht, torrent)
            try:
                pyfuse3.init(fs, mountpoint, mount_options("torrentfs", args.o))
            except RuntimeError as e:
                raise CliError(f"cannot mount on {mountpoint}: {e}") from None
            if not set_kernel_readahead(mountpoint):
                log.info("could not raise the kernel's readahead (not root?): 128 KiB reads")
            try:
                write_private(state, f"{os.getpid()}\n".encode())
                log.info("mounted %s on %s (info-hash %s, port %d)",
                         meta.name, mountpoint, meta.info_hash.hex(), torrent.port)
                nursery.start_soon(_watch_signals, pyfuse3, fs)
                # Status hook (issue 7): `torrentfs status` reads what this publishes.
                nursery.start_soon(publish, lambda: [torrent], status_path(state), mountpoint)
                nursery.start_soon(fs.watch_readers)
                ready(None)
                await pyfuse3.main()
            finally:
                log.info("unmounting %s", mountpoint)
                pyfuse3.close(unmount=True)
            if args.seed_after and torrent.seeding:
                state.unlink(missing_ok=True)  # `torrentfs unmount` need not wait on us
                await _seed_after(torrent, args.seed_after)
            nursery.cancel_scope.cancel()

    try:
        _run(main)
    finally:
        state.unlink(missing_ok=True)  # after trackers were told and state was saved
    log.info("stopped")
    return 0


# -- many torrents in one mount (issue 7: mount --watch; multi.py) --------------------

def cmd_mount_watch(args) -> int:
    """``mount --watch DIR MOUNTPOINT``: every .torrent in DIR, one folder each."""
    watched = Path(args.torrent)
    if not watched.is_dir():
        raise CliError(f"--watch {args.torrent}: not a directory")
    if args.seed_after:
        raise CliError("--seed-after cannot be used with --watch")
    mountpoint = check_mountpoint(args.mountpoint)
    os.umask(0o077)
    cache = Path(args.cache_dir or default_cache_dir())
    logfile = mount_log_file(cache, mountpoint)
    try:
        logfile.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(cache, 0o700)
        os.chmod(logfile.parent, 0o700)
    except OSError as e:
        raise CliError(f"cache folder {cache}: {e.strerror}") from None
    serve = partial(_serve_watch, watched.resolve(), mountpoint, cache, args)
    if args.foreground:
        setup_logging(args.log_level, stream=sys.stderr)
        return serve(lambda msg: None)
    return _daemonise(None, None, mountpoint, cache, args, serve=serve, logfile=logfile)


def _watch_loader(cache: Path, args, port):
    """``mount --watch``'s loader: .torrent files as ``multi.load_file`` reads them,
    and .magnet files (a text file holding a magnet link): its torrent from the
    cache, else fetched from its peers once its turn comes (``port()``: where we
    listen, announced meanwhile)."""
    from torrentfs.core.magnet import MagnetError
    from torrentfs.core.magnet import parse as parse_magnet
    from torrentfs.engine.multi import Skip, Source, load_file

    def load(path: Path) -> Source:
        if path.suffix.lower() != ".magnet":
            return load_file(path)
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                magnet = parse_magnet(f.read(65536).strip())
        except OSError as e:
            raise Skip(e.strerror) from None
        except MagnetError as e:
            raise Skip(f"bad magnet link: {e}") from None
        folder = cache / magnet.info_hash_hex
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as e:
            raise Skip(f"cache folder {folder}: {e.strerror}") from None

        async def resolve():
            from torrentfs.engine.torrent import make_peer_id
            meta, _ = await fetch_metainfo(magnet, folder, args, make_peer_id(), port(),
                                           progress=None)
            return meta

        return Source(magnet.info_hash, cached_metainfo(magnet, folder), resolve,
                      tuple(magnet.peers))
    return load


def _serve_watch(watched: Path, mountpoint: str, cache: Path, args, ready) -> int:
    import trio

    from torrentfs.engine.multi import MultiMount, Shared, TorrentTag
    from torrentfs.fs.fuse import mount_options, set_kernel_readahead
    from torrentfs.fs.multifs import MultiFS

    state = mount_state_file(cache, mountpoint)

    for handler in logging.getLogger().handlers:
        handler.addFilter(TorrentTag())

    async def main() -> None:
        import pyfuse3
        fs = MultiFS()
        shared = Shared(args.max_peers, args.upload_rate or None, args.download_rate or None)
        open_dht = None if args.no_dht else partial(_open_dht, args=args, cache=cache)
        multi = MultiMount(
            watched, fs, cache, shared, port=args.port, peers=args.peer, open_dht=open_dht,
            load=_watch_loader(cache, args, lambda: multi.port),
            torrent_options=torrent_options(args))
        async with trio.open_nursery() as nursery:
            # Mounted first: the torrents already in the folder are shown (and the
            # kernel told) as they start.
            try:
                pyfuse3.init(fs, mountpoint, mount_options("torrentfs", args.o))
            except RuntimeError as e:
                raise CliError(f"cannot mount on {mountpoint}: {e}") from None
            try:
                try:
                    await nursery.start(multi.run)
                except OSError as e:
                    raise CliError(f"cannot listen on port {args.port}: "
                                   f"{e.strerror}") from None
                if not set_kernel_readahead(mountpoint):
                    log.info("could not raise the kernel's readahead (not root?)")
                write_private(state, f"{os.getpid()}\n".encode())
                log.info("mounted %s on %s: %d torrents, port %d", watched, mountpoint,
                         len(fs.names()), multi.port)
                nursery.start_soon(_watch_signals, pyfuse3, fs)
                nursery.start_soon(fs.watch_readers)
                ready(None)
                await pyfuse3.main()
            finally:
                log.info("unmounting %s", mountpoint)
                pyfuse3.close(unmount=True)
            nursery.cancel_scope.cancel()

    try:
        _run(main)
    finally:
        state.unlink(missing_ok=True)
    log.info("stopped")
    return 0


async def _start_dht(nursery, args, cache: Path, port: int):
    """Issue 6 (DHT) hook: a DHT node on UDP port ``port`` (or --dht-port) in
    ``nursery``, or None with --no-dht. Callers keep private torrents (BEP 27) off
    it."""
    if args.no_dht:
        return None
    return await _open_dht(nursery, port, args=args, cache=cache)


async def _open_dht(nursery, port: int, *, args, cache: Path):
    """Start the DHT node (on ``--dht-port``, else UDP ``port`` if free, else any)."""
    from torrentfs.net.dht import DHT
    explicit = args.dht_port is not None
    dht = DHT(port=args.dht_port if explicit else port, bootstrap=args.dht_bootstrap,
              state_path=cache / "dht.state")
    try:
        await nursery.start(dht.run)
    except OSError as e:
        if explicit:
            raise CliError(f"cannot use UDP port {args.dht_port} for the DHT: "
                           f"{e.strerror}") from None
        log.info("UDP port %d is taken (%s): the DHT takes another", dht.port, e.strerror)
        dht.port = 0
        await nursery.start(dht.run)
    return dht


def _keep_found(nursery, dht, torrent) -> None:
    """Find the torrent's peers on the DHT, and announce our port there, for as
    long as it runs."""
    from functools import partial

    from torrentfs.net.dht import keep_torrent_found
    nursery.start_soon(partial(keep_torrent_found, dht, torrent.meta.info_hash,
                               port=lambda: torrent.port, add_peer=torrent.add_peer,
                               peer_count=lambda: len(torrent.sessions)))


async def _seed_after(torrent, limits: dict[str, float]) -> None:
    """Keep seeding after the unmount until the ratio or time limit (or a signal)."""
    import trio
    size = torrent.geometry.total_length or 1
    start_up, t0 = torrent.uploaded, trio.current_time()
    log.info("unmounted; seeding on until %s",
             " or ".join(f"{k} {v:g}" for k, v in limits.items()))
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as sigs:
        with trio.move_on_after(limits.get("time", math.inf)):
            async with trio.open_nursery() as n:
                async def watch_ratio() -> None:
                    while (torrent.uploaded - start_up) / size < limits.get("ratio", math.inf):
                        await trio.sleep(1)
                    n.cancel_scope.cancel()

                async def watch_signals() -> None:
                    async for _ in sigs:
                        n.cancel_scope.cancel()

                n.start_soon(watch_ratio)
                n.start_soon(watch_signals)
    log.info("seeding after unmount done: uploaded %d bytes (ratio %.2f) in %.0f s",
             torrent.uploaded - start_up, (torrent.uploaded - start_up) / size,
             trio.current_time() - t0)


async def _watch_signals(pyfuse3, fs) -> None:
    import trio
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as sigs:
        async for sig in sigs:
            log.info("got %s: unmounting", signal.Signals(sig).name)
            fs.shutdown()  # reads waiting for pieces fail now: the main loop can end
            pyfuse3.terminate()
            return


# -- argument parsing ----------------------------------------------------------------

CONFIG_ENV = "TORRENTFS_CONFIG"
MAX_CONFIG_BYTES = 1 << 20


def default_config_path() -> Path:
    return Path(appdirs.user_config_dir("torrentfs")) / "config.toml"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line like every other error."""

    def error(self, message: str):
        self.exit(2, f"torrentfs: error: {message} (see: {self.prog} --help)\n")


class _Formatter(argparse.HelpFormatter):
    """Text of several lines (the epilogs' examples) keeps its layout, a paragraph
    is wrapped; an option's default is shown unless its help already says it or
    there is none worth saying."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text.strip("\n"):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if hasattr(action, "config_value"):  # set by the config file
            return f"{text} (now: {action.config_value})".replace("%", "%%")
        if ("default" in text or not action.option_strings or action.nargs == 0
                or action.default in (None, [], argparse.SUPPRESS)):
            return text
        return f"{text} (default: %(default)s)"


def _command(sub, name: str, **kw) -> argparse.ArgumentParser:
    p = sub.add_parser(name, formatter_class=_Formatter, **kw)
    _add_config(p)
    return p


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                   help=f"read settings from FILE (default: ${CONFIG_ENV}, else "
                        f"{default_config_path()}; /dev/null for none)")


MAIN_EPILOG = """\
examples:
  torrentfs mount movie.torrent ~/movie      mount; returns once the files are there
  mpv ~/movie/movie.mkv                      play at once: reads fetch what they need
  torrentfs unmount ~/movie
  torrentfs info movie.torrent               what the torrent holds
  torrentfs create ./image -o image.torrent -t http://tracker:6969/announce
  torrentfs seed image.torrent /srv          serve a finished download

configuration: {config}
  (TOML; --config FILE or ${env} names another). Its keys are the long
  options: cache-size = "20G" at the top applies to every command that has it,
  under [mount] to mount alone. Flags on the command line win.

fstab (mount(8) runs "torrentfs SOURCE MOUNTPOINT -o OPTIONS"):
  /srv/x.torrent  /mnt/x  fuse.torrentfs  ro,allow_other,cache_dir=/var/cache/torrentfs  0 0

"torrentfs COMMAND --help" tells more about each command.
"""

MOUNT_EPILOG = """\
examples:
  torrentfs mount movie.torrent ~/movie
  torrentfs mount image.torrent /mnt/img --peer 10.0.0.5:6881 --no-dht
  torrentfs mount big.torrent /mnt/big --cache-size 20G --read-timeout 60
  torrentfs mount x.torrent /mnt/x -o allow_other,cache_dir=/var/cache/torrentfs
  torrentfs x.torrent /mnt/x -o allow_other      (the form mount(8) uses)

Every long option can also be set in the config file, as max-peers = 80 at
the top or under [mount] ({config}),
and with -o as max_peers=80 (as an fstab line does). The command line wins over
-o, and -o over the file.
-o also takes FUSE's options: allow_other (other users may read; needs
user_allow_other in /etc/fuse.conf unless root), allow_root, default_permissions,
fsname=NAME, subtype=NAME, noatime, nodev, nosuid, noexec, max_read=N. The mount is
always read-only; fstab's defaults, rw, nofail, _netdev, x-systemd.* are ignored.

The daemon logs to torrentfs.log in <cache-dir>/<info-hash>/.
"""

SEED_EPILOG = """\
examples:
  torrentfs seed image.torrent /srv/images
  torrentfs seed image.torrent /srv/images --port 6881 --upload-rate 50M

DATA_DIR holds the torrent's file (single-file torrent) or its top folder. Options
can be set in the config file, at the top or under [seed]. Stop with Ctrl-C or
SIGTERM.
"""


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="torrentfs", formatter_class=_Formatter,
        description="Mount a torrent as a read-only filesystem. The files appear at once; "
                    "a read fetches the pieces it needs from the swarm, verifies them and "
                    "returns, so players, cp and sha256sum just work.",
        epilog=MAIN_EPILOG.format(config=default_config_path(), env=CONFIG_ENV))
    p.add_argument("--version", action="version", version=f"torrentfs {__version__}")
    _add_config(p)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True,
                           title="commands")

    m = _command(sub, "mount", help="mount a .torrent on a directory",
                 description="Mount TORRENT on MOUNTPOINT, read-only. Returns once the "
                 "mount is ready, leaving a daemon that fetches the files' data from "
                 "the swarm as it is read, verifies it, and keeps it in the cache. "
                 "With --watch, TORRENT is a folder and every .torrent in it is shown "
                 "as a folder of the mount, as files come and go.",
                 epilog=MOUNT_EPILOG.format(config=default_config_path()))
    m.add_argument("torrent", metavar="TORRENT",
                   help=".torrent file or magnet link (with --watch: a folder)")
    m.add_argument("mountpoint", metavar="MOUNTPOINT", help="an empty directory")
    m.add_argument("-f", "--foreground", action="store_true",
                   help="stay in the foreground and log to stderr (Ctrl-C unmounts)")
    m.add_argument("--watch", action="store_true",
                   help="TORRENT is a folder: show every .torrent in it as a folder of "
                        "the mount, adding and removing them as files come and go "
                        "(mount --watch DIR MOUNTPOINT)")
    m.add_argument("-o", "--options", dest="o", action="append", default=[],
                   metavar="OPT[,OPT...]", type=lambda s: [o for o in s.split(",") if o],
                   help="mount options: FUSE's (allow_other, ...) and ours as key=value "
                        "(cache_dir=DIR, no_dht, ...), comma-separated; see below")
    net = m.add_argument_group("peers and network")
    net.add_argument("--peer", action="append", type=parse_peer, default=[],
                     metavar="HOST:PORT", help="connect to this peer too (repeatable)")
    net.add_argument("--port", type=int, default=0, metavar="N",
                     help="TCP port to listen on for peers (default: any free port)")
    net.add_argument("--max-peers", type=int, default=50, metavar="N",
                     help="connect to at most N peers")
    _add_rates(net)
    _add_lsd(net)
    _add_dht(net)
    _add_web_seeds(net)
    data = m.add_argument_group("cache and reading")
    data.add_argument("--cache-dir", metavar="DIR",
                      help=f"where downloaded data is kept (default: {default_cache_dir()})")
    data.add_argument("--cache-size", type=parse_size, metavar="SIZE",
                      help="keep at most SIZE of data on disk (e.g. 1G, 512M, bytes), "
                           "evicting the least recently read pieces (default: no limit)")
    data.add_argument("--prefetch", action="store_true",
                      help="download the whole torrent in the background, below reads")
    data.add_argument("--read-timeout", type=float, default=0, metavar="SECONDS",
                      help="fail a read with EIO when a piece it needs does not arrive "
                           "for this long (default: 0, wait for ever; Ctrl-C or kill of "
                           "the reader still ends a waiting read at once)")
    data.add_argument("--seed-after", type=parse_seed_after, metavar="LIMIT",
                      help="when unmounted with the whole torrent verified, keep seeding "
                           "until LIMIT: ratio=R (uploaded/size), time=T (e.g. 30m, 2h), "
                           "or both, comma-separated, whichever comes first")
    net.add_argument("--no-pex", action="store_true",
                     help="no peer exchange (BEP 11): neither learn peers from peers nor "
                          "tell them ours")
    _add_metadata_timeout(net)
    _add_log_level(m.add_argument_group("logging"))
    m.set_defaults(func=cmd_mount)

    u = _command(sub, "unmount", aliases=["umount"], help="unmount a torrentfs mount",
                 description="Unmount MOUNTPOINT and wait for its daemon to finish (tell "
                 "the trackers, save its state). A mount in use is unmounted all the "
                 "same (its waiting reads fail with EIO). Also clears a stale mount "
                 "left by a crashed daemon.",
                 epilog="example:\n  torrentfs unmount ~/movie\n\n"
                        "fusermount3 -u, umount (as root), SIGINT and SIGTERM to the "
                        "daemon do\nthe same, without the waiting.")
    u.add_argument("mountpoint", metavar="MOUNTPOINT", help="where the torrent is mounted")
    u.add_argument("--cache-dir", metavar="DIR",
                   help="the cache folder the mount used (default: the same default)")
    u.add_argument("--wait", type=float, default=15.0, metavar="SECONDS",
                   help="how long to wait for the daemon to exit")
    u.set_defaults(func=cmd_unmount)

    sd = _command(sub, "seed", help="serve a finished download to the swarm (no mount)",
                  description="Verify the torrent's data in DATA_DIR and serve it to the "
                  "swarm as an origin until interrupted. Nothing is written to DATA_DIR.",
                  epilog=SEED_EPILOG)
    sd.add_argument("torrent", metavar="TORRENT", help="the .torrent file")
    sd.add_argument("data_dir", metavar="DATA_DIR",
                    help="the folder holding the torrent's file or top folder")
    sd.add_argument("--port", type=int, default=0, metavar="N",
                    help="TCP port to listen on (default: any free port)")
    sd.add_argument("--peer", action="append", type=parse_peer, default=[],
                    metavar="HOST:PORT", help="connect to this peer too (repeatable)")
    sd.add_argument("--max-peers", type=int, default=50, metavar="N",
                    help="serve at most N peers at once")
    _add_rates(sd)
    _add_lsd(sd)
    _add_dht(sd)
    sd.add_argument("--cache-dir", metavar="DIR",
                    help=f"where our state is kept (default: {default_cache_dir()})")
    _add_log_level(sd)
    sd.set_defaults(func=cmd_seed)

    from torrentfs.cli.status import add_parser as add_status_parser
    add_status_parser(sub, _command)  # issue 7: torrentfs status

    i = _command(sub, "info", help="show what a .torrent or magnet link holds",
                 description="Print the torrent's name, info-hash, size, pieces, trackers, "
                 "magnet link and file list. For a magnet link the metadata is fetched "
                 "from its peers first (and cached).",
                 epilog="examples:\n  torrentfs info ubuntu.torrent\n"
                        "  torrentfs info 'magnet:?xt=urn:btih:...&tr=...'")
    i.add_argument("torrent", metavar="TORRENT", help=".torrent file or magnet link")
    i.add_argument("--peer", action="append", type=parse_peer, default=[],
                   metavar="HOST:PORT", help="ask this peer for a magnet's metadata too")
    i.add_argument("--cache-dir", metavar="DIR", help="where fetched metadata is cached")
    _add_metadata_timeout(i)
    i.set_defaults(func=cmd_info)

    c = _command(sub, "create", help="make a .torrent of a file or directory",
                 description="Make a torrent of PATH, a file or a directory (its regular "
                 "files, sorted; symlinks skipped).",
                 epilog="examples:\n"
                        "  torrentfs create ./image.raw -o image.torrent\n"
                        "  torrentfs create ./dataset -o dataset.torrent \\\n"
                        "      -t http://tracker.lan:6969/announce --piece-size 4M --private")
    c.add_argument("path", metavar="PATH", help="the file or directory to share")
    c.add_argument("-o", "--output", required=True, metavar="FILE", help="the .torrent to write")
    c.add_argument("-t", "--tracker", action="append", metavar="URL",
                   help="announce URL (repeatable; each is its own tier; default: none, "
                        "peers come from the DHT, LSD or --peer)")
    c.add_argument("--piece-size", type=parse_size, metavar="SIZE",
                   help="piece size, a power of two >= 16K (default: chosen from the size)")
    c.add_argument("--web-seed", action="append", type=parse_web_seed, metavar="URL",
                   help="HTTP(S) URL of a server holding the same files (BEP 19 url-list; "
                        "repeatable): a file's URL, or a folder's ending in '/'")
    c.add_argument("--comment", metavar="TEXT", help="a comment stored in the torrent")
    c.add_argument("--private", action="store_true",
                   help="set the private flag (BEP 27): trackers only, no DHT, LSD or PEX")
    c.set_defaults(func=cmd_create)
    return p


def _add_metadata_timeout(p) -> None:
    p.add_argument("--metadata-timeout", type=positive_seconds, default=METADATA_TIMEOUT,
                   metavar="SECONDS",
                   help="for a magnet link: give up when no peer has given the torrent's "
                        f"metadata within this long (default: {METADATA_TIMEOUT:.0f})")


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not 0 < value < 1e7:
        raise argparse.ArgumentTypeError(f"not a positive number of seconds: {text!r}")
    return value


def parse_web_seed(text: str) -> str:
    from torrentfs.core.webseed import usable
    if not usable(text):
        raise argparse.ArgumentTypeError(f"not an http:// or https:// URL: {text!r}")
    return text


def _add_web_seeds(p: argparse.ArgumentParser) -> None:
    p.add_argument("--web-seed", action="append", type=parse_web_seed, default=[],
                   metavar="URL", help="fetch pieces from this HTTP(S) server too, as if "
                   "it were in the torrent's url-list (repeatable)")
    p.add_argument("--no-web-seeds", action="store_true",
                   help="ignore the torrent's web seeds (url-list)")


def torrent_options(args, **fixed):
    """The ``engine.options.TorrentOptions`` the command line gives (a setting the
    command has no option for keeps its default); ``fixed`` are set by the command
    itself (a seed's ``data_dir``, a magnet's port and peers, ...)."""
    from torrentfs.engine.options import TorrentOptions
    settings = dict(
        port=args.port, peers=args.peer, max_peers=args.max_peers,
        upload_rate=args.upload_rate or None, download_rate=args.download_rate or None,
        lsd=args.lsd, pex=not getattr(args, "no_pex", False),
        prefetch=getattr(args, "prefetch", False),
        read_timeout=getattr(args, "read_timeout", 0) or None,
        cache_size=getattr(args, "cache_size", None))
    return TorrentOptions(**{**settings, **fixed})


def _web_seeds(meta, args) -> list[str]:
    """The web seeds a mount uses: the torrent's, unless --no-web-seeds, and --web-seed."""
    return [*(() if args.no_web_seeds else meta.url_list), *args.web_seed]


def _add_rates(p) -> None:
    p.add_argument("--upload-rate", type=parse_size, default=0, metavar="RATE",
                   help="cap upload at RATE bytes/s, e.g. 5M (default: no cap)")
    p.add_argument("--download-rate", type=parse_size, default=0, metavar="RATE",
                   help="cap download at RATE bytes/s, e.g. 20M (default: no cap)")


def _add_lsd(p) -> None:
    p.add_argument("--lsd", action=argparse.BooleanOptionalAction, default=True,
                   help="find peers on the local network by multicast (BEP 14 local service "
                        "discovery; default: on, never for private torrents)")


def _add_dht(p) -> None:
    p.add_argument("--no-dht", action="store_true",
                   help="do not use the DHT to find peers (it is never used for a "
                        "private torrent)")
    p.add_argument("--dht-port", type=parse_port, metavar="N",
                   help="UDP port of the DHT node (default: the TCP port's number)")
    p.add_argument("--dht-bootstrap", type=parse_peer_list, metavar="HOST:PORT,...",
                   help="DHT nodes to join through (default: the public routers, "
                        "router.bittorrent.com:6881 and others)")


def parse_port(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) < 65536:
        raise argparse.ArgumentTypeError(f"not a port: {text!r}")
    return int(text)


def parse_peer_list(text: str) -> list[tuple[str, int]]:
    """'HOST:PORT,HOST:PORT' -> [(host, port), ...]."""
    out = [parse_peer(part) for part in text.split(",") if part.strip()]
    if not out:
        raise argparse.ArgumentTypeError("no HOST:PORT given")
    return out


def parse_seed_after(text: str) -> dict[str, float]:
    """'ratio=2', 'time=30m', 'ratio=1.5,time=2h' -> {'ratio': 1.5, 'time': 7200}."""
    out: dict[str, float] = {}
    units = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
    for part in text.split(","):
        key, _, value = part.strip().partition("=")
        try:
            if key == "ratio":
                out["ratio"] = float(value)
            elif key == "time":
                m = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", value.strip())
                out["time"] = float(m.group(1)) * units[m.group(2)]
            else:
                raise ValueError
        except (ValueError, AttributeError):
            raise argparse.ArgumentTypeError(
                f"not a seeding limit: {part!r} (try ratio=2 or time=30m)") from None
    return out


def _add_log_level(p) -> None:
    p.add_argument("-v", "--verbose", dest="log_level", action="store_const", const="debug",
                   default="info", help="log everything (same as --log-level debug)")
    p.add_argument("--log-level", default="info",
                   choices=["debug", "info", "warning", "error"], help="how much to log")


def read_config(argv: list[str], environ) -> tuple[str, bytes] | None:
    """The config file's name and bytes: from ``--config FILE`` (looked for before
    argparse runs, since the file sets argparse's defaults), else $TORRENTFS_CONFIG,
    else the user's config folder. Only that last one may be missing (or out of
    reach: mount.fuse3's setuid=USER leaves HOME as root's)."""
    explicit = None
    for n, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == "--config" and n + 1 < len(argv):
            explicit = argv[n + 1]
        elif arg.startswith("--config="):
            explicit = arg.partition("=")[2]
    if explicit is None:
        explicit = environ.get(CONFIG_ENV) or None
    path = Path(explicit) if explicit is not None else default_config_path()
    if explicit == "":
        return None
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        if explicit is None:
            return None
        raise CliError(f"config file {path}: no such file") from None
    except IsADirectoryError:
        raise CliError(f"config file {path}: is a directory") from None
    except PermissionError as e:
        if explicit is None and not os.access(path.parent, os.X_OK):
            return None  # another user's home (mount.fuse3 setuid=): not ours to read
        raise CliError(f"config file {path}: cannot read: {e.strerror}") from None
    except OSError as e:
        raise CliError(f"config file {path}: cannot read: {e.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise CliError(f"config file {path}: over {MAX_CONFIG_BYTES >> 20} MiB")
    return str(path), data


def _implicit_mount(argv: list[str], names) -> list[str]:
    """``torrentfs SOURCE MOUNTPOINT [-o OPTS]``, as mount(8) and mount.fuse3 run a
    filesystem named in fstab, means ``torrentfs mount SOURCE MOUNTPOINT ...``."""
    if (len(argv) >= 2 and argv[0] not in names and not argv[0].startswith("-")
            and not argv[1].startswith("-")
            and (argv[0].endswith(".torrent") or argv[0].startswith("magnet:")
                 or os.path.isfile(argv[0]))):
        return ["mount", *argv]
    return argv


def parse_command_line(argv: list[str], environ=os.environ) -> argparse.Namespace:
    """The command line with the config file's settings under it and ``-o`` options
    of ours between the two. Raises CliError (bad file), ConfigError (bad value or
    key), or exits 2 (usage error, from argparse)."""
    from torrentfs.cli.config import (
        apply_config,
        commands,
        parse_toml,
        split_mount_options,
    )
    parser = build_parser()
    subs = commands(parser)
    argv = _implicit_mount(list(argv), {n for a in parser._subparsers._group_actions
                                        for n in a.choices})
    found = read_config(argv, environ)
    if found:
        origin, data = found
        apply_config(parser, parse_toml(data, origin), origin)
    args = parser.parse_args(argv)
    if args.command == "mount":
        fuse, ours = split_mount_options([o for group in args.o for o in group],
                                         subs["mount"])
        if ours:  # make them defaults, under the flags, and parse again
            for dest, value in ours.items():
                if isinstance(value, list):
                    ours[dest] = list(subs["mount"].get_default(dest) or []) + value
            subs["mount"].set_defaults(**ours)
            args = parser.parse_args(argv)
        args.o = fuse
    return args


def main(argv: list[str] | None = None) -> int:
    from torrentfs.cli.config import ConfigError
    try:
        args = parse_command_line(sys.argv[1:] if argv is None else argv)
    except (CliError, SourceError, ConfigError) as e:
        print(f"torrentfs: error: {e}", file=sys.stderr)
        return 1
    try:
        return args.func(args)
    except (CliError, SourceError) as e:
        print(f"torrentfs: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # a bug: still one line for the user, the details in the log
        log.debug("internal error", exc_info=True)
        print(f"torrentfs: internal error: {type(e).__name__}: {e} (run with -v for details)",
              file=sys.stderr)
        return 70


if __name__ == "__main__":
    sys.exit(main())
