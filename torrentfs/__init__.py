"""torrentfs: mount a torrent as a read-only FUSE filesystem that streams what you read.

The folders are the layers; imports point down only (tests/test_layering.py checks it,
docs/architecture.md draws it and follows one read through them):

    cli/      the ``torrentfs`` command: one module per command, config, output
    fs/       pyfuse3 Operations (one torrent, many torrents), /proc readers
    engine/   one torrent live (swarm, reads, uploads, status), many torrents,
              where torrents come from
    net/      trio shells that own sockets
    disk/     files: storage, cache, create, private files
    core/     pure protocol cores: bytes in, events and decisions out
              (core/dht/: the DHT's cores)

A module may import its own folder and the folders below it (in this order:
cli, fs, engine, net, disk, core); nothing imports cli/; only fs/ and cli/ import pyfuse3; core/
imports only the standard library, bencodepy and core/. There is no import cycle.
"""

__version__ = "0.1.0"
