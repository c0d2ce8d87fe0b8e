"""The rate a user is shown (``Rate.shown``): bytes of the last 2 s per second, so it
falls to 0 within 2 s of the traffic stopping (issue 12), while ``Rate.rate`` (the
smooth one the choker uses) keeps its window."""

import pytest

from torrentfs.core.ratelimit import Rate


def test_shown_rate_is_the_last_two_seconds():
    r = Rate()
    for k in range(40):                 # 16 KiB every 0.1 s: 160 KiB/s for 4 s
        r.add(16384, k * 0.1)
    assert r.shown(3.95) == pytest.approx(163840, rel=0.06)
    assert r.shown(4.9) == pytest.approx(163840 * 1.0 / 2, rel=0.15)  # half the window idle
    assert r.shown(3.9 + Rate.SHOWN_WINDOW + Rate.SHOWN_BUCKET) == 0
    assert r.rate(6.0) > 0              # the smooth rate decays on its own window
    assert r.total == 40 * 16384


def test_shown_rate_starts_at_zero_and_counts_a_burst():
    r = Rate()
    assert r.shown(0.0) == 0
    r.add(1 << 20, 10.0)
    assert r.shown(10.0) == (1 << 20) / Rate.SHOWN_WINDOW
    assert r.shown(11.5) == (1 << 20) / Rate.SHOWN_WINDOW
    assert r.shown(12.1) == 0
