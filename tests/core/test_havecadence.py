"""core/havecadence: with ``at_once``, a batch of HAVEs leaves at once after a
quiet spell, else ``gap`` after its first HAVE (never more often than one per
``gap`` in a dense stream); without (the default), always ``gap`` after it."""

from __future__ import annotations

import pytest

from torrentfs.core.havecadence import HaveCadence


def test_by_default_every_batch_waits_the_gap():
    c = HaveCadence(0.05)
    assert c.delay(3.0) == 0.05
    c.flushed(3.05)
    assert c.delay(10.0) == 0.05


def test_the_first_batch_leaves_at_once():
    assert HaveCadence(0.05, at_once=True).delay(3.0) == 0.0


def test_a_batch_within_the_gap_of_the_last_waits_the_gap():
    c = HaveCadence(0.05, at_once=True)
    c.flushed(1.0)
    assert c.delay(1.0) == 0.05
    assert c.delay(1.03) == 0.05


def test_a_batch_after_a_quiet_spell_leaves_at_once():
    c = HaveCadence(0.05, at_once=True)
    c.flushed(1.0)
    assert c.delay(1.05) == 0.0
    assert c.delay(2.0) == 0.0


def flush_times(arrivals: list[float], gap: float) -> list[float]:
    """When batches leave for HAVEs queued at ``arrivals``, as engine/haves.py's
    loop and the simulator run the cadence."""
    c, out, due = HaveCadence(gap, at_once=True), [], None
    for t in arrivals:
        if due is not None and t >= due:   # the open batch left before this one
            c.flushed(due)
            out.append(due)
            due = None
        if due is None:                    # the first HAVE of a batch
            due = t + c.delay(t)
            if due == t:
                c.flushed(t)
                out.append(t)
                due = None
    if due is not None:
        out.append(due)
    return out


def test_a_dense_stream_is_batched_no_more_often_than_once_a_gap():
    arrivals = [i * 0.01 for i in range(100)]   # a piece every 10 ms for a second
    out = flush_times(arrivals, 0.05)
    assert out[0] == 0.0                          # the first piece, at once
    assert all(b - a >= 0.05 - 1e-9 for a, b in zip(out, out[1:]))
    assert len(out) <= 1 + 1.0 / 0.05 + 1


def test_sparse_pieces_are_each_announced_without_delay():
    arrivals = [i * 0.13 for i in range(10)]     # 256 KiB pieces at 2 MB/s
    assert flush_times(arrivals, 0.05) == pytest.approx(arrivals)
