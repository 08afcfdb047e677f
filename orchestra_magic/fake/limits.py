"""The fake Messages API's rate limits: token buckets, as Anthropic enforces its rate limits.

The API's buckets refill continuously rather than resetting each minute, and a per-minute limit "may be
enforced over shorter intervals" (60 a minute as about 1 a second), so short bursts get 429s even under
the per-minute figure. `Bucket(per_minute, burst)` models that: it holds `burst` units and refills at
`per_minute / 60` a second. `Limits` holds up to three: requests (rpm), input tokens (itpm) and output
tokens (otpm).

Input tokens are counted when a request arrives (every prompt token, cache reads included: the fake
keeps one figure); output tokens when its answer is made, and a request is refused while the output
bucket is empty. (The API estimates output from `max_tokens` at the start and settles at the end; the
fake charges only the settled figure, which is what a run's pace depends on.)
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


class Bucket:
    """`per_minute` units, refilled continuously; it holds at most `burst` (default a tenth of a minute's)."""

    def __init__(self, per_minute: int, burst: int | None = None, clock: Callable[[], float] = time.monotonic,
                 unit: str = "requests") -> None:
        if per_minute < 1:
            raise ValueError(f"a {unit} limit must be at least 1 a minute, got {per_minute}")
        self.per_minute, self.unit = per_minute, unit
        self.capacity = float(burst if burst is not None else max(1, per_minute // 10))
        self.clock = clock
        self._level, self._at = self.capacity, clock()

    def take(self, amount: float = 1.0) -> bool:
        """Spend `amount` if the bucket has it. One larger than the whole bucket passes when the bucket is
        full (and leaves it in debt), so a big request is slowed, never refused forever."""
        self._refill()
        if self._level < min(amount, self.capacity):
            return False
        self._level -= amount
        return True

    def charge(self, amount: float) -> None:
        """Spend `amount` after the fact (output tokens, counted once the answer is made)."""
        self._refill()
        self._level -= amount

    def retry_after(self, amount: float = 1.0) -> float:
        """Seconds until `amount` (at most a full bucket) is available again."""
        self._refill()
        return max(0.0, (min(amount, self.capacity) - self._level) * 60 / self.per_minute)

    def headers(self, kind: str = "requests") -> dict[str, str]:
        """`anthropic-ratelimit-<kind>-*`: the limit, what is left, and when the bucket is full again."""
        self._refill()
        full_in = (self.capacity - self._level) * 60 / self.per_minute
        reset = (datetime.now(UTC) + timedelta(seconds=full_in)).isoformat(timespec="seconds")
        prefix = f"anthropic-ratelimit-{kind}"
        return {f"{prefix}-limit": str(self.per_minute), f"{prefix}-remaining": str(max(0, math.floor(self._level))),
                f"{prefix}-reset": reset.replace("+00:00", "Z")}

    def _refill(self) -> None:
        now = self.clock()
        self._level = min(self.capacity, self._level + (now - self._at) * self.per_minute / 60)
        self._at = now


RequestBucket = Bucket  # the request bucket (`--rpm`), by its old name


@dataclass(frozen=True, slots=True)
class Refusal:
    """Which limit refused a request, and how long until it would pass."""

    kind: str  # requests, input_tokens or output_tokens
    limit: int
    wait: float


class Limits:
    """The fake's buckets (any may be None: unlimited). `admit` a request's input, `settle` its output."""

    def __init__(self, requests: Bucket | None = None, input_tokens: Bucket | None = None,
                 output_tokens: Bucket | None = None) -> None:
        self.buckets = {"requests": requests, "input-tokens": input_tokens, "output-tokens": output_tokens}

    def admit(self, input_tokens: int) -> Refusal | None:
        """Take one request and its input tokens, or say which bucket is short (taking nothing)."""
        checks = (("requests", 1.0), ("input-tokens", float(input_tokens)), ("output-tokens", 1.0))
        for kind, amount in checks:
            bucket = self.buckets[kind]
            if bucket is not None and bucket.retry_after(amount) > 0:
                return Refusal(kind.replace("-", "_"), bucket.per_minute, bucket.retry_after(amount))
        for kind, amount in checks[:2]:
            if (bucket := self.buckets[kind]) is not None:
                bucket.take(amount)
        return None

    def settle(self, output_tokens: int) -> None:
        if (bucket := self.buckets["output-tokens"]) is not None:
            bucket.charge(output_tokens)

    def headers(self) -> dict[str, str]:
        return {k: v for kind, b in self.buckets.items() if b is not None for k, v in b.headers(kind).items()}

    def __bool__(self) -> bool:
        return any(b is not None for b in self.buckets.values())
