"""The mainline DHT's pure cores (BEP 5): KRPC messages (krpc), the routing table
(routing), an iterative lookup (lookup), what a node stores for others (store).

May import: the standard library, bencodepy, torrentfs.core. Imported by net/dht.py
(their trio shell) and by the rest of core.
"""
