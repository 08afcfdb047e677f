"""The fake Messages API's request limit: a token bucket, as Anthropic enforces its rate limits.

The API's buckets refill continuously rather than resetting each minute, and a per-minute limit "may be
enforced over shorter intervals" (60 a minute as about 1 a second), so short bursts get 429s even under
the per-minute figure. `RequestBucket(rpm, burst)` models that: it holds `burst` requests and refills
at `rpm / 60` a second.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta


class RequestBucket:
    def __init__(self, rpm: int, burst: int | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        if rpm < 1:
            raise ValueError(f"rpm must be at least 1, got {rpm}")
        self.rpm = rpm
        self.capacity = float(burst if burst is not None else max(1, rpm // 10))
        self.clock = clock
        self._tokens, self._at = self.capacity, clock()

    def take(self) -> bool:
        """Spend one request if the bucket has one."""
        self._refill()
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def retry_after(self) -> float:
        """Seconds until one request is available again."""
        self._refill()
        return max(0.0, (1 - self._tokens) * 60 / self.rpm)

    def headers(self) -> dict[str, str]:
        """`anthropic-ratelimit-requests-*`: the limit, what is left, and when the bucket is full again."""
        self._refill()
        full_in = (self.capacity - self._tokens) * 60 / self.rpm
        reset = (datetime.now(UTC) + timedelta(seconds=full_in)).isoformat(timespec="seconds")
        return {"anthropic-ratelimit-requests-limit": str(self.rpm),
                "anthropic-ratelimit-requests-remaining": str(math.floor(self._tokens)),
                "anthropic-ratelimit-requests-reset": reset.replace("+00:00", "Z")}

    def _refill(self) -> None:
        now = self.clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rpm / 60)
        self._at = now
