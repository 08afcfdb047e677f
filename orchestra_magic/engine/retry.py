"""Retries live in one layer, described by one small policy value: how long to wait before the next
attempt of an agent, and when a server's requested wait is too long to wait at all."""

from __future__ import annotations

import random
from dataclasses import dataclass

from ..spec.model import DEFAULT_MAX_WAIT


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, up to `cap`; a server's `retry-after` is honoured as given. No wait
    is longer than `max_wait` (the spec's key, which the engine's default policy takes): a backoff is
    shortened to it, and a `retry-after` past it fails the agent (`too_long`) rather than hang the run."""

    attempts: int = 3
    base: float = 1.0
    cap: float = 60.0
    jitter: float = 0.5
    rate_limit_retries: int = 10  # 429/529 answers are waited out apart from `attempts`, up to this many
    max_wait: float = DEFAULT_MAX_WAIT

    def delay(self, attempt: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_wait)
        backoff = min(self.cap, self.max_wait, self.base * 2.0 ** (attempt - 1))
        return backoff * (1 - self.jitter * rng.random())

    def too_long(self, retry_after: float | None) -> str:
        """Why a server's requested wait will not be waited ("" when it will)."""
        if retry_after is None or retry_after <= self.max_wait:
            return ""
        return (f"the API asked to wait {retry_after:,.0f} s before trying again (retry-after), longer than "
                f"max_wait ({self.max_wait:,.0f} s); raise max_wait in the spec to wait that long, or resume later")
