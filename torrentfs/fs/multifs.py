"""The FUSE layer of a multi-torrent mount (``mount --watch``): a root folder whose
entries are torrents, each shown by its own ``fuse.TorrentFS``.

Inodes are partitioned: the root is 1, and the torrent in slot ``k`` (slots count
up from 1 and are never reused in a run, so an inode never names two things) shows
its tree at ``k << SLOT_BITS`` plus the tree's inode. A multi-file torrent's folder
is its top folder; a single-file torrent's folder holds its file. File handles
come from one count, so a handle names its torrent.

Entries come and go while mounted (``add``, ``remove``): the kernel is told at once
(``pyfuse3.invalidate_entry_async``), since a torrent's folder is otherwise cached
for an hour like everything verified. The root's own attributes are cached for a
second only, and its listing is never cached by the kernel.

A removed torrent: its folder goes at once; reads of its files still open (and
those waiting for a piece) fail with EIO from then on, as at an unmount, and
closing them works. Its ``TorrentFS`` is let go at the last close.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import stat
import time
from typing import Callable

import pyfuse3
import trio

from torrentfs.core.tree import ROOT_INODE, Tree
from torrentfs.core.watchdir import unique_name
from torrentfs.engine.torrent import Torrent
from torrentfs.fs.fuse import POLL_READERS, TorrentFS
from torrentfs.fs.pagecache import PageCacheFill

log = logging.getLogger("torrentfs.fuse")

SLOT_BITS = 32        # a torrent's tree gets 2**32 inodes (far more than any has)
ROOT_TIMEOUT = 1.0    # the root's attributes change as torrents come and go


class MultiFS(pyfuse3.Operations):
    supports_dot_lookup = False
    enable_writeback_cache = False

    def __init__(self, invalidate: Callable | None = None,
                 root_facts: Callable[[], dict[str, str]] | None = None) -> None:
        super().__init__()
        self._invalidate = invalidate or pyfuse3.invalidate_entry_async
        self._root_facts = root_facts or (lambda: {})
        self._folders: dict[str, int] = {}          # name shown -> slot
        self._children: dict[int, TorrentFS] = {}   # slot -> its FS (shown, or still open)
        self._tops: dict[int, int] = {}             # slot -> inode of its folder
        self._fh_owner: dict[int, TorrentFS] = {}   # open file handle -> its torrent's FS
        self._handles = itertools.count(1)
        self._slots = itertools.count(1)
        self.uid, self.gid = os.getuid(), os.getgid()
        self.time_ns = time.time_ns()  # the root's times: its last change
        self.page_cache = PageCacheFill(pyfuse3.notify_store)  # (fs/pagecache)

    # -- entries ------------------------------------------------------------------

    def add(self, name: str, torrent: Torrent, tree: Tree) -> str:
        """Show ``torrent`` as a folder named ``name`` (made unique); returns the
        name it got."""
        if len(tree.nodes) >= 1 << SLOT_BITS:
            raise ValueError("too many files for one torrent")
        slot = next(self._slots)
        child = TorrentFS(torrent, tree, base=slot << SLOT_BITS, handles=self._handles,
                          page_cache=self.page_cache)
        meta = torrent.meta
        top = tree.root.children[meta.name] if meta.multi_file else ROOT_INODE
        name = unique_name(name, self._folders)
        self._folders[name] = slot
        self._children[slot] = child
        self._tops[slot] = child.base + top
        # The kernel caches no negative entry for a name we answered ENOENT for: it
        # needs no word of a new one (nor could it take one before the mount's INIT).
        self.time_ns = time.time_ns()
        return name

    def remove(self, name: str) -> None:
        """The torrent shown as ``name`` is gone: its folder now, its files' reads
        (EIO); its FS once the last of its files is closed."""
        slot = self._folders.pop(name)
        child = self._children[slot]
        child.shutdown("its torrent was removed")
        self._changed(name)
        if not child._handles:
            del self._children[slot]

    def names(self) -> list[str]:
        return list(self._folders)

    def _changed(self, name: str) -> None:
        self.time_ns = time.time_ns()
        self._invalidate(ROOT_INODE, os.fsencode(name), ignore_enoent=True)

    def _child(self, inode: int) -> TorrentFS:
        child = self._children.get(inode >> SLOT_BITS)
        if child is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return child

    def _root_attrs(self) -> pyfuse3.EntryAttributes:
        a = pyfuse3.EntryAttributes()
        a.st_ino = ROOT_INODE
        a.generation = 0
        a.entry_timeout = a.attr_timeout = ROOT_TIMEOUT
        a.st_mode = stat.S_IFDIR | 0o555
        a.st_nlink = 2 + len(self._folders)
        a.st_size = 0
        a.st_uid, a.st_gid = self.uid, self.gid
        a.st_rdev = 0
        a.st_blksize = 1 << 17
        a.st_blocks = 0
        a.st_atime_ns = a.st_mtime_ns = a.st_ctime_ns = self.time_ns
        return a

    def _folder_attrs(self, slot: int) -> pyfuse3.EntryAttributes:
        child = self._children[slot]
        return child._attrs(child._node(self._tops[slot]))

    # -- operations ---------------------------------------------------------------

    async def lookup(self, parent_inode, name, ctx=None):
        if parent_inode == ROOT_INODE:
            slot = self._folders.get(os.fsdecode(name))
            if slot is None:
                raise pyfuse3.FUSEError(errno.ENOENT)
            return self._folder_attrs(slot)
        return await self._child(parent_inode).lookup(parent_inode, name, ctx)

    async def getattr(self, inode, ctx=None):
        if inode == ROOT_INODE:
            return self._root_attrs()
        return await self._child(inode).getattr(inode, ctx)

    async def opendir(self, inode, ctx):
        if inode == ROOT_INODE:
            return ROOT_INODE
        return await self._child(inode).opendir(inode, ctx)

    async def readdir(self, fh, start_id, token):
        if fh != ROOT_INODE:
            return await self._child(fh).readdir(fh, start_id, token)
        # Offsets are slots (they only grow): a listing read while torrents come and
        # go skips none of those that stay, and repeats none.
        entries = sorted((slot, name) for name, slot in self._folders.items())
        for slot, name in entries:
            if slot > start_id and not pyfuse3.readdir_reply(
                    token, os.fsencode(name), self._folder_attrs(slot), slot):
                break

    async def releasedir(self, fh):
        pass

    async def readlink(self, inode, ctx):
        if inode == ROOT_INODE:
            raise pyfuse3.FUSEError(errno.EINVAL)
        return await self._child(inode).readlink(inode, ctx)

    async def open(self, inode, flags, ctx):
        if inode == ROOT_INODE:
            raise pyfuse3.FUSEError(errno.EISDIR)
        child = self._child(inode)
        child.kernel_readahead = getattr(self, "kernel_readahead", None)
        info = await child.open(inode, flags, ctx)
        self._fh_owner[info.fh] = child
        return info

    async def read(self, fh, off, size):
        child = self._fh_owner.get(fh)
        if child is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        return await child.read(fh, off, size)

    async def release(self, fh):
        child = self._fh_owner.pop(fh, None)
        if child is None:
            return
        await child.release(fh)
        slot = child.base >> SLOT_BITS
        if not child._handles and slot not in self._folders.values():
            self._children.pop(slot, None)  # removed, and now closed

    async def access(self, inode, mode, ctx):
        if inode == ROOT_INODE:
            return not mode & os.W_OK
        return await self._child(inode).access(inode, mode, ctx)

    async def statfs(self, ctx):
        s = pyfuse3.StatvfsData()
        s.f_bsize = s.f_frsize = 512
        shown = [self._children[slot] for slot in self._folders.values()]
        s.f_blocks = sum((c.torrent.geometry.total_length + 511) // 512 for c in shown)
        s.f_bfree = s.f_bavail = 0
        s.f_files = 1 + sum(len(c.tree.nodes) for c in shown)
        s.f_ffree = s.f_favail = 0
        s.f_namemax = 255
        return s

    XATTR_PREFIX = TorrentFS.XATTR_PREFIX

    def _xattr_inode(self, inode: int) -> int:
        """The inode a torrent's xattrs are asked of: its folder gives the torrent's
        facts (info-hash, peers...), as the root of a one-torrent mount does."""
        child = self._child(inode)
        return child.base + ROOT_INODE if self._tops.get(inode >> SLOT_BITS) == inode \
            else inode

    def root_facts(self) -> dict[str, str]:
        """The root's ``user.torrentfs.*``: how many torrents are shown, and what the
        watch mount adds (the files it skipped and why, the magnets being fetched)."""
        return {"torrents": str(len(self._folders)), **self._root_facts()}

    async def getxattr(self, inode, name, ctx):
        """``user.torrentfs.*``: on the root, ``root_facts``; below, each torrent's
        (``TorrentFS.getxattr``), its folder giving the torrent's own facts."""
        if inode != ROOT_INODE:
            return await self._child(inode).getxattr(self._xattr_inode(inode), name, ctx)
        key = os.fsdecode(name)
        if key.startswith(self.XATTR_PREFIX):
            value = self.root_facts().get(key[len(self.XATTR_PREFIX):])
            if value is not None:
                return value.encode()
        raise pyfuse3.FUSEError(errno.ENODATA)

    async def listxattr(self, inode, ctx):
        if inode != ROOT_INODE:
            return await self._child(inode).listxattr(self._xattr_inode(inode), ctx)
        return [(self.XATTR_PREFIX + k).encode() for k in self.root_facts()]

    # -- readers and the end ------------------------------------------------------

    async def watch_readers(self) -> None:
        """``TorrentFS.watch_readers`` for every torrent's reads."""
        while True:
            await trio.sleep(POLL_READERS)
            for child in list(self._children.values()):
                child.check_readers()

    def shutdown(self) -> int:
        """Unmounting: every waiting read fails now, and every read from now on.
        Returns how many reads were waiting."""
        return sum(child.shutdown() for child in list(self._children.values()))

    @property
    def refused_at(self) -> float | None:
        """When a read last failed for the unmount (``TorrentFS.refused_at``)."""
        times = [c.refused_at for c in self._children.values() if c.refused_at is not None]
        return max(times, default=None)
