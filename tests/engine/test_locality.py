"""engine/locality: --prefer-subnet's inputs for one torrent (no sockets)."""

from torrentfs.engine.locality import Nearby


class Session:
    """What Nearby reads of a PeerSession: its address (and it is hashable)."""

    def __init__(self, host: str) -> None:
        self.addr = (host, 6881)


def peer(host):
    return Session(host)


def test_off_prefers_nothing_and_keeps_nothing():
    n = Nearby(None, 4)
    far = peer("10.9.9.9")
    assert not n and not n.remote(far) and n.avoid(far) is None
    n.got(far, 1)
    assert 1 not in n.local_have
    assert n.dial_order([("10.9.9.9", 1), ("10.0.1.2", 1)]) == [("10.9.9.9", 1),
                                                                  ("10.0.1.2", 1)]


def test_a_remote_peer_is_not_asked_for_what_a_local_one_has():
    n = Nearby("10.0.1.0/24", 4)
    near, far = peer("10.0.1.7"), peer("10.0.2.7")
    assert not n.remote(near) and n.remote(far)
    assert n.avoid(near) is None
    gate = n.avoid(far)
    n.got(far, 0)               # a remote peer's pieces do not count
    n.got_all(near, [1, 2])
    assert 0 not in gate and 1 in gate and 2 in gate
    n.closed(near)
    assert 1 not in gate


def test_local_candidates_are_dialed_first():
    n = Nearby("10.0.1.0/24", 4)
    addrs = [("10.0.2.1", 1), ("10.0.1.1", 1), ("10.0.3.1", 1), ("10.0.1.2", 1)]
    assert n.dial_order(addrs) == [("10.0.1.1", 1), ("10.0.1.2", 1), ("10.0.2.1", 1),
                                   ("10.0.3.1", 1)]


def test_auto_uses_our_own_addresses():
    n = Nearby("auto", 4, own=lambda: ["127.0.0.1", "192.0.2.5"])
    assert not n.remote(peer("192.0.2.200")) and n.remote(peer("198.51.100.1"))
