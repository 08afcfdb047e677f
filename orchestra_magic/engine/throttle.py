"""Adaptive rate limiting: how many API calls a run keeps in flight, and when the next may start.

Every attempt passes through one `Throttle`. It keeps an in-flight limit that adapts as TCP's congestion
window does (additive increase, multiplicative decrease): each answer grows it by about one per window,
each rate-limit or overload answer (429, 529) halves it — once per episode, so a burst of 429s that were
all sent before the first came back counts as one signal, not twenty. A 429's `retry-after` pauses
every new attempt, not only the one that got it, so a limited API is not hammered by the others. And the
rate-limit headers of ordinary answers are read: when the server says its request bucket is empty, new
attempts are spaced at its refill rate instead of being sent to collect 429s.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_PAUSE = 1.0  # when a 429 or 529 names no retry-after


@dataclass(frozen=True, slots=True)
class RateLimit:
    """What an answer's `anthropic-ratelimit-requests-*` headers said: the per-minute limit and what is
    left of it now."""

    requests_per_minute: int
    remaining: int


class Throttle:
    """The gate every attempt passes: `token = await acquire()`, then exactly one `release(token, ...)`."""

    def __init__(self, cap: int, *, adaptive: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.cap, self.adaptive = cap, adaptive  # not adaptive: a fixed cap, as most fan-out code has
        self.limit = float(cap)  # the adaptive in-flight limit, 1..cap
        self.in_flight = 0
        self.rate_limited = 0  # how many 429/529 answers were seen
        self.clock = clock
        self._resume_at = 0.0  # no attempt starts before this (a server's retry-after)
        self._interval = 0.0  # seconds between starts while the server's bucket is empty
        self._next_start = 0.0
        self._episode = 0  # bumped at each decrease; attempts started before it do not decrease again
        self._changed = asyncio.Event()  # set (and replaced) whenever a waiter may now start

    async def acquire(self) -> int:
        """Wait until the limit, a pause and the pacing all allow one more attempt; returns a token."""
        while True:
            wait = max(self._resume_at, self._next_start) - self.clock()
            if wait <= 0 and self.in_flight < int(self.limit):
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), wait if wait > 0 else None)
        self.in_flight += 1
        self._next_start = self.clock() + self._interval
        return self._episode

    def release(self, token: int, *, ok: bool, rate_limited: bool = False, retry_after: float | None = None,
                rate_limit: RateLimit | None = None) -> None:
        """Report how the attempt went: answered (`ok`), refused for rate or load (`rate_limited`), or
        failed otherwise (neither: the limit stays as it is)."""
        self.in_flight -= 1
        if not self.adaptive:
            self.rate_limited += rate_limited
            self._notify()
            return
        if ok:
            self.limit = min(float(self.cap), self.limit + 1.0 / self.limit)
        if rate_limited:
            self.rate_limited += 1
            self._resume_at = max(self._resume_at, self.clock() + (retry_after or DEFAULT_PAUSE))
            if token == self._episode:
                self.limit = max(1.0, self.limit / 2)
                self._episode += 1
        if rate_limit is not None:
            self._pace(rate_limit)
        self._notify()

    def _pace(self, rate_limit: RateLimit) -> None:
        """Space starts at the refill rate while the bucket could not take a full window of requests; go
        back to full speed once it could."""
        empty = rate_limit.remaining < max(self.limit, self.in_flight + 1)
        # 10% slower than the refill, so a little network jitter does not land a request on an empty bucket.
        self._interval = 66.0 / max(1, rate_limit.requests_per_minute) if empty else 0.0

    def _notify(self) -> None:
        self._changed.set()  # wakes every waiter; each checks again
        self._changed = asyncio.Event()
