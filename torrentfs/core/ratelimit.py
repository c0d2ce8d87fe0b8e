"""Rates: a token bucket that limits them, and a meter that measures them. Pure: no
I/O, no clock (``now`` is passed in).

Contract of ``TokenBucket``
---------------------------
* The bucket fills at ``rate`` bytes/s up to ``burst`` bytes and starts full at the
  first time it is told (the first ``take``, ``available`` or ``set_rate``). A
  ``rate`` of None or 0 means unlimited: every ``take`` returns 0.0.
* ``take(n, now)`` reserves ``n`` bytes and returns how many seconds to wait before
  sending them; the caller sends only after that wait. A take is never refused or
  split: if the bucket holds fewer than ``n`` tokens it goes into debt, and the wait is
  the time until the debt is repaid. So a message larger than ``burst`` is never
  starved, and later takes queue behind it.
* Hence, from the first time ``t0`` told, the bytes whose wait has passed by time ``T``
  never exceed ``burst + rate * (T - t0)``, and a steady sender averages ``rate``.
* Time only moves forward: a ``now`` smaller than the latest seen creates no tokens,
  and tokens already counted up to the latest time cannot be spent before it (a take
  at an earlier ``now`` waits at least until the latest time).
* ``set_rate(rate, now)`` settles the tokens earned so far at the old rate, then fills
  at the new one; a debt stays owed. The burst follows the new rate if it was left to
  its default, else it stays; tokens above a smaller burst are dropped. Turning a
  limit on starts a full bucket; turning it off forgives any debt.
"""

from __future__ import annotations

import math
from collections import deque

MIN_BURST = 64 * 1024    # bytes: the smallest default burst
BURST_SECONDS = 0.25     # the default burst is this many seconds' worth of rate


def default_burst(rate: float) -> float:
    return max(rate * BURST_SECONDS, MIN_BURST)


class TokenBucket:
    def __init__(self, rate: float | None, burst: float | None = None) -> None:
        """``rate`` in bytes/s (None or 0: unlimited); ``burst`` in bytes, by default
        ``max(rate * 0.25, 64 KiB)``."""
        if burst is not None and burst <= 0:
            raise ValueError("burst must be > 0")
        self._burst_given = burst
        self.rate = 0.0
        self.burst = 0.0
        self._tokens = 0.0            # may be negative: a debt
        self._last: float | None = None  # the latest time told
        self._set(rate)
        if not self.unlimited:
            self._tokens = self.burst

    @property
    def unlimited(self) -> bool:
        return self.rate == 0

    def take(self, n: int, now: float) -> float:
        """Reserve ``n`` bytes at ``now``; returns the seconds to wait before sending
        them (0.0 if they may go at once)."""
        if n < 0:
            raise ValueError("cannot take a negative number of bytes")
        if self.unlimited:
            return 0.0
        self._refill(now)
        self._tokens -= n
        return self._wait(now)

    def available(self, now: float) -> float:
        """How many bytes a ``take`` at ``now`` would get without waiting (0 while in
        debt; infinite when unlimited)."""
        if self.unlimited:
            return math.inf
        self._refill(now)
        if now < self._last:
            return 0.0
        return max(self._tokens, 0.0)

    def set_rate(self, rate: float | None, now: float) -> None:
        """Change the rate from ``now`` on (None or 0: unlimited)."""
        full = self.unlimited or self._last is None  # a bucket starting now starts full
        if not self.unlimited:
            self._refill(now)
        self._set(rate)
        if self.unlimited:
            self._tokens = 0.0
        elif full:
            self._tokens = self.burst
            self._last = now if self._last is None else max(self._last, now)
        else:
            self._tokens = min(self._tokens, self.burst)

    # -- internals -------------------------------------------------------------------

    def _set(self, rate: float | None) -> None:
        if rate is not None and rate < 0:
            raise ValueError("rate must be >= 0")
        self.rate = float(rate or 0)
        if self.unlimited:
            self.burst = math.inf
        else:
            self.burst = float(self._burst_given or default_burst(self.rate))

    def _refill(self, now: float) -> None:
        if self._last is None:
            self._last = now
        elif now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now

    def _wait(self, now: float) -> float:
        """Seconds from ``now`` until the tokens are back to zero."""
        assert self._last is not None
        return max(self._last - now, 0.0) + max(-self._tokens, 0.0) / self.rate


class Rate:
    """A byte rate, two ways: ``rate(now)``, exponentially weighted over roughly
    ``window`` seconds (smooth: for the choker and pipeline sizing), and
    ``shown(now)``, the bytes of the last ``SHOWN_WINDOW`` seconds per second (what
    a user is shown: it falls to 0 that long after the traffic stops)."""

    SHOWN_WINDOW = 2.0   # seconds
    SHOWN_BUCKET = 0.1   # seconds per bucket of the shown rate's window

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self.total = 0
        self._rate = 0.0
        self._last: float | None = None
        self._buckets: deque[list] = deque()  # [bucket number, bytes], oldest first

    STEP = 0.05  # decay at most this often: cheap enough to call per block

    def add(self, n: int, now: float) -> None:
        last = self._last  # _decay's test inline: this runs once a block
        if last is None or now - last >= self.STEP:
            self._decay(now)
        self.total += n
        self._rate += n / self.window
        bucket = math.floor(now / self.SHOWN_BUCKET)
        buckets = self._buckets
        if buckets and buckets[-1][0] >= bucket:
            buckets[-1][1] += n
        else:
            buckets.append([bucket, n])
            self._expire(now)

    def shown(self, now: float) -> float:
        """Bytes per second over the last ``SHOWN_WINDOW`` seconds: 0 once nothing
        came for that long."""
        self._expire(now)
        return sum(n for _, n in self._buckets) / self.SHOWN_WINDOW

    def _expire(self, now: float) -> None:
        oldest = math.floor((now - self.SHOWN_WINDOW) / self.SHOWN_BUCKET)
        while self._buckets and self._buckets[0][0] <= oldest:
            self._buckets.popleft()

    def rate(self, now: float) -> float:
        """The smooth rate at ``now``. A pure read: only ``add`` moves the state, so
        how often it is read (the choker reads every peer's each round, and rounds
        come with every Interested) changes nothing; the swarm simulator then reads
        only the rates a round uses."""
        last = self._last
        if last is None or now - last < self.STEP:
            return self._rate
        return self._rate * math.exp(-(now - last) / self.window) if self._rate else 0.0

    def _decay(self, now: float) -> None:
        """Move the state to ``now``: the rate ``rate`` reads there."""
        if self._last is None or now - self._last >= self.STEP:
            self._rate = self.rate(now)
            self._last = now
