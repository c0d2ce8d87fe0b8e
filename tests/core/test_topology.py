"""core/topology: which peers are local, and what a remote peer is not asked for."""

import pytest

from torrentfs.core.topology import (
    REMOTE_MIN,
    LocalHave,
    Locality,
    RemoteGate,
    TopologyError,
    choose,
    dial_order,
)


def test_a_cidr_makes_its_addresses_local_and_no_others():
    loc = Locality.parse("10.1.2.0/24")
    assert loc.is_local("10.1.2.7")
    assert loc.is_local("::ffff:10.1.2.9")   # IPv4-mapped counts as IPv4
    assert not loc.is_local("10.1.3.7")
    assert not loc.is_local("fd00::1")
    assert not loc.is_local("not an address")


def test_several_cidrs_and_host_bits_are_accepted():
    loc = Locality.parse("10.1.2.5/24, fd00:1::/64")
    assert loc.is_local("10.1.2.200") and loc.is_local("fd00:1::9")
    assert not loc.is_local("fd00:2::9")


def test_auto_takes_the_subnet_of_our_own_routable_addresses():
    loc = Locality.parse("auto", ["127.0.0.1", "10.9.8.7", "::1", "fe80::1", "fd00::2",
                                  "0.0.0.0", "junk"])
    assert [str(n) for n in loc.networks] == ["10.9.8.0/24", "fd00::/64"]
    assert loc.is_local("10.9.8.1") and not loc.is_local("127.0.0.1")
    assert not loc.is_local("fe80::2")


def test_off_prefers_nothing():
    for loc in (Locality.parse(None), Locality.parse(""), Locality.parse("auto", [])):
        assert not loc
        assert not loc.is_local("10.0.0.1")


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "nonsense", "10.0.0/99"])
def test_a_bad_cidr_is_a_topology_error(bad):
    with pytest.raises(TopologyError, match="--prefer-subnet"):
        Locality.parse(bad)


def local(c):
    return c.startswith("L")


def test_choose_fills_with_local_peers_but_keeps_places_for_remote_ones():
    cands = [f"R{i}" for i in range(10)] + [f"L{i}" for i in range(60)]
    got = choose(cands, local, 50)
    assert len(got) == 50
    assert sum(map(local, got)) == 50 - REMOTE_MIN
    assert got[:3] == ["L0", "L1", "L2"]   # in the candidates' order otherwise


def test_choose_takes_more_remote_ones_when_local_ones_run_out():
    got = choose(["R1", "L1", "R2", "R3"], local, 3, remote_min=1)
    assert got == ["L1", "R1", "R2"]
    assert choose(["R1", "R2"], local, 1) == ["R1"]
    assert choose([], local, 5) == []


def test_dial_order_puts_local_candidates_first_stably():
    assert dial_order(["R1", "L1", "R2", "L2"], local) == ["L1", "L2", "R1", "R2"]


def test_local_have_counts_each_peer_once_and_forgets_it():
    lh = LocalHave(4)
    gate = RemoteGate(lh)
    assert 1 not in gate
    lh.have("a", 1)
    lh.have("a", 1)   # said twice: counted once
    lh.have_all("b", [1, 2])
    assert 1 in gate and 2 in gate and 0 not in gate
    lh.forget("a")
    assert 1 in gate          # b still has it
    lh.forget("b")
    assert 1 not in gate and 2 not in gate
    assert lh.counts == [0, 0, 0, 0]
    assert 7 not in gate and "x" not in gate
