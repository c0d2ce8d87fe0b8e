"""The command line: ``main`` parses it and runs a command, one module each
(``mount``, ``watch`` for ``mount --watch``, ``unmount``, ``seed``, ``status``,
``info``, ``create``), with what they share: ``args`` (argument types, option
groups, the config file's finding), ``config`` (laying it onto the parsers),
``output`` (one-line errors, sizes, logging, progress), ``mountpoint``, ``daemon``
(forking, the ready pipe), ``serve`` (trio, pid file, DHT), ``state`` (where a
daemon's files are).

The top layer: it may import any layer below; nothing imports it."""
