"""The directory tree a torrent shows: inodes, names, sizes. Pure.

The mount's root holds the torrent's ``name``: the file itself for a single-file
torrent, the top folder for a multi-file one (as a finished download would look).
Padding files are not shown. Inode numbers are given in sorted path order, so they
are the same on every mount of the same torrent.

BEP 47 symlinks are symlinks (``Node.symlink``: the target, relative to the link's
folder). A link whose target is not a file or folder of the torrent points at
itself, as libtorrent makes it: a broken link (ELOOP) that leads nowhere, never out
of the mount.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from operator import itemgetter
from types import MappingProxyType
from typing import Iterable

ROOT_INODE = 1  # as FUSE (and pyfuse3.ROOT_INODE) number the root


_NO_CHILDREN: dict[str, int] = MappingProxyType({})  # type: ignore[assignment]
_PATH = itemgetter(0)


@dataclass(slots=True)
class Node:
    """A file or directory. ``file_index`` is the index in the torrent's file list."""

    inode: int
    name: str
    parent: int
    is_dir: bool
    size: int = 0
    file_index: int | None = None
    executable: bool = False
    children: dict[str, int] = field(default_factory=dict)
    symlink: str | None = None  # a symlink's target, relative to its folder


def link_text(link: tuple[str, ...], target: tuple[str, ...]) -> str:
    """What a symlink at ``link`` holds to reach ``target`` (both from the mount's
    root): a relative path, so it resolves inside the mount wherever it is."""
    folder = link[:-1]
    common = 0
    while common < min(len(folder), len(target)) and folder[common] == target[common]:
        common += 1
    if target == link:
        return link[-1]  # itself: a loop, a broken link
    parts = [".."] * (len(folder) - common) + list(target[common:])
    return "/".join(parts) or "."


class Tree:
    """An immutable directory tree built from ``(path components, length, file_index,
    executable[, symlink target])`` entries. Paths must already be safe (metainfo
    repairs them)."""

    def __init__(self, entries: Iterable[tuple[tuple[str, ...], int, int, bool]]) -> None:
        root = Node(ROOT_INODE, "", ROOT_INODE, True)
        nodes = self.nodes = {ROOT_INODE: root}
        folders: dict[tuple[str, ...], Node] = {(): root}  # made so far, by path
        next_inode = ROOT_INODE + 1
        for path, length, file_index, executable, *link in sorted(entries, key=_PATH):
            parent = folders.get(path[:-1])
            if parent is None:  # a folder not seen yet (sorted: its files follow)
                parent = root
                for depth in range(len(path) - 1):
                    inode = parent.children.get(path[depth])
                    if inode is None:
                        node = Node(next_inode, path[depth], parent.inode, True)
                        nodes[next_inode] = node
                        parent.children[path[depth]] = next_inode
                        folders[path[:depth + 1]] = node
                        next_inode += 1
                        parent = node
                    else:
                        parent = nodes[inode]
                        if not parent.is_dir:
                            raise ValueError(f"path clash at {'/'.join(path)}")
            name = path[-1]
            if name in parent.children:
                raise ValueError(f"path clash at {'/'.join(path)}")
            node = Node(next_inode, name, parent.inode, False, length, file_index, executable,
                        _NO_CHILDREN)
            if link and link[0] is not None:
                node.symlink = link[0]
                node.size = len(link[0].encode())
            nodes[next_inode] = node
            parent.children[name] = next_inode
            next_inode += 1

    @classmethod
    def from_metainfo(cls, meta) -> "Tree":
        """The tree of a ``metainfo.Metainfo``."""
        entries = []
        for index, f in enumerate(meta.files):
            if f.padding:
                continue
            path = (meta.name, *f.path) if meta.multi_file else tuple(f.path)
            link = getattr(f, "symlink", None)
            if link is not None:
                link = link_text(path, (meta.name, *link) if link else path)
            entries.append((path, f.length, index, f.executable, link))
        tree = cls(entries)
        if meta.multi_file and meta.name not in tree.root.children:
            # A multi-file torrent of nothing but padding still shows its folder.
            node = Node(len(tree.nodes) + 1, meta.name, ROOT_INODE, True)
            tree.nodes[node.inode] = node
            tree.root.children[meta.name] = node.inode
        return tree

    @property
    def root(self) -> Node:
        return self.nodes[ROOT_INODE]

    def get(self, inode: int) -> Node | None:
        return self.nodes.get(inode)

    def lookup(self, parent: int, name: str) -> Node | None:
        """The child ``name`` of directory ``parent``, or None."""
        node = self.nodes.get(parent)
        if node is None or not node.is_dir:
            return None
        inode = node.children.get(name)
        return None if inode is None else self.nodes[inode]

    def children(self, inode: int) -> list[Node]:
        """The entries of a directory, sorted by name."""
        node = self.nodes[inode]
        return [self.nodes[node.children[n]] for n in sorted(node.children)]

    def path(self, inode: int) -> str:
        """The node's path from the root, '/'-joined (for logs)."""
        parts = []
        while inode != ROOT_INODE:
            node = self.nodes[inode]
            parts.append(node.name)
            inode = node.parent
        return "/".join(reversed(parts))
