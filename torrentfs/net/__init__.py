"""Trio shells that own sockets: each runs a pure core of core/ on the network.

What belongs here: one peer connection (peer, over core.wire), tracker announces
(tracker over core.announce, udpclient over core.udptracker), the DHT node (dht, over
core.dht), Local Service Discovery (lsd, over core.lsd), web seeds (webseed, over
core.webseed), a magnet's metadata fetch (magnetfetch, over core.metadata), peer
encryption on any stream (mse, over core.mse), the listening sockets (listen: IPv4
and IPv6 on one port), port mapping on the router (portmap, over core.natpmp and
core.upnp). A shell is
named after its pure twin, so the I/O of any protocol core is easy to find.

May import: torrentfs.core, torrentfs.disk (its private-file helpers, for the DHT's
state and fetched metadata), trio, httpx, sockets. Nothing above.
Imported by engine/ and above.
"""
