"""The cluster policy of session 6 (issues 13 and 16), in the pure cores that both the
engine and the swarm simulator call: a read raises only its first missing piece to
NOW while other leechers are about (``SPLIT_LEECHERS`` or more) (``Priorities.raise_read``); the picker knows at
once which peers have nothing more for us (``piece_verified``'s answer, so the shell
says not interested); a newly interested peer is worth a round out of turn while a
slot is empty or, by default, always (``Choker.worth_round``, session 7); a leecher with nothing free to ask may take
over a block that waits in another peer's queue (``core/stealing``)."""

from __future__ import annotations

import math

from tests.core.test_picker import make, peer_with, seed
from torrentfs.core.choker import Choker, PeerView
from torrentfs.core.geometry import BLOCK_SIZE as B
from torrentfs.core.picker import NOW, READAHEAD
from torrentfs.core.priorities import SPLIT_LEECHERS

# -- a read's pieces: the first at NOW, the rest READAHEAD with leechers about --------


def test_among_seeds_alone_a_read_raises_all_its_pieces_to_now():
    p = make("0000")
    seed(p, "s")
    p.raise_read("read", [1, 2, 3], deadline=5.0)
    assert [p.priority(i) for i in (1, 2, 3)] == [(NOW, 5.0)] * 3


def test_with_few_leechers_about_a_read_still_raises_all_its_pieces_to_now():
    p = make("0000")
    seed(p, "s")
    for k in range(SPLIT_LEECHERS - 1):
        peer_with(p, f"l{k}", "1000")
    p.raise_read("read", [1, 2], deadline=5.0)
    assert [p.priority(i) for i in (1, 2)] == [(NOW, 5.0)] * 2


def test_with_leechers_about_only_the_first_missing_piece_is_now():
    p = make("0100")
    seed(p, "s")
    for k in range(SPLIT_LEECHERS):
        peer_with(p, f"l{k}", "1000")
    p.raise_read("read", [1, 2, 3], deadline=5.0)
    assert p.priority(1)[0] != NOW  # had: not raised at all
    assert p.priority(2) == (NOW, 5.0)
    assert p.priority(3) == (READAHEAD, 5.0)
    # the read raises again as its pieces come in: the next one goes to NOW
    p.piece_verified(2)
    p.raise_read("read", [3], deadline=5.0)
    assert p.priority(3) == (NOW, 5.0)
    p.drop("read")
    assert p.priority(3)[0] < READAHEAD


def test_a_leechers_pick_still_takes_the_reads_readahead_pieces():
    p = make("0000", blocks=1)
    for k in range(SPLIT_LEECHERS):
        peer_with(p, f"l{k}", "0111")
    p.raise_read("read", [1, 2, 3], deadline=0.0)
    assert sorted(i for i, _, _ in p.pick("l0", 1.0, 10)) == [1, 2, 3]


# -- interest that follows what a peer still has for us ---------------------------


def test_a_peer_is_interesting_while_it_has_a_piece_we_lack():
    p = make("0000")
    peer_with(p, "a", "1100")
    peer_with(p, "b", "0100")
    assert p.is_interesting("a") and p.is_interesting("b")
    assert p.piece_verified(1) == ["b"]   # b had nothing else for us
    assert p.is_interesting("a") and not p.is_interesting("b")
    assert p.piece_verified(0) == ["a"]
    assert p.piece_verified(0) == []      # already ours: nothing changes
    p.got_have("b", 3)
    assert p.is_interesting("b")
    p.piece_lost(1)                       # wanted again: a has it
    assert p.is_interesting("a")


def test_a_seed_is_interesting_until_we_have_everything():
    p = make("0110")
    seed(p, "s")
    assert p.is_interesting("s")
    assert p.piece_verified(0) == []
    assert p.piece_verified(3) == ["s"]
    assert not p.is_interesting("s")


def test_a_removed_peer_is_not_interesting():
    p = make("00")
    peer_with(p, "a", "10")
    p.remove_peer("a")
    assert not p.is_interesting("a")
    assert p.piece_verified(0) == []


