"""Who makes room for a peer that dials a full torrent (core/admission.py)."""

from torrentfs.core.admission import Replacer, Slot


def slot(key, connected_at=0.0, last_block=None, unchoked=False, origin=False):
    return Slot(key, connected_at, connected_at if last_block is None else last_block,
                unchoked, origin)


def test_a_young_session_is_never_replaced():
    r = Replacer(protect=15, every=2)
    slots = [slot("a", connected_at=10), slot("b", connected_at=12)]
    assert r.victim(slots, now=20) is None
    assert not r.possible(slots, now=20)
    assert r.victim(slots, now=25) == "a"


def test_the_origin_is_never_replaced():
    r = Replacer(protect=15, every=2)
    assert r.victim([slot("origin", origin=True)], now=100) is None
    assert r.victim([slot("origin", origin=True), slot("b", connected_at=50)],
                    now=100) == "b"


def test_a_peer_we_upload_to_is_kept_before_one_we_choke():
    r = Replacer(protect=15, every=2)
    slots = [slot("served", last_block=0, unchoked=True),
             slot("choked", last_block=80)]
    assert r.victim(slots, now=100) == "choked"


def test_a_peer_that_sent_us_a_block_lately_is_kept():
    r = Replacer(protect=15, every=2)
    slots = [slot("serving", last_block=90), slot("served", last_block=88, unchoked=True)]
    assert r.victim(slots, now=100) is None
    assert r.victim(slots, now=104) == "served"   # 16 s without a block
    assert r.victim(slots, now=106) == "serving"  # both idle: the one we choke


def test_of_the_choked_the_one_that_sent_us_nothing_longest_goes():
    r = Replacer(protect=15, every=2)
    slots = [slot("recent", last_block=80), slot("stale", last_block=40),
             slot("never", connected_at=60)]
    assert r.victim(slots, now=100) == "stale"
    slots = [slot("old", connected_at=10), slot("newer", connected_at=20)]
    assert r.victim(slots, now=100) == "old"   # neither sent a block: the oldest


def test_one_replacement_per_period():
    r = Replacer(protect=15, every=2)
    slots = [slot("a"), slot("b")]
    assert r.victim(slots, now=100) == "a"
    r.replaced(100)
    assert r.victim(slots[1:], now=101) is None
    assert not r.possible(slots[1:], now=101.9)
    assert r.victim(slots[1:], now=102) == "b"
    r.replaced(102)
    assert r.count == 2
