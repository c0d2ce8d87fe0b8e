"""Attributing hash failures to peers (torrentfs.blame): sole suppliers are struck,
shared failures are settled block by block once the piece verifies."""

from __future__ import annotations

from torrentfs.core.blame import Blame
from torrentfs.core.geometry import Geometry

B = 16384
G = Geometry(4 * B, (10 * 4 * B,))
GOOD = bytes(range(256)) * (4 * B // 256)


def bad(*blocks: int) -> bytes:
    """GOOD with the first byte of each given block flipped."""
    data = bytearray(GOOD)
    for b in blocks:
        data[b * B] ^= 0xFF
    return bytes(data)


def by(*names: str) -> dict[int, str]:
    """Suppliers: block i came from names[i]."""
    return {i * B: name for i, name in enumerate(names)}


def test_shared_failure_bans_nobody_until_the_piece_verifies():
    blame = Blame(G)
    assert blame.piece_failed(0, bad(1), by("good", "liar", "good", "liar")) == []
    assert blame.piece_failed(1, bad(3), by("good", "liar", "good", "liar")) == []
    assert blame.strikes == {}
    # Re-fetched and verified: only the peer whose old blocks differ is named.
    assert blame.piece_verified(0, GOOD) == ["liar"]
    assert blame.piece_verified(1, GOOD) == ["liar"]
    assert blame.pending == 0


def test_honest_co_supplier_is_cleared_not_banned():
    blame = Blame(G)
    for index in range(5):  # five failures shared with a liar
        blame.piece_failed(index, bad(0), by("liar", "good", "good", "good"))
    for index in range(5):
        assert "good" not in blame.piece_verified(index, GOOD)


def test_sole_supplier_is_banned_at_its_second_failed_piece():
    blame = Blame(G)
    assert blame.piece_failed(0, bad(0), by("x", "x", "x", "x")) == []
    assert blame.strikes == {"x": 1}
    assert blame.piece_failed(1, bad(2), by("x", "x", "x", "x")) == ["x"]


def test_failures_of_the_same_piece_accumulate_its_suppliers():
    blame = Blame(G)
    blame.piece_failed(3, bad(0), by("a", "b", "b", "b"))
    blame.piece_failed(3, bad(0, 1), by("c", "c", "a", "a"))  # c alone is not the liar
    assert blame.strikes == {}
    assert sorted(blame.piece_verified(3, GOOD)) == ["a", "c"]


def test_verified_piece_without_record_names_nobody():
    blame = Blame(G)
    assert blame.piece_verified(0, GOOD) == []


def test_records_are_bounded():
    blame = Blame(G, max_failed=3)
    for index in range(10):
        blame.piece_failed(index, bad(0), by("a", "b"))
    assert blame.pending == 3
    assert blame.piece_verified(0, GOOD) == []  # forgotten: nothing to compare
    assert blame.piece_verified(9, GOOD) == ["a"]


def test_short_last_piece():
    g = Geometry(4 * B, (4 * B + B + 100,))
    blame = Blame(g)
    good = GOOD[:B + 100]
    broken = good[:B] + b"\x00" * 100
    blame.piece_failed(1, broken, {0: "a", B: "b"})
    assert blame.piece_verified(1, good) == ["b"]
