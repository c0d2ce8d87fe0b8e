"""net/localaddr: our own addresses from /proc/net, parsed without touching a socket."""

from torrentfs.net.localaddr import own_addresses, parse_fib_trie, parse_if_inet6

FIB = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
           |-- 127.0.0.1
              /32 host LOCAL
     +-- 192.0.2.0/24 2 0 2
           |-- 192.0.2.0
              /24 link UNICAST
           |-- 192.0.2.2
              /32 host LOCAL
        |-- 192.0.2.255
           /32 link BROADCAST
Local:
           |-- 192.0.2.2
              /32 host LOCAL
"""

INET6 = """00000000000000000000000000000001 01 80 10 80       lo
fd000000000000000000000000000002 04 40 00 82     eth0
zz
"""


def test_fib_trie_gives_the_local_host_entries_once():
    assert parse_fib_trie(FIB) == ["127.0.0.1", "192.0.2.2"]


def test_if_inet6_gives_the_addresses():
    assert parse_if_inet6(INET6) == ["::1", "fd00::2"]


def test_own_addresses_include_loopback_here():
    assert "127.0.0.1" in own_addresses()
