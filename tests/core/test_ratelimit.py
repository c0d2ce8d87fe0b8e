"""The token bucket: averages its rate, allows a burst, lends to big messages. Pure."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from torrentfs.core.ratelimit import MIN_BURST, Rate, TokenBucket

K = 1024


@pytest.mark.parametrize("rate", [None, 0])
def test_unlimited_never_waits(rate):
    b = TokenBucket(rate)
    assert b.unlimited
    assert all(b.take(10 * 1 << 20, now=float(t)) == 0.0 for t in range(100))
    assert b.take(1 << 40, now=0.0) == 0.0
    assert b.available(0.0) == math.inf


def test_default_burst_is_a_quarter_second_but_at_least_64k():
    assert TokenBucket(1_000_000).burst == 250_000
    assert TokenBucket(10 * K).burst == MIN_BURST
    assert TokenBucket(10 * K, burst=1000).burst == 1000
    assert not TokenBucket(10 * K).unlimited


@pytest.mark.parametrize("bad", [dict(rate=-1), dict(rate=100, burst=0),
                                 dict(rate=100, burst=-5)])
def test_bad_arguments(bad):
    with pytest.raises(ValueError):
        TokenBucket(**bad)


def test_negative_take_is_refused():
    with pytest.raises(ValueError):
        TokenBucket(100).take(-1, now=0.0)


def test_a_full_bucket_lets_a_burst_through_at_once():
    b = TokenBucket(100 * K, burst=64 * K)
    assert b.available(5.0) == 64 * K
    for _ in range(4):
        assert b.take(16 * K, now=5.0) == 0.0
    assert b.available(5.0) == 0.0
    # the next one waits for its tokens
    assert b.take(16 * K, now=5.0) == pytest.approx(16 * K / (100 * K))


def test_tokens_refill_at_the_rate_up_to_the_burst():
    b = TokenBucket(1000, burst=5000)
    assert b.take(5000, now=0.0) == 0.0
    assert b.available(2.0) == pytest.approx(2000)
    assert b.available(100.0) == 5000   # capped


def test_a_take_larger_than_the_burst_goes_into_debt():
    b = TokenBucket(1000, burst=2000)
    # 2000 tokens now, 8000 short: the debt is repaid in 8 s
    assert b.take(10_000, now=0.0) == pytest.approx(8.0)
    assert b.available(7.9) == 0.0
    # a later small take queues behind the debt
    assert b.take(1000, now=3.0) == pytest.approx(6.0)   # 5000 owed at t=3, plus 1000
    assert b.take(0, now=9.0) == pytest.approx(0.0)
    assert b.available(9.0) == pytest.approx(0.0)
    assert b.available(10.0) == pytest.approx(1000)


def test_a_steady_stream_averages_the_rate():
    rate = 250 * K
    b = TokenBucket(rate)
    t, sent = 0.0, 0
    while t < 600.0:                    # a sender that sleeps whatever it is told
        t += b.take(16 * K, now=t)
        sent += 16 * K
    assert sent / t == pytest.approx(rate, rel=0.01)


def test_a_steady_stream_with_uneven_messages_averages_the_rate():
    rate = 40 * K
    b = TokenBucket(rate, burst=16 * K)
    t, sent, sizes = 0.0, 0, [100, 16 * K, 70 * K, 3, 5000]  # some bigger than the burst
    for i in range(5000):
        n = sizes[i % len(sizes)]
        t += b.take(n, now=t)
        sent += n
    assert sent / t == pytest.approx(rate, rel=0.01)


def test_time_going_backwards_creates_no_tokens():
    b = TokenBucket(1000, burst=1000)
    assert b.take(1000, now=10.0) == 0.0
    # back to t=5: nothing was earned, and it must not be earned twice later
    assert b.available(5.0) == 0.0
    assert b.take(500, now=5.0) == pytest.approx(5.0 + 0.5)  # waits for t=10, then 0.5 s
    assert b.available(10.0) == 0.0
    assert b.available(11.0) == pytest.approx(500)


def test_tokens_of_the_latest_time_cannot_be_spent_earlier():
    b = TokenBucket(1000, burst=1000)
    b.take(1000, now=0.0)
    assert b.available(100.0) == 1000
    assert b.take(1000, now=50.0) == pytest.approx(50.0)   # only at t=100


def test_set_rate_midway():
    b = TokenBucket(1000, burst=4000)
    assert b.take(4000, now=0.0) == 0.0
    b.set_rate(2000, now=1.0)             # 1000 earned at the old rate
    assert b.available(1.0) == pytest.approx(1000)
    assert b.available(2.0) == pytest.approx(3000)
    assert b.take(5000, now=2.0) == pytest.approx(1.0)   # 2000 short at 2000/s


def test_set_rate_keeps_a_debt_and_the_new_rate_repays_it():
    b = TokenBucket(1000, burst=1000)
    assert b.take(3000, now=0.0) == pytest.approx(2.0)
    b.set_rate(500, now=0.0)
    assert b.take(0, now=0.0) == pytest.approx(4.0)


def test_set_rate_default_burst_follows_the_rate_explicit_one_stays():
    b = TokenBucket(1_000_000)
    b.take(0, now=0.0)
    b.set_rate(400_000, now=0.0)
    assert b.burst == 100_000
    assert b.available(0.0) == 100_000    # clipped to the smaller burst
    c = TokenBucket(1_000_000, burst=5000)
    c.set_rate(400_000, now=0.0)
    assert c.burst == 5000


def test_set_rate_on_and_off():
    b = TokenBucket(None)
    b.set_rate(1000, now=10.0)            # turning a limit on starts a full bucket
    assert not b.unlimited
    assert b.available(10.0) == MIN_BURST
    assert b.take(MIN_BURST + 1000, now=10.0) == pytest.approx(1.0)
    b.set_rate(None, now=10.0)            # off: the debt is forgiven
    assert b.unlimited and b.take(1 << 30, now=10.0) == 0.0
    b.set_rate(1000, now=20.0)
    assert b.available(20.0) == MIN_BURST


takes = st.lists(st.tuples(st.integers(0, 300_000),              # bytes
                           st.floats(-5.0, 20.0, allow_nan=False)),  # step of the clock
                 min_size=1, max_size=60)


@given(rate=st.floats(100.0, 1e6), burst=st.one_of(st.none(), st.floats(1.0, 1e6)),
       start=st.floats(0.0, 1e6), steps=takes)
def test_bytes_sent_by_any_time_stay_under_burst_plus_rate(rate, burst, start, steps):
    b = TokenBucket(rate, burst)
    now, sends = start, []
    for n, step in steps:
        now += step                      # the clock may even step backwards
        wait = b.take(n, now)
        assert wait >= 0.0
        sends.append((now + wait, n))    # each take is sent only after its wait
    t0 = start + steps[0][1]             # the first time the bucket was told
    for deadline, _ in sends:
        sent = sum(n for t, n in sends if t <= deadline)
        allowed = b.burst + rate * (deadline - t0)
        assert sent <= allowed * (1 + 1e-9) + 1e-3  # float slack, far below a byte


def test_rate_meter_decays_over_its_window():
    r = Rate(window=5.0)
    r.add(1000, 0.0)
    assert r.total == 1000 and r.rate(0.0) == pytest.approx(200.0)
    assert r.rate(0.01) == pytest.approx(200.0)   # under STEP: not decayed yet
    assert r.rate(5.0) == pytest.approx(200.0 / math.e)
    r.add(500, 5.0)
    assert r.total == 1500 and r.rate(5.0) == pytest.approx(200.0 / math.e + 100.0)
    assert r.rate(1000.0) < 1e-6 and r.total == 1500


def test_reading_the_rate_meter_changes_nothing():
    # The choker reads every peer's rate each round, as often as Interesteds come:
    # a meter read often must say what one read seldom says.
    often, seldom = Rate(window=5.0), Rate(window=5.0)
    for k in range(200):
        t = k * 0.037
        for r in (often, seldom):
            r.add(1000 + k, t)
        often.rate(t + 0.02)
        often.rate(t + 0.03)
    assert often.rate(9.0) == seldom.rate(9.0)
    assert often.rate(20.0) == seldom.rate(20.0)
