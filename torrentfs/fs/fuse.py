"""The FUSE layer: a thin read-only ``pyfuse3.Operations`` over a ``Torrent``.

Directory operations come from the immutable ``tree.Tree`` and never wait. A read
goes to ``Torrent.read`` and waits there until its pieces are verified. This is the
only module that turns errors into errno values. Verified data never changes, so the
kernel may cache it for ever (``keep_cache``, long attribute and entry timeouts); only
``st_blocks`` (a file's verified bytes, for ``du``) moves, and the kernel is told to
drop a file's cached attributes when a piece of it arrives or leaves. A listed
video's head-start pieces that came quickly are put in the kernel's page cache
before anything reads them (``pagecache``). Extended attributes
``user.torrentfs.*`` give progress (``status.node_facts``).

A reader that gives up must not stay stuck. The kernel sends FUSE_INTERRUPT when a
process blocked in a read gets a signal, but pyfuse3 does not pass it on, and once
a request reached us even SIGKILL waits for our answer. So a read that waits keeps
an eye on its reader: ``watch_readers`` looks every ``POLL_READERS`` s at
/proc/PID/status of the process that opened the file (pyfuse3 gives the pid at
open, not at read) and fails the read with EINTR when a fatal signal is pending
(SIGKILL marks any fatal one; SIGINT, SIGTERM, SIGHUP, SIGQUIT with a handler) or
the process is gone. ``shutdown`` fails every waiting read at once (SIGTERM, or an
unmount seen as an error on the FUSE device: pyfuse3's main loop only returns once
every request has its answer).

``mounted()`` is the one mount sequence, for one torrent (``TorrentFS``) and many
(``multifs.MultiFS``) alike: mount, serve the kernel until unmounted or signalled,
unmount.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import re
import select
import signal
import stat
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable, Iterator

import pyfuse3
import trio

from torrentfs.core.tree import Node, Tree
from torrentfs.disk.storage import StorageError
from torrentfs.engine.reads import ReadTimeout
from torrentfs.engine.status import node_facts
from torrentfs.engine.torrent import Torrent
from torrentfs.fs.pagecache import PageCacheFill

log = logging.getLogger("torrentfs.fuse")

TIMEOUT = 3600.0  # attributes and names never change while mounted
POLL_READERS = 0.2  # how often a waiting read looks whether its reader gave up
DRAIN_QUIET = 0.25   # unmounting: answer reads (EIO) until none came for this long ...
DRAIN_MAX = 3.0      # ... or this long at most

# Pending, these end a blocked read: SIGKILL (the kernel adds it for any fatal
# signal), and the usual "stop" signals when the process handles them.
GIVE_UP_SIGNALS = (signal.SIGKILL, signal.SIGINT, signal.SIGTERM, signal.SIGHUP,
                   signal.SIGQUIT)


def reader_gave_up(status: str) -> bool:
    """True when a /proc/PID/status text shows a process that will not take our
    answer: dead or dying (zombie), or with a stop signal pending and not blocked."""
    fields = {}
    for line in status.splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    if fields.get("State", "")[:1] in ("Z", "X"):
        return True
    try:
        pending = int(fields.get("SigPnd", "0"), 16) | int(fields.get("ShdPnd", "0"), 16)
        blocked = int(fields.get("SigBlk", "0"), 16)
    except ValueError:
        return False
    if pending & (1 << (signal.SIGKILL - 1)):
        return True
    return any(pending & ~blocked & (1 << (sig - 1)) for sig in GIVE_UP_SIGNALS)


def process_gave_up(pid: int) -> bool:
    """``reader_gave_up`` for a live process; True if it no longer exists."""
    try:
        with open(f"/proc/{pid}/status") as f:
            return reader_gave_up(f.read())
    except FileNotFoundError:
        return True
    except OSError:
        return False


def fuse_device_fd() -> int | None:
    """Our open /dev/fuse, the connection to the kernel (pyfuse3 does not expose it)."""
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        return None
    for name in names:
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "/dev/fuse":
                return int(name)
        except (OSError, ValueError):
            continue
    return None


def connection_lost(fd: int) -> bool:
    """True once the kernel ended the FUSE connection (an unmount, an abort): the
    device then polls as an error."""
    p = select.poll()
    p.register(fd, select.POLLIN)
    return any(ev & (select.POLLERR | select.POLLHUP | select.POLLNVAL)
               for _, ev in p.poll(0))


def thread_group(pid: int) -> int:
    """The process (thread group) of thread ``pid``: signals and exit are per process."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Tgid:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return pid


