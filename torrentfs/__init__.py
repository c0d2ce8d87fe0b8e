"""torrentfs: mount a torrent as a read-only FUSE filesystem that streams what you read.

Layers (imports point downwards only):

    cli.py      argparse, daemonising, signals (config.py: the config file and
                -o options laid onto argparse's defaults; pure)
    fuse.py     pyfuse3 Operations; the only place errors become errno
                (multifs.py: the root of a multi-torrent mount, over fuse.py's trees)
    multi.py    mount --watch: many torrents, one listening port, shared limits
    torrent.py  one torrent: swarm, picker, reads
    peer.py, tracker.py, storage.py, dht.py   trio shell: sockets, HTTP, files
    ---- pure tier (stdlib + bencodepy only; no trio, no clock, no sockets) ----
    geometry.py metainfo.py bitfield.py wire.py announce.py picker.py tree.py
    krpc.py routing.py dhtlookup.py dhtstore.py (the DHT's cores)
    watchdir.py (a watched folder's changes, folder names)
"""

__version__ = "0.1.0"
