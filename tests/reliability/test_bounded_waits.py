"""Waits are bounded: no `retry-after`, backoff or run-wide pause is longer than the spec's `max_wait`;
a server that asks for more fails the agent it refused, with the reason, instead of pausing the run.

The engine runs the real SDK against the fake Messages API; its clock and sleep are a fake pair, so a
day-long `retry-after` costs no time (and a test of today's code would hang, not pass: hence the timeout)."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from helpers import make_spec

from orchestra_magic.engine.executors import LocalExecutor
from orchestra_magic.engine.retry import RetryPolicy
from orchestra_magic.engine.scheduler import Engine
from orchestra_magic.fake.server import FakeMessagesAPI
from orchestra_magic.providers.anthropic.provider import AnthropicProvider
from orchestra_magic.runfolder.folder import RunFolder
from orchestra_magic.spec.load import load_spec
from orchestra_magic.spec.model import DEFAULT_MAX_WAIT
from orchestra_magic.state.run import RunState

DAY_MS = 86_400_000


class FakeTime:
    """A clock that only sleeping moves; records every wait asked for."""

    def __init__(self) -> None:
        self.now, self.waits = 1_000.0, list[float]()

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def run_with_fake_time(tmp_path: Path, fake: FakeMessagesAPI, spec: dict[str, object], time: FakeTime) -> RunState:
    async def main() -> RunState:
        provider = AnthropicProvider(api_key="sk-test", base_url=await fake.start())
        await provider.start()
        try:
            engine = Engine(load_spec(spec), provider, RunFolder.create(tmp_path, "waits"), clock=time.clock,
                            sleep=time.sleep, executor=LocalExecutor(provider))
            async with asyncio.timeout(20):  # today's throttle paused for the whole day
                return await engine.run()
        finally:
            await provider.close()
            await fake.stop()

    return asyncio.run(main())


def test_a_day_long_retry_after_fails_the_agents_at_max_wait_instead_of_pausing_the_run(tmp_path: Path) -> None:
    time = FakeTime()
    fake = FakeMessagesAPI(fault_rates={"rate_limit": 1.0}, retry_after_ms=DAY_MS)
    state = run_with_fake_time(tmp_path, fake, make_spec({"d": 3}, concurrency=2, max_wait=120), time)
    assert state.status == "failed"
    for worker in ("d-1", "d-2", "d-3"):
        agent = state.agents[worker]
        assert agent.status == "failed" and agent.attempts == 1
        assert agent.error.startswith("gave up after 1 attempt: the API asked to wait 86,400 s before trying again "
                                      "(retry-after), longer than max_wait (120 s)")
    assert time.waits and max(time.waits) <= 120  # the third worker waited out the run-wide pause, capped
    assert time.now - 1_000.0 <= 2 * 120


@pytest.mark.parametrize(("retry_after_ms", "max_wait", "waited"), [
    (60_000, 120, 60.0),   # within max_wait: honoured as given (it used to be cut to 60 s whatever it was)
    (90_000, 120, 90.0),
])
def test_a_retry_after_within_max_wait_is_waited_out_as_given(
        tmp_path: Path, retry_after_ms: int, max_wait: float, waited: float) -> None:
    time = FakeTime()
    fake = FakeMessagesAPI(fault_rates={"rate_limit": 1.0}, retry_after_ms=retry_after_ms)
    state = run_with_fake_time(tmp_path, fake, make_spec({"d": 1}, max_wait=max_wait), time)
    worker = state.agents["d-1"]
    assert worker.attempts == 11 and worker.error.startswith("gave up after 11 attempts")  # 10 refusals waited out
    assert set(time.waits) == {waited}


def test_a_backoff_is_never_longer_than_max_wait_and_the_default_is_minutes() -> None:
    policy = RetryPolicy(base=1.0, cap=60.0, max_wait=2.5)
    rng = random.Random(0)
    assert max(policy.delay(attempt, None, rng) for attempt in range(1, 12)) <= 2.5
    assert policy.delay(1, 2.0, rng) == 2.0 and policy.too_long(2.0) == ""
    assert "longer than max_wait (2 s)" in RetryPolicy(max_wait=2).too_long(3.0)
    assert 60 <= DEFAULT_MAX_WAIT <= 600 and load_spec(make_spec({"d": 1})).max_wait == DEFAULT_MAX_WAIT
