"""``Picker.backlog`` (what a read's NOW blocks queue behind at a peer, to be
cancelled and asked again after them): only the requests due later than the NOW
piece after them. A read's other pieces, raised at its deadline (``raise_read``
with leechers about), are not: the read waits for them all the same."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.core.test_picker import check_consistent, make, order, peer_with, seed
from torrentfs.core.picker import NOW, READAHEAD


def test_a_reads_other_pieces_are_no_backlog_for_its_now_piece():
    p = make("00000000", blocks=2)
    for name in "wxyz":  # leechers about: a read raises its first piece alone to NOW
        peer_with(p, name, "11111110")
    a = peer_with(p, "a", "11111110")
    p.raise_priority("window", [5, 6], READAHEAD, 9.0)
    asked = p.pick(a, 0.0, 100)
    assert set(order(asked)) == {5, 6}             # (in an order of its own)
    p.raise_read("read", [2, 3, 4], 1.0)                # 3 and 4: READAHEAD, due at 1.0
    p.raise_priority("read", [3, 4], READAHEAD, 1.0)    # (as raise_read leaves them)
    ours = p.pick(a, 0.0, 100)
    assert set(order(ours)) == {2, 3, 4}
    p.raise_read("read", [3, 4], 1.0)                   # the reader's next piece: 3
    assert p.priority(3)[0] == NOW and p.priority(4) == (READAHEAD, 1.0)
    backlog = p.backlog(a)
    assert all(index in (5, 6) for index, _, _ in backlog)  # not piece 4 (or 2)
    assert backlog == [b for b in asked]                # the window, due at 9.0
    check_consistent(p)


def test_a_piece_due_earlier_than_the_now_piece_is_no_backlog():
    p = make("000000", blocks=2)
    a = seed(p, "a")
    p.raise_priority("old", [1], READAHEAD, 0.5)        # overdue readahead
    p.raise_priority("window", [2], READAHEAD, 5.0)
    p.raise_priority("gone", [3], READAHEAD, 5.0)
    asked = p.pick(a, 0.0, 100)
    p.drop("gone")                                      # no longer wanted: always backlog
    p.raise_priority("read", [4], NOW, 1.0)
    p.pick(a, 0.0, 100)
    assert [i for i, _, _ in p.backlog(a)] == [2, 2, 3, 3]
    assert [b for b in asked if b[0] != 1] == p.backlog(a)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 7), st.sampled_from([READAHEAD, NOW]),
                          st.integers(0, 4)), min_size=1, max_size=12))
def test_backlog_is_what_is_asked_before_a_now_piece_and_due_later(raises):
    """Against a direct reading of the rule, over any raises and picks."""
    p = make("00000000", blocks=2)
    a = seed(p, "a")
    for n, (index, tier, due) in enumerate(raises):
        p.raise_priority(f"o{n}", [index], tier, float(due))
        p.pick(a, 0.0, 3)
    asked = list(p._outstanding[a])
    want = []
    for k, (index, begin) in enumerate(asked):
        tier, due = p.priority(index)
        if tier == NOW:
            continue
        # The first NOW request after it is the one it queues ahead of.
        first = next(((i, b) for i, b in asked[k + 1:] if p.priority(i)[0] == NOW), None)
        if first is not None and due > p.priority(first[0])[1]:
            want.append((index, begin))
    assert [(i, b) for i, b, _ in p.backlog(a)] == want