class TorrentFS(pyfuse3.Operations):
    supports_dot_lookup = False
    enable_writeback_cache = False

    def __init__(self, torrent: Torrent, tree: Tree, *, base: int = 0,
                 handles: Iterator[int] | None = None,
                 page_cache: PageCacheFill | None = None) -> None:
        super().__init__()
        self.torrent = torrent
        self.tree = tree
        # In a multi-torrent mount (multifs.py) each torrent's tree is
        # shown at inodes ``base + tree inode`` and file handles come from one count.
        self.base = base
        self.uid, self.gid = os.getuid(), os.getgid()
        created = torrent.meta.creation_date
        self.time_ns = int((created if created and created > 0 else time.time()) * 1e9)
        self._handles: dict[int, object] = {}
        # The mount's readahead, set per open (``Mount`` gives it once INIT is answered).
        self.kernel_readahead: KernelReadahead | None = None
        self._openers: dict[int, int] = {}  # fh -> pid of the process that opened it
        self._next_fh = handles or itertools.count(1)
        self._waiting: dict[object, tuple[int, trio.CancelScope]] = {}  # reads in progress
        self._read_waits = trio.Event()  # set when a read begins (watch_readers)
        self._closing = False
        self._closing_why = "unmounting"
        self.refused_at: float | None = None  # when a read last failed for the unmount
        self._device: int | None = None  # /dev/fuse, found once reads wait
        # st_blocks counts a file's verified bytes, so the
        # kernel's cached attributes of the files a piece touches are dropped when
        # the piece arrives or leaves (``du`` is right at once).
        self._file_inodes = {n.file_index: n.inode for n in tree.nodes.values()
                             if not n.is_dir}
        torrent.piece_listeners.append(self._piece_changed)
        torrent.reads.in_memory_listeners.append(self._piece_in_memory)
        # A listed video's quick head-start pieces go to the kernel's page cache
        # (one per mount: a multi-torrent mount's torrents share it).
        self.page_cache = (PageCacheFill(pyfuse3.notify_store) if page_cache is None
                           else page_cache)

    def _node(self, inode: int) -> Node:
        node = self.tree.get(inode - self.base)
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return node

    def _attrs(self, node: Node) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = self.base + node.inode
        a.generation = 0
        a.entry_timeout = TIMEOUT
        a.attr_timeout = TIMEOUT
        if node.is_dir:
            a.st_mode = stat.S_IFDIR | 0o555
            a.st_nlink = 2 + sum(1 for c in node.children.values() if self.tree.nodes[c].is_dir)
            a.st_size = 0
        elif node.symlink is not None:  # BEP 47: a link, holding no data
            a.st_mode = stat.S_IFLNK | 0o777
            a.st_nlink = 1
            a.st_size = node.size
        else:
            a.st_mode = stat.S_IFREG | (0o555 if node.executable else 0o444)
            a.st_nlink = 1
            a.st_size = node.size
        a.st_uid, a.st_gid = self.uid, self.gid
        a.st_rdev = 0
        a.st_blksize = 1 << 17
        # What is verified and on disk, in 512-byte units, so `du` shows progress.
        a.st_blocks = 0 if node.is_dir or node.symlink is not None else (
            self.torrent.geometry.file_verified(self.torrent.have, node.file_index)
            + 511) // 512
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = self.time_ns
        return a

    async def lookup(self, parent_inode, name, ctx=None):
        node = self.tree.lookup(parent_inode - self.base, os.fsdecode(name))
        if node is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attrs(node)

    async def getattr(self, inode, ctx=None):
        return self._attrs(self._node(inode))

    async def opendir(self, inode, ctx):
        if not self._node(inode).is_dir:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return inode

    async def readdir(self, fh, start_id, token):
        children = self.tree.children(fh - self.base)
        if start_id == 0:  # a folder listed: its videos get a head start (engine/headstart)
            videos = [node.file_index for node in children
                      if not node.is_dir and node.symlink is None and is_video(node.name)]
            self.torrent.reads.head_start.listed(fh, videos)
            self.page_cache.listed(self.torrent, videos)
        for i in range(start_id, len(children)):
            node = children[i]
            if not pyfuse3.readdir_reply(token, os.fsencode(node.name), self._attrs(node), i + 1):
                break

    async def releasedir(self, fh):
        pass

    async def readlink(self, inode, ctx):
        node = self._node(inode)
        if node.symlink is None:
            raise pyfuse3.FUSEError(errno.EINVAL)
        return os.fsencode(node.symlink)

    async def open(self, inode, flags, ctx):
        node = self._node(inode)
        if node.is_dir:
            raise pyfuse3.FUSEError(errno.EISDIR)
        if node.symlink is not None:
            raise pyfuse3.FUSEError(errno.ELOOP)
        if flags & os.O_ACCMODE != os.O_RDONLY:
            raise pyfuse3.FUSEError(errno.EROFS)
        fh = next(self._next_fh)
        video = is_video(node.name)
        self._handles[fh] = self.torrent.open_handle(node.file_index, stream=video)
        self._choose_readahead(node, video)
        if ctx is not None and ctx.pid:
            self._openers[fh] = thread_group(ctx.pid)
        return pyfuse3.FileInfo(fh=fh, keep_cache=True)

    def _choose_readahead(self, node: Node, video: bool) -> None:
        """Set the kernel's readahead for the file being opened (``KernelReadahead``):
        STREAM_READAHEAD_KIB for a video some of whose pieces are missing (a player
        reads it at its pace, and waits for the whole of each kernel request: smaller
        ones reach it sooner on a slow swarm), else KERNEL_READAHEAD_KIB."""
        knob = self.kernel_readahead
        if knob is None:
            return
        kib = KERNEL_READAHEAD_KIB
        if video:
            t = self.torrent
            if t.have.missing(t.geometry.file_pieces(node.file_index)):
                kib = STREAM_READAHEAD_KIB
        knob.set(kib)

    async def read(self, fh, off, size):
        handle = self._handles.get(fh)
        if handle is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        if self._closing:
            self.refused_at = trio.current_time()
            raise pyfuse3.FUSEError(errno.EIO)
        key = object()
        with trio.CancelScope() as scope:
            self._waiting[key] = (self._openers.get(fh, 0), scope)
            self._read_waits.set()
            try:
                return await self._read(handle, off, size)
            finally:
                del self._waiting[key]
        if self._closing:
            log.info("read of %d bytes at %d failed: %s", size, off, self._closing_why)
            self.refused_at = trio.current_time()
            raise pyfuse3.FUSEError(errno.EIO)
        log.info("read of %d bytes at %d given up: its reader (pid %d) was interrupted",
                 size, off, self._openers.get(fh, 0))
        raise pyfuse3.FUSEError(errno.EINTR)

    async def watch_readers(self) -> None:
        """Fail the waiting reads of readers that gave up (see the module docstring).
        Runs until cancelled; costs nothing while no read waits."""
        while True:
            if not self._waiting:  # no read: no wake-ups until one comes
                self._read_waits = trio.Event()
                await self._read_waits.wait()
            await trio.sleep(POLL_READERS)
            self.check_readers()

    def check_readers(self) -> None:
        """One look at the readers of the waiting reads (``watch_readers``)."""
        if not self._waiting:
            return
        if self._device is None:
            self._device = fuse_device_fd()
        if self._device is not None and connection_lost(self._device):
            log.info("the kernel ended the FUSE connection (unmounted)")
            self.shutdown()
            return
        verdicts: dict[int, bool] = {}
        for pid, scope in list(self._waiting.values()):
            if pid and not scope.cancel_called:
                if pid not in verdicts:
                    verdicts[pid] = process_gave_up(pid)
                if verdicts[pid]:
                    scope.cancel()

    def shutdown(self, why: str = "unmounting") -> int:
        """Unmounting (or, in a multi-torrent mount, the torrent removed): fail
        every waiting read now, and any read from now on. Returns how many reads
        were waiting."""
        self._closing = True
        self._closing_why = why
        for _, scope in list(self._waiting.values()):
            scope.cancel()
        return len(self._waiting)

    async def _read(self, handle, off, size):
        try:
            return await self.torrent.read(handle.file_index, off, size, handle)
        except ReadTimeout as e:
            log.error("read of %d bytes at %d failed: %s", size, off, e)
            raise pyfuse3.FUSEError(errno.EIO) from None
        except (StorageError, OSError) as e:
            code = getattr(e, "errno", None)
            # a full disk is logged by the disk cache, once a minute: not per read
            (log.debug if code == errno.ENOSPC else log.error)(
                "read of %d bytes at %d failed: %s", size, off, e)
            raise pyfuse3.FUSEError(code or errno.EIO) from None

    async def release(self, fh):
        self._openers.pop(fh, None)
        handle = self._handles.pop(fh, None)
        if handle is not None:
            handle.close()

    async def access(self, inode, mode, ctx):
        self._node(inode)
        return not mode & os.W_OK

    async def statfs(self, ctx):
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 512
        s.f_blocks = (self.torrent.geometry.total_length + 511) // 512
        s.f_bfree = s.f_bavail = 0
        s.f_files = len(self.tree.nodes)
        s.f_ffree = s.f_favail = 0
        s.f_namemax = 255
        return s

    XATTR_PREFIX = "user.torrentfs."

    async def getxattr(self, inode, name, ctx):
        """``user.torrentfs.*``: progress and facts (``status.node_facts``)."""
        node = self._node(inode)
        key = os.fsdecode(name)
        if key.startswith(self.XATTR_PREFIX):
            value = node_facts(self.torrent, self.tree, node).get(key[len(self.XATTR_PREFIX):])
            if value is not None:
                return value.encode()
        raise pyfuse3.FUSEError(errno.ENODATA)

    async def listxattr(self, inode, ctx):
        facts = node_facts(self.torrent, self.tree, self._node(inode))
        return [(self.XATTR_PREFIX + k).encode() for k in facts]

    def _piece_changed(self, index: int) -> None:
        """A piece was verified or left the cache: the st_blocks of the files it
        touches changed. Only while the FUSE main loop runs (pyfuse3's session
        exists then: ``trio_token`` is set); attributes only, never the data
        cache; an inode the kernel does not know is nothing to drop."""
        if pyfuse3.trio_token is None:
            return
        for span in self.torrent.geometry.piece_spans(index):
            inode = self._kernel_inode(span.file_index)
            if inode is not None:
                try:
                    pyfuse3.invalidate_inode(inode, attr_only=True)
                except OSError:
                    pass
        self.page_cache.arrived(self.torrent, index, self._kernel_inode)

    def _piece_in_memory(self, index: int) -> None:
        """A quick head start's piece is verified, its write under way: its pages
        go to the kernel now (``pagecache``), not once it is on disk."""
        self.page_cache.arrived(self.torrent, index, self._kernel_inode)

    def _kernel_inode(self, file_index: int) -> int | None:
        inode = self._file_inodes.get(file_index)
        return None if inode is None else self.base + inode


