"""Adaptive rate limiting: how many API calls a run keeps in flight, and when the next may start.

Every attempt passes through one `Throttle`. It keeps an in-flight limit that adapts as TCP's congestion
window does (additive increase, multiplicative decrease): each answer grows it by about one per window,
each rate-limit or overload answer (429, 529) halves it — once per episode, so a burst of 429s that were
all sent before the first came back counts as one signal, not twenty. A 429's `retry-after` pauses
every new attempt, not only the one that got it, so a limited API is not hammered by the others. And the
rate-limit headers of ordinary answers are read, so the run slows before the server refuses it:
- the request bucket (`anthropic-ratelimit-requests-*`): when it could not take a window of requests,
  starts are spaced at its refill rate;
- the input- and output-token buckets (`anthropic-ratelimit-{input,output}-tokens-*`), the limits users
  hit most: the throttle keeps a picture of each (the level the last answer gave, refilled at the
  limit's rate, less what was sent since) and lets an attempt start only when each bucket holds what
  it will take: its prompt (estimated from its length) and the output a request has been writing.
The attempt waits for whichever bucket is closest to empty for it. `-reset` is not needed: the buckets
refill continuously at the per-minute limit.

Every wait here is bounded by `max_wait` (the spec's key): a server that asks for a day's pause gets at
most that, and the agent it refused fails with the reason (the engine's `RetryPolicy` decides that).
Time and sleep are injectable, so a test of a day-long `retry-after` takes milliseconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from ..providers.base import Bucket, RateLimit
from ..spec.model import DEFAULT_MAX_WAIT

DEFAULT_PAUSE = 1.0  # when a 429 or 529 names no retry-after
MARGIN = 0.9  # pace at 90% of a refill rate, so a little jitter does not land a request on an empty bucket


class TokenPicture:
    """The throttle's picture of one token bucket: the level an answer gave, refilled since at the limit's
    rate (up to the most the bucket has been seen to hold), less the tokens of attempts started since."""

    __slots__ = ("at", "capacity", "level", "per_second")

    def __init__(self) -> None:
        self.per_second, self.capacity, self.level, self.at = 0.0, 0.0, 0.0, 0.0

    def see(self, bucket: Bucket, now: float) -> None:
        self.per_second = MARGIN * bucket.limit / 60
        self.capacity = max(self.capacity, float(bucket.remaining))
        self.level, self.at = float(bucket.remaining), now

    def wait(self, need: float, now: float) -> float:
        """Seconds until the bucket holds `need` (or is full, for more than it holds); 0 when it does."""
        if self.per_second <= 0:
            return 0.0
        need = min(need, self.capacity)
        level = min(self.capacity, self.level + (now - self.at) * self.per_second)
        return max(0.0, (need - level) / self.per_second)

    def spend(self, need: float, now: float) -> None:
        if self.per_second > 0:
            self.level = min(self.capacity, self.level + (now - self.at) * self.per_second) - need
            self.at = now


class Throttle:
    """The gate every attempt passes: `token = await acquire()`, then exactly one `release(token, ...)`."""

    def __init__(self, cap: int, *, adaptive: bool = True, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 max_wait: float = DEFAULT_MAX_WAIT) -> None:
        self.cap, self.adaptive = cap, adaptive  # not adaptive: a fixed cap, as most fan-out code has
        self.limit = float(cap)  # the adaptive in-flight limit, 1..cap
        self.in_flight = 0
        self.rate_limited = 0  # how many 429/529 answers were seen
        self.clock, self.sleep = clock, sleep
        self.max_wait = max_wait  # the longest a pause or the spacing of starts may be
        self._resume_at = 0.0  # no attempt starts before this (a server's retry-after)
        self._interval = 0.0  # seconds between starts while the server's bucket is empty
        self._next_start = 0.0
        self._episode = 0  # bumped at each decrease; attempts started before it do not decrease again
        self._tokens = (TokenPicture(), TokenPicture())  # the input- and output-token buckets
        self._output = 0.0  # the output tokens an answer has been writing (a moving average)
        self._token_headers = False  # an answer has given a token bucket
        self._changed = asyncio.Event()  # set (and replaced) whenever a waiter may now start

    async def acquire(self, input_tokens: int = 0) -> int:
        """Wait until the limit, a pause and the pacing all allow one more attempt, whose prompt is about
        `input_tokens` long; returns a token."""
        while True:
            now = self.clock()
            wait = max(self._resume_at, self._next_start) - now
            if self._token_headers:  # only once an answer has given a token bucket: the hot path stays short
                wait = max(wait, self._tokens[0].wait(input_tokens, now), self._tokens[1].wait(self._output, now))
            if wait <= 0 and self.in_flight < int(self.limit):
                break
            await self._until_changed(wait)
        self.in_flight += 1
        self._next_start = now + self._interval
        if self._token_headers:
            self._tokens[0].spend(input_tokens, now)
            self._tokens[1].spend(self._output, now)
        return self._episode

    async def _until_changed(self, wait: float) -> None:
        """Until something changes (an attempt ends) or, while paused, `wait` seconds pass (by the
        injected `sleep`, so a test of a long pause takes no time)."""
        if wait <= 0:
            await self._changed.wait()
            return
        timer, changed = asyncio.ensure_future(self.sleep(wait)), asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait((timer, changed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            changed.cancel()

    def release(self, token: int, *, ok: bool, rate_limited: bool = False, retry_after: float | None = None,
                rate_limit: RateLimit | None = None, used: tuple[int, int] | None = None) -> None:
        """Report how the attempt went: answered (`ok`), refused for rate or load (`rate_limited`), or
        failed otherwise (neither: the limit stays as it is). `used`: the answer's input and output
        tokens (the output ones estimate what the next attempts will write)."""
        self.in_flight -= 1
        if not self.adaptive:
            self.rate_limited += rate_limited
            self._notify()
            return
        if ok:
            self.limit = min(float(self.cap), self.limit + 1.0 / self.limit)
        if rate_limited:
            self.rate_limited += 1
            pause = min(retry_after or DEFAULT_PAUSE, self.max_wait)
            self._resume_at = max(self._resume_at, self.clock() + pause)
            if token == self._episode:
                self.limit = max(1.0, self.limit / 2)
                self._episode += 1
        if used is not None and self._token_headers:
            self._output = float(used[1]) if self._output == 0 else 0.7 * self._output + 0.3 * used[1]
        if rate_limit is not None:
            self._pace(rate_limit)
        self._notify()

    def _pace(self, rate_limit: RateLimit) -> None:
        """Space starts at the refill rate while the request bucket could not take a full window of
        requests (back to full speed once it could); take the token buckets' levels as they are now."""
        if rate_limit.requests_per_minute:
            empty = rate_limit.remaining < max(self.limit, self.in_flight + 1)
            self._interval = min(60.0 / (MARGIN * rate_limit.requests_per_minute), self.max_wait) if empty else 0.0
        if rate_limit.input_tokens is None and rate_limit.output_tokens is None:
            return
        self._token_headers, now = True, self.clock()
        for picture, bucket in zip(self._tokens, (rate_limit.input_tokens, rate_limit.output_tokens), strict=True):
            if bucket is not None:
                picture.see(bucket, now)

    def _notify(self) -> None:
        self._changed.set()  # wakes every waiter; each checks again
        self._changed = asyncio.Event()
