"""The engine: one torrent live, many torrents, and where torrents come from.

What belongs here: a running torrent: its swarm, picker and storage (torrent), the
read path that turns a read into block requests and waits for verified pieces
(reads), answering peers' requests (upload), the extension protocol inside a torrent
(peerext), a status snapshot as plain data (status); many torrents behind one
listening port and shared limits (multi); loading a .torrent, a magnet link or the
metadata cache (sources). No FUSE and no terminal: errors are exceptions, never exits.

May import: torrentfs.core, torrentfs.net, torrentfs.disk. Imported by fs/ and cli/.
"""
