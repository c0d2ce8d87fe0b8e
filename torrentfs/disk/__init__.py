"""Files: a torrent's data on disk and what may be trusted of it.

What belongs here: sparse files in the torrent's own layout with hash checks and the
resume file (storage), the live disk cache: what is on disk, verified, evicted
(cache), and building a .torrent from files (create).

May import: torrentfs.core (and the standard library). Nothing above (net/ uses it).
Imported by engine/ and above.
"""