KERNEL_READAHEAD_KIB = 1024
# A video not all here is read with this readahead instead: a player waits for the
# whole of each kernel request, and on a slow swarm 1 MiB ones keep it waiting for
# data a second ahead of what it needs (docs/benchmarks.md, session 5).
STREAM_READAHEAD_KIB = 256
VIDEO_SUFFIXES = frozenset({".mkv", ".mp4", ".m4v", ".webm", ".avi", ".mov", ".ts",
                            ".m2ts", ".mpg", ".mpeg", ".wmv", ".flv", ".ogv"})


def is_video(name: str) -> bool:
    """Whether a file's name says it is a video (players read it at its pace)."""
    return os.path.splitext(name)[1].lower() in VIDEO_SUFFIXES


def _unescape_mountinfo(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


class KernelReadahead:
    """The kernel's readahead on our mount (its backing device's ``read_ahead_kb``).
    The kernel copies it into each open file as the open is answered, so the value
    set while answering an open is that file's (``TorrentFS.open``)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.kib: int | None = None

    def set(self, kib: int) -> bool:
        """Write ``kib`` unless it is there already; False if it could not."""
        if kib == self.kib:
            return True
        try:
            with open(self.path, "w") as f:
                f.write(str(kib))
        except OSError:
            return False
        self.kib = kib
        return True


def kernel_readahead(mountpoint: str) -> KernelReadahead | None:
    """The readahead setting of a mount, found in /proc/self/mountinfo: a stat of the
    mountpoint from this process would wait on itself, so ``mountpoint`` must already
    be a real path (resolved before mounting). None if it is not mounted."""
    dev = None
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and _unescape_mountinfo(fields[4]) == mountpoint:
                    dev = fields[2]
    except OSError:
        return None
    return None if dev is None else KernelReadahead(f"/sys/class/bdi/{dev}/read_ahead_kb")


def set_kernel_readahead(mountpoint: str, kib: int = KERNEL_READAHEAD_KIB) -> bool:
    """Let the kernel read ahead ``kib`` KiB on our mount, so sequential readers send
    1 MiB reads instead of 128 KiB ones (FUSE caps a request at 1 MiB anyway). Only
    once the kernel's INIT is answered: the answer lowers the readahead to libfuse's
    ``max_readahead`` (the 128 KiB the kernel offered), whatever was set before.
    Needs root; False if it could not."""
    knob = kernel_readahead(mountpoint)
    return knob is not None and knob.set(kib)


def mount_options(fsname: str, extra: list[str] = ()) -> set[str]:
    """The options we mount with: read-only, kernel permission checks, a useful
    fsname for ``mount``/``df``, and whatever the user added (a user's ``fsname=``
    or ``subtype=`` replaces ours: libfuse would take either of two at random)."""
    opts = set(pyfuse3.default_options)
    opts.discard("default_permissions")
    opts |= {"ro", "default_permissions", f"fsname={fsname}", "subtype=torrentfs"}
    for key in ("fsname=", "subtype="):
        if any(o.startswith(key) for o in extra):
            opts = {o for o in opts if not o.startswith(key)}
    opts |= set(extra)
    return opts


class MountError(Exception):
    """The kernel would not mount: one line naming the mountpoint and why."""


class Mount:
    """A filesystem mounted by ``mounted()``."""

    def __init__(self, fs, mountpoint: str) -> None:
        self.fs = fs
        self.mountpoint = mountpoint
        self.readahead_raised: bool | None = None  # once tried (after the kernel's INIT)
        # pyfuse3 calls the filesystem's init() while it answers the kernel's INIT
        # request, just before the answer goes out.
        self._initialised = trio.Event()
        previous_init = fs.init

        def init() -> None:
            previous_init()
            self._initialised.set()
        fs.init = init

    async def serve(self, ready: Callable[[], None] = lambda: None) -> None:
        """Answer the kernel's requests until the filesystem is unmounted (fusermount3
        -u) or we get SIGINT, SIGTERM or SIGHUP (then the waiting reads fail at once,
        so that the loop can end). ``ready()`` is called once requests are answered;
        the fs's reader watch (``watch_readers``) runs meanwhile."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._unmount_on_signal)
            nursery.start_soon(self.fs.watch_readers)
            nursery.start_soon(self._raise_readahead)
            nursery.start_soon(self.fs.page_cache.run)
            ready()
            await pyfuse3.main()
            nursery.cancel_scope.cancel()

    async def _raise_readahead(self) -> None:
        """Raise the kernel's readahead once INIT is answered (``set_kernel_readahead``):
        the answer is written before the session loop's next checkpoint, so before
        this task runs again."""
        await self._initialised.wait()
        knob = kernel_readahead(self.mountpoint)
        self.readahead_raised = knob is not None and knob.set(KERNEL_READAHEAD_KIB)
        if self.readahead_raised:
            self.fs.kernel_readahead = knob  # chosen per open from now on
        else:
            log.info("could not raise the kernel's readahead (not root?): 128 KiB reads")

    async def _unmount_on_signal(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as sigs:
            async for sig in sigs:
                log.info("got %s: unmounting", signal.Signals(sig).name)
                # Reads waiting for pieces fail now (EIO), so that the loop can end;
                # the kernel retries a failed read at once, and the retry must get
                # its EIO from us too, not ECONNABORTED or ENOTCONN from a
                # connection already gone: answer until the reads stop coming.
                if self.fs.shutdown():
                    await self._drain()
                pyfuse3.terminate()
                return

    async def _drain(self) -> None:
        """Wait until no read was refused for ``DRAIN_QUIET`` s (``DRAIN_MAX`` at most)."""
        deadline = trio.current_time() + DRAIN_MAX
        while trio.current_time() < deadline:
            await trio.sleep(DRAIN_QUIET)
            last = self.fs.refused_at
            if last is None or trio.current_time() - last >= DRAIN_QUIET:
                return


@asynccontextmanager
async def mounted(fs, mountpoint: str, options: list[str] = ()) -> AsyncIterator[Mount]:
    """Mount ``fs`` (read-only, ``mount_options`` plus ``options``) on ``mountpoint``,
    a real path, and unmount it on the way out, whatever happened. Raises
    ``MountError`` if the kernel says no. The body prepares what it must and then
    awaits ``Mount.serve``: the kernel's requests wait until then."""
    try:
        pyfuse3.init(fs, mountpoint, mount_options("torrentfs", options))
    except RuntimeError as e:
        raise MountError(f"cannot mount on {mountpoint}: {e}") from None
    try:
        yield Mount(fs, mountpoint)
    finally:
        log.info("unmounting %s", mountpoint)
        pyfuse3.close(unmount=True)
