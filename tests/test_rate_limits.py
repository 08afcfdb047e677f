"""Adaptive rate limits: the throttle on its own, and a run against the fake's requests-per-minute limit."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest
from helpers import make_spec

import orchestra_magic as om
from orchestra_magic.api import prepared
from orchestra_magic.engine.retry import RetryPolicy
from orchestra_magic.engine.throttle import Throttle
from orchestra_magic.fake.limits import Bucket as FakeBucket
from orchestra_magic.fake.limits import Limits, RequestBucket
from orchestra_magic.providers.base import Bucket, RateLimit


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


def test_30_agents_against_a_requests_a_minute_limit_all_finish_with_a_handful_of_429s(tmp_path: Path) -> None:
    """The issue's case ten times faster: 600 a minute from a bucket of 6 (the issue's 60 a minute, enforced
    per second, has the same bucket and takes 30 s: `python benchmarks/rate_limits.py`), 30 agents, 8 in
    flight. A throttle that only caps gets over a hundred 429s here."""
    provider = om.OfflineProvider(rpm_limit=600, rpm_burst=6)
    spec = make_spec({"a": 9, "b": 9, "c": 9}, fan_in=9)  # 27 workers + 3 coordinators, no tree
    run = om.run(spec, provider=provider, root=tmp_path)
    assert run.status == "done" and run.state.counts["done"] == 30
    refused = int(run.agents.attempts.sum()) - 30
    assert refused <= 5, f"{refused} requests were refused with 429"


def test_the_views_say_when_the_run_waits_on_rate_limits(tmp_path: Path) -> None:
    from orchestra_magic.display.text import status_line

    seen: list[int] = []
    run = om.run(make_spec({"a": 6}, concurrency=6), provider=om.OfflineProvider(rpm_limit=600, rpm_burst=2),
                 root=tmp_path, listeners=(lambda event, state: seen.append(state.rate_limited),))
    assert run.status == "done" and max(seen) >= 1
    waits = f"{max(seen)} rate-limit wait{'s' if max(seen) > 1 else ''}"
    assert waits == run.state.waits() and waits in status_line(run.state, now=0)


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


def test_an_input_token_bucket_short_of_a_prompt_holds_the_attempt_until_it_refills() -> None:
    async def main() -> None:
        clock = Clock()
        throttle = Throttle(8, clock=clock)
        token, spare = await throttle.acquire(100), await throttle.acquire()
        # 600 a minute is 9 a second at the 90% margin; 100 tokens are left
        throttle.release(token, ok=True, rate_limit=RateLimit(input_tokens=Bucket(600, remaining=100)))
        await asyncio.wait_for(throttle.acquire(100), 1)  # what is left covers this prompt
        waiting = asyncio.create_task(throttle.acquire(90))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # the bucket is empty: 90 tokens take 10 s to come back
        clock.now += 10.01
        throttle.release(spare, ok=True)  # any release wakes the waiters to look again
        await asyncio.wait_for(waiting, 1)

    asyncio.run(main())


def test_the_output_bucket_holds_starts_by_what_answers_have_been_writing() -> None:
    async def main() -> None:
        clock = Clock()
        throttle = Throttle(8, clock=clock)
        first, token, spare = await throttle.acquire(), await throttle.acquire(), await throttle.acquire()
        throttle.release(first, ok=True, rate_limit=RateLimit(output_tokens=Bucket(6000, remaining=1000)))
        throttle.release(token, ok=True, used=(10, 300),
                         rate_limit=RateLimit(output_tokens=Bucket(6000, remaining=200)))
        waiting = asyncio.create_task(throttle.acquire())  # expects ~300 output tokens; 200 are left
        await asyncio.sleep(0.05)
        assert not waiting.done()
        clock.now += 100 / 90 + 0.01  # 6,000 a minute at 90%: 90 a second
        throttle.release(spare, ok=True)
        await asyncio.wait_for(waiting, 1)

    asyncio.run(main())


def test_the_fakes_token_limits_refuse_past_the_bucket_and_charge_output_after() -> None:
    clock = Clock()
    limits = Limits(None, FakeBucket(600, burst=100, clock=clock), FakeBucket(60, burst=50, clock=clock))
    assert limits.admit(80) is None
    refused = limits.admit(80)
    assert refused is not None and refused.kind == "input_tokens" and refused.wait == pytest.approx(6.0)
    limits.settle(60)  # the output bucket is in debt: the next request waits for it
    clock.now += 6.0
    refused = limits.admit(80)
    assert refused is not None and refused.kind == "output_tokens"
    headers = limits.headers()
    assert headers["anthropic-ratelimit-input-tokens-limit"] == "600"
    assert headers["anthropic-ratelimit-output-tokens-remaining"] == "0"


class RequestPacing(Throttle):
    """The throttle before token pacing: it reads only the request bucket's headers."""

    def _pace(self, rate_limit: RateLimit) -> None:
        super()._pace(dataclasses.replace(rate_limit, input_tokens=None, output_tokens=None))


async def _refusals(throttle: type[Throttle], root: Path) -> int:
    # 27 workers + 3 coordinators, 6 in flight: the first wave leaves before any header tells the bucket's
    # size (its refusals, 3 of 6 here, are the same for both throttles); what follows is what pacing decides
    spec = make_spec({"a": 9, "b": 9, "c": 9}, fan_in=9, concurrency=6)
    provider = om.OfflineProvider(itpm_limit=300_000, itpm_burst=1_200)
    patient = RetryPolicy(rate_limit_retries=1_000)  # the count of 429s is the measure, not who gives up first
    async with prepared(spec, provider=provider, root=root, retry=patient) as engine:
        engine.throttle = throttle(engine.concurrency)
        state = await engine.run()
    assert state.counts["done"] == 30
    return engine.throttle.rate_limited


def test_30_agents_against_an_input_token_limit_get_a_handful_of_429s_where_request_pacing_gets_many(
        tmp_path: Path) -> None:
    paced = asyncio.run(_refusals(Throttle, tmp_path / "tokens"))
    unpaced = asyncio.run(_refusals(RequestPacing, tmp_path / "requests"))
    assert paced <= 5 and unpaced > 2 * max(paced, 1), (paced, unpaced)
