"""Adaptive rate limits: the throttle on its own, and a run against the fake's requests-per-minute limit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers import make_spec

import orchestra_magic as om
from orchestra_magic.engine.throttle import RateLimit, Throttle
from orchestra_magic.fake.limits import RequestBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_429s_halves_the_limit_once_and_answers_grow_it_back() -> None:
    async def main() -> None:
        throttle = Throttle(16)
        tokens = [await throttle.acquire() for _ in range(16)]
        for token in tokens[:10]:  # all sent before the first 429 came back: one signal
            throttle.release(token, ok=False, rate_limited=True, retry_after=0)
        assert throttle.limit == 8 and throttle.rate_limited == 10
        token = await throttle.acquire()  # started after the decrease: a new 429 halves again
        throttle.release(token, ok=False, rate_limited=True, retry_after=0)
        assert throttle.limit == 4
        for token in tokens[10:]:
            throttle.release(token, ok=True)
        assert 5 < throttle.limit < 6  # about +1 per window of answers, never past the cap

    asyncio.run(main())


def test_a_retry_after_pauses_every_new_attempt_not_only_the_refused_one() -> None:
    async def main() -> None:
        clock = Clock()
        throttle = Throttle(8, clock=clock)
        token = await throttle.acquire()
        throttle.release(token, ok=False, rate_limited=True, retry_after=30)
        waiting = asyncio.create_task(throttle.acquire())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # 30 s (by the clock) have not passed
        clock.now += 30
        throttle.release(await _other(throttle), ok=True)  # any release wakes the waiters to look again
        assert await asyncio.wait_for(waiting, 1) is not None

    asyncio.run(main())


async def _other(throttle: Throttle) -> int:
    return await throttle.acquire()


def test_an_empty_bucket_in_the_headers_spaces_starts_at_the_refill_rate() -> None:
    async def main() -> None:
        clock = Clock()
        throttle = Throttle(8, clock=clock)
        token = await throttle.acquire()
        throttle.release(token, ok=True, rate_limit=RateLimit(requests_per_minute=60, remaining=0))
        await throttle.acquire()
        second = asyncio.create_task(throttle.acquire())
        await asyncio.sleep(0.05)
        assert not second.done()  # the next start is ~1.1 s (by the clock) after the last
        clock.now += 1.2
        throttle.release(0, ok=True, rate_limit=RateLimit(60, remaining=20))  # room for a window: full speed
        await asyncio.wait_for(second, 1)
        await asyncio.wait_for(throttle.acquire(), 1)

    asyncio.run(main())


def test_a_fixed_throttle_only_caps() -> None:
    async def main() -> None:
        throttle = Throttle(4, adaptive=False)
        token = await throttle.acquire()
        throttle.release(token, ok=False, rate_limited=True, retry_after=60)
        assert throttle.limit == 4 and throttle.rate_limited == 1
        await asyncio.wait_for(throttle.acquire(), 1)  # no pause either

    asyncio.run(main())


def test_the_fakes_bucket_refills_continuously() -> None:
    clock = Clock()
    bucket = RequestBucket(60, burst=3, clock=clock)
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after() == pytest.approx(1.0)
    assert bucket.headers()["anthropic-ratelimit-requests-remaining"] == "0"
    clock.now += 0.5
    assert not bucket.take()
    clock.now += 0.5
    assert bucket.take()


def test_30_agents_against_60_requests_a_minute_all_finish_with_a_handful_of_429s(tmp_path: Path) -> None:
    """The issue's case: a limit of 60 a minute (enforced per second), 30 agents, 8 in flight."""
    provider = om.OfflineProvider(rpm_limit=60)
    spec = make_spec({"a": 9, "b": 9, "c": 9})  # 27 workers + 3 coordinators
    run = om.run(spec, provider=provider, root=tmp_path)
    assert run.status == "done" and run.state.counts["done"] == 30
    refused = int(run.agents.attempts.sum()) - 30
    assert refused <= 5, f"{refused} requests were refused with 429"


def test_the_views_say_when_the_run_waits_on_rate_limits(tmp_path: Path) -> None:
    from orchestra_magic.display.widget import header_text

    seen: list[int] = []
    run = om.run(make_spec({"a": 6}, concurrency=6), provider=om.OfflineProvider(rpm_limit=60, rpm_burst=2),
                 root=tmp_path, listeners=(lambda event, state: seen.append(state.rate_limited),))
    assert run.status == "done" and max(seen) >= 1
    waits = f"{max(seen)} rate-limit wait{'s' if max(seen) > 1 else ''}"
    assert waits == run.state.waits() and waits in header_text(run.state, now=0)


def test_a_failing_listener_does_not_leak_throttle_slots_and_hang_the_run(tmp_path: Path) -> None:
    from orchestra_magic.state.events import AgentStarted

    def listener(event: object, state: object) -> None:
        if isinstance(event, AgentStarted):
            raise RuntimeError("a broken progress view")

    provider = om.PythonProvider(lambda request: "Done.", lambda request: "Done.")

    async def main() -> om.Run:
        return await asyncio.wait_for(om.arun(make_spec({"a": 6}, concurrency=2), provider=provider,
                                              root=tmp_path, listeners=(listener,)), 30)

    run = asyncio.run(main())  # before the fix: the third agent waited forever for a slot
    assert run.state.finished == run.state.total
