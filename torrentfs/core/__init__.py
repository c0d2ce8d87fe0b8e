"""Pure protocol cores: bytes in, events and decisions out.

What belongs here: the BitTorrent formats and decisions with no I/O of their own: the
peer wire state machine (wire), .torrent and magnet parsing (metainfo, magnet), piece
and file arithmetic (geometry, bitfield, tree), which block to ask whom (picker), whom
to upload to (choker), tracker, LSD, web seed and extension formats (announce,
udptracker, lsd, webseed, extension, metadata, pex), the cache and readahead policies,
rate limits, blame for bad pieces, the MSE/PE encryption handshake (mse, its cipher
passed in), NAT-PMP and UPnP IGD messages (natpmp, upnp); dht/ holds the DHT's cores. Time is a ``now``
parameter and randomness an ``rng`` one, so every decision can be tested exactly.

May import: the standard library (no trio, sockets, time, random, threads or
subprocesses), bencodepy, and torrentfs.core. Imported by every other layer.
"""
