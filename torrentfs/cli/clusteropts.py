"""The cluster options of mount, watch and seed: ``--prefer-subnet`` (peers in our
subnet first: core/topology) and seed's ``--super-seed`` (the origin sends each
piece about once: core/sparing)."""

from __future__ import annotations

import argparse

from torrentfs.core.topology import Locality, TopologyError


def parse_prefer_subnet(text: str) -> str:
    if text != "auto":
        try:
            Locality.parse(text)
        except TopologyError as e:
            raise argparse.ArgumentTypeError(str(e).removeprefix("--prefer-subnet: "))
    return text


def add_prefer_subnet(p) -> None:
    p.add_argument("--prefer-subnet", type=parse_prefer_subnet, metavar="CIDR|auto",
                   help="prefer peers in this subnet (e.g. 10.0.1.0/24, several "
                        "comma-separated; 'auto': the /24 or /64 of each of our own "
                        "addresses) when dialing and requesting: a piece a "
                        "peer in the subnet has is not asked of one outside, so a rack's "
                        "uplink carries about one copy, not one per node (default: off)")


def add_super_seed(p) -> None:
    p.add_argument("--super-seed", action="store_true",
                   help="spare this seed's upload (an origin's): a piece it already "
                        "sent to another peer is refused (BEP 6 reject) so that the asker "
                        "fetches it there, unless it keeps asking for 3 s; the origin "
                        "sends about one copy as nodes join (default: off)")


def cluster_settings(args) -> dict:
    """The TorrentOptions these options give (those a command lacks stay default)."""
    return {"prefer_subnet": getattr(args, "prefer_subnet", None),
            "super_seed": getattr(args, "super_seed", False)}
