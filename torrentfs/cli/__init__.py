"""The command line: the ``torrentfs`` command and what only a command needs.

What belongs here: one module per command (mount, unmount, status, seed, info,
create), the small main that registers them, argument parsing, the config file and
``-o`` options (config), output: one-line errors, sizes, log lines, progress bars
(output, progress), daemonising and the per-mountpoint state files (state).

May import: anything in torrentfs. Nothing in torrentfs imports it: a helper that a
lower layer needs lives in that layer.
"""
