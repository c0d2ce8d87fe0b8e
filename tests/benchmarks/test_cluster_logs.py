"""benchmarks/cluster.py: who sent what to whom, read from the daemons' logs, for
peers met at their IPv4 and at their IPv6 link-local addresses."""

from benchmarks.cluster import connected_ips, flow_matrix
from tests.harness.netns import _cluster_mac

LOG1 = """\
13:06:29 INFO torrentfs.torrent: connected to <peer fe80::32:ff:fe00:0:6881> (in)
13:06:30 INFO torrentfs.torrent: connected to <peer 10.232.0.12:38967> (out)
13:06:29 INFO torrentfs.peer: <peer 10.232.0.10:6881> closed: already connected to this peer (received 0 bytes of blocks, sent 0)
13:07:37 INFO torrentfs.peer: <peer fe80::32:ff:fe00:0:6881> closed: peer closed the connection (received 2211840 bytes of blocks, sent 0)
13:07:37 INFO torrentfs.peer: <peer 10.232.0.12:38967> closed: shutting down (received 5586944 bytes of blocks, sent 1196032)
"""


def test_peers_are_named_by_either_address():
    names = {"10.232.0.10": "origin", "fe80::32:ff:fe00:0": "origin",
             "10.232.0.12": "node2", "fe80::32:ff:fe00:2": "node2"}
    assert connected_ips(LOG1, names) == {"origin", "node2"}
    assert connected_ips(LOG1) == {"fe80::32:ff:fe00:0", "10.232.0.12"}
    m = flow_matrix({"node1": LOG1, "node2": "", "origin": ""}, names)
    assert m["node1"] == {"origin": 2211840, "node2": 5586944}
    assert m["node2"]["node1"] == 1196032


def test_cluster_hosts_have_fixed_distinct_macs():
    macs = {_cluster_mac(k, i) for k in (0, 1, 255) for i in range(241)}
    assert len(macs) == 3 * 241
    assert _cluster_mac(3, 17) == "02:32:03:00:00:11"   # locally administered, unicast