# -- the choker's out-of-turn round ------------------------------------------------


def test_the_choker_has_room_only_while_a_slot_is_empty():
    c = Choker(regular_slots=2)
    assert c.has_room()
    views = [PeerView(k, True, True, 0.0, 0.0) for k in "ab"]
    c.rechoke(views, 0.0, seeding=True)
    assert c.has_room()  # two regular slots taken, the optimistic one is empty
    views = [PeerView(k, True, k not in "ab", 0.0, 0.0) for k in "abc"]
    c.rechoke(views, 1.0, seeding=True)
    assert not c.has_room()
    views = [PeerView(k, k != "a", False, 0.0, 0.0) for k in "abc"]
    c.rechoke(views, 2.0, seeding=True)  # a lost interest: its slot is free
    assert c.has_room()


def test_an_interested_peer_is_worth_a_round_with_a_slot_free_or_a_second_on():
    c = Choker(regular_slots=1, interest_every=1.0)
    assert c.worth_round(0.0)  # no round yet: every slot is free
    views = [PeerView(k, True, True, 0.0, 0.0) for k in "ab"]
    c.rechoke(views, 5.0, seeding=True)  # a regular, b optimistic: full
    assert not c.has_room()
    assert not c.worth_round(5.0)
    assert not c.worth_round(5.9)
    assert c.worth_round(6.0)  # a second after the last round
    views = [PeerView(k, k != "b", k not in "ab", 0.0, 0.0) for k in "abc"]
    c.rechoke(views, 6.0, seeding=True)  # b lost interest; c takes the slot
    assert not c.worth_round(6.5)
    views = [PeerView(k, k == "a", k not in "ac", 0.0, 0.0) for k in "abc"]
    c.rechoke(views, 6.5, seeding=True)  # c lost interest too: a slot is free
    assert c.worth_round(6.5)
    default = Choker(regular_slots=0)  # every Interested is worth a round
    default.rechoke([PeerView(k, True, True, 0.0, 0.0) for k in "ab"], 1.0, seeding=True)
    assert not default.has_room() and default.worth_round(1.0)
    inf = Choker(regular_slots=0, interest_every=math.inf)
    inf.rechoke([PeerView(k, True, True, 0.0, 0.0) for k in "ab"], 1.0, seeding=True)
    assert not inf.worth_round(1e9)  # session 6's rule: only with a slot free


# -- taking over a block that waits in another peer's queue ------------------------


def two_leechers(steal_after: float = 0.3):
    p = make("000", blocks=2)
    p.steal_after = steal_after
    peer_with(p, "busy", "010")
    peer_with(p, "idle", "000")
    p.raise_priority("r", [1], READAHEAD, 10.0)
    assert len(p.pick("busy", 0.0, 10)) == 2  # both blocks asked of busy
    return p


def test_a_leecher_with_nothing_free_takes_over_a_block_asked_long_ago():
    p = two_leechers()
    p.got_have("idle", 1)
    assert p.pick("idle", 0.1, 10) == []           # asked too recently
    assert not p.dry("idle")                       # time alone may change that
    assert p.pick("idle", 0.5, 10) == [(1, 0, B), (1, B, B)]
    got = p.block_received("idle", 1, 0, B, 0.6)
    assert got.new and got.cancel == ["busy"]      # the other holder is cancelled
    assert p.pick("idle", 2.0, 10) == []           # two holders each: no more
    assert p.block_received("busy", 1, 0, B, 2.0).new is False


def test_seeds_do_not_take_over_and_a_zero_delay_turns_it_off():
    p = two_leechers()
    seed(p, "origin")
    assert p.pick("origin", 5.0, 10) == []
    p = two_leechers(steal_after=0.0)
    p.got_have("idle", 1)
    assert p.pick("idle", 5.0, 10) == []
    assert p.dry("idle")


def test_what_a_remote_peer_must_avoid_is_not_taken_over():
    p = two_leechers()
    p.got_have("idle", 1)
    assert p.pick("idle", 5.0, 10, avoid={1}) == []
