"""watchdir: which files of a watched folder to load and unload, and folder names."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from torrentfs.core.watchdir import (
    NAME_MAX,
    DirWatch,
    candidates,
    safe_name,
    unique_name,
)

A1, A2, B1 = (100, 1, 7), (120, 2, 7), (50, 1, 8)


def test_candidates_are_torrents_and_magnets_not_hidden_sorted():
    names = ["b.torrent", "a.TORRENT", "x.magnet", ".a.torrent.swp", ".hidden.torrent",
             "notes.txt", "c.torrent.part", "torrent", "d.torrent"]
    assert candidates(names) == (["a.TORRENT", "b.torrent", "d.torrent", "x.magnet"], 0)


def test_candidates_are_bounded():
    names = [f"{i:04}.torrent" for i in range(30)]
    kept, over = candidates(names, limit=10)
    assert kept == names[:10] and over == 20


def test_first_listing_is_taken_as_it_is():
    w = DirWatch()
    c = w.update({"b.torrent": B1, "a.torrent": A1})
    assert c.added == ["a.torrent", "b.torrent"] and c.removed == []
    assert w.update({"b.torrent": B1, "a.torrent": A1}).added == []


def test_a_new_file_is_loaded_once_it_settles():
    w = DirWatch()
    w.update({})
    assert w.update({"a.torrent": (0, 1, 7)}).added == []   # just created, empty
    assert w.update({"a.torrent": A1}).added == []          # still being written
    assert w.update({"a.torrent": A1}).added == ["a.torrent"]
    assert w.update({"a.torrent": A1}).added == []          # once per version


def test_a_removed_file_is_unloaded_at_once():
    w = DirWatch()
    w.update({"a.torrent": A1, "b.torrent": B1})
    c = w.update({"b.torrent": B1})
    assert c.removed == ["a.torrent"] and c.added == []
    assert w.update({"b.torrent": B1}).removed == []


def test_a_rewritten_file_is_unloaded_then_loaded_when_settled():
    w = DirWatch()
    w.update({"a.torrent": A1})
    c = w.update({"a.torrent": A2})
    assert c.removed == ["a.torrent"] and c.added == []
    c = w.update({"a.torrent": A2})
    assert c.added == ["a.torrent"] and c.removed == []


def test_a_file_that_goes_before_it_settles_is_never_handed_out():
    w = DirWatch()
    w.update({})
    w.update({"a.torrent": A1})
    c = w.update({})
    assert c.added == [] and c.removed == []
    assert w.update({"a.torrent": A1}).added == []  # seen afresh: settles again
    assert w.update({"a.torrent": A1}).added == ["a.torrent"]


def test_a_bad_file_is_tried_once_per_version():
    """The shell reports nothing back on a failed load: the file stays handed out,
    so a broken .torrent costs one try (one log line) until it changes."""
    w = DirWatch()
    assert w.update({"bad.torrent": A1}).added == ["bad.torrent"]
    for _ in range(5):
        assert w.update({"bad.torrent": A1}).added == []
    w.update({"bad.torrent": A2})
    assert w.update({"bad.torrent": A2}).added == ["bad.torrent"]


def test_forget_hands_a_file_out_again():
    w = DirWatch()
    w.update({"a.torrent": A1, "dup.torrent": B1})
    w.forget("dup.torrent")
    c = w.update({"a.torrent": A1, "dup.torrent": B1})
    assert c.added == ["dup.torrent"] and c.removed == []
    w.forget("never-seen.torrent")  # harmless
    assert w.update({"a.torrent": A1, "dup.torrent": B1}).added == []


def test_forget_then_changed_waits_to_settle():
    w = DirWatch()
    w.update({"dup.torrent": B1})
    w.forget("dup.torrent")
    assert w.update({"dup.torrent": A2}).added == []
    assert w.update({"dup.torrent": A2}).added == ["dup.torrent"]


def test_unique_name():
    assert unique_name("alpha", []) == "alpha"
    assert unique_name("alpha", ["alpha"]) == "alpha (2)"
    assert unique_name("alpha", ["alpha", "alpha (2)"]) == "alpha (3)"
    assert unique_name("alpha", ["alpha (2)"]) == "alpha"
    assert unique_name("Alpha", ["alpha"]) == "Alpha"  # names are compared exactly


def test_unique_name_is_made_safe():
    assert safe_name("a/b\0c") == "a_b_c"
    for bad in ("", ".", ".."):
        assert safe_name(bad) == "_"
    assert unique_name("..", ["_"]) == "_ (2)"


def test_unique_name_of_a_long_name_stays_within_name_max():
    long = "é" * 200  # 400 bytes of UTF-8: cut at a character boundary
    first = unique_name(long, [])
    assert len(first.encode()) <= NAME_MAX and first == "é" * 127
    second = unique_name(long, [first])
    assert len(second.encode()) <= NAME_MAX and second.endswith(" (2)")
    assert second.encode().decode() == second


@given(st.lists(st.text(min_size=0, max_size=300), max_size=12))
def test_unique_names_never_clash_and_are_safe(names):
    shown: list[str] = []
    for name in names:
        got = unique_name(name, shown)
        assert got not in shown
        assert got not in ("", ".", "..") and "/" not in got and "\0" not in got
        assert len(got.encode("utf-8", "surrogateescape")) <= NAME_MAX
        shown.append(got)
