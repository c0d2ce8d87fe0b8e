"""The FUSE layer: the only place errors become errno values.

What belongs here: the pyfuse3 Operations of one torrent (fuse) and of a
multi-torrent mount's root (multifs), and what /proc says about processes and mounts
(procfs), read without touching a mountpoint so a wedged mount cannot hang it.

May import: torrentfs.engine and everything below it, and pyfuse3 (only fs/ and cli/
may). Imported by cli/ only.
"""
