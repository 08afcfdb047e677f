"""Batch mode end to end: the real SDK's Message Batches calls against the fake API over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import pytest
from helpers import make_spec, run_against

import orchestra_magic as om
from orchestra_magic.api import prepared
from orchestra_magic.engine.retry import RetryPolicy
from orchestra_magic.fake.server import SIMULATED_MARK, FakeMessagesAPI
from orchestra_magic.providers import AgentRequest, Completion, PythonProvider
from orchestra_magic.providers.anthropic.batches import BatchPolicy
from orchestra_magic.providers.anthropic.provider import AnthropicProvider

KEY = "sk-ant-test-batch-key"
FAST = BatchPolicy(quiet=0.1, first_poll=0.01, max_poll=0.05)  # the fake needs no minutes between polls
RETRY = RetryPolicy(attempts=3, base=0.01)


def provider(fake: FakeMessagesAPI, **options: Any) -> AnthropicProvider:
    return AnthropicProvider(api_key=KEY, base_url=fake.base_url, **{"batch": FAST, **options})


def run_batched(fake: FakeMessagesAPI, tmp_path: Path, spec: dict[str, Any], retry: RetryPolicy = RETRY,
                **options: Any) -> om.Run:
    """`helpers.run_against` with this module's provider: batches polled fast, `options` added."""
    return run_against(fake, tmp_path, spec, lambda _: provider(fake, **options), retry=retry)


def failing(task: str, kind: str) -> Callable[[dict[str, Any]], str | None]:
    """An `entry_error` hook: the batch entry of the worker with this task errors with `kind`."""
    return lambda params: kind if params["messages"][0]["content"].endswith(f"\n{task}") else None


async def until(condition: Callable[[], object], within: float = 10) -> None:
    for _ in range(int(within / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not reached within {within:g} s")


def test_batch_mode_sends_the_ready_workers_as_one_batch_and_writes_the_same_files(tmp_path: Path) -> None:
    fake = FakeMessagesAPI()
    spec = make_spec({"a": 3, "b": 2}, mode="batch", concurrency=2)
    result = run_batched(fake, tmp_path / "batch", spec)

    assert result.status == "done"
    first, *later = fake.batches.created
    assert len(first.requests) == 5  # every ready worker, not `concurrency` of them
    assert sorted(r["params"]["messages"][0]["content"].count("Task") for r in first.requests) == [1] * 5
    assert sum(len(b.requests) for b in later) == 2  # the coordinators, batched as well
    assert fake.requests == []  # nothing went through /v1/messages
    assert result.agents.batch.all() and (result.agents.attempts == 1).all()
    assert om.load_run(result.path).agents.batch.all()  # on disk too

    plain = run_batched(FakeMessagesAPI(), tmp_path / "plain", make_spec({"a": 3, "b": 2}))
    assert not plain.agents.batch.any()
    for worker in ("a-1", "a-2", "a-3", "b-1", "b-2"):
        assert result.output(worker) == plain.output(worker)
        assert result.output(worker).startswith(SIMULATED_MARK)
    assert result.synthesis("a") == plain.synthesis("a")
    assert result.agents.input_tokens.sum() == plain.agents.input_tokens.sum()


def test_coordinator_keys_and_long_ids_become_valid_unique_custom_ids(tmp_path: Path) -> None:
    long = "x" * 62
    spec = {"mode": "batch", "domains": [{"name": "d", "coordinator": "Synthesise.", "workers": [
        {"id": f"{long}a1", "task": "One."}, {"id": f"{long}a2", "task": "Two."}]}]}
    fake = FakeMessagesAPI()
    result = run_batched(fake, tmp_path, spec)
    assert result.status == "done"  # the fake refuses a batch whose ids are invalid or repeated
    workers, coordinator = fake.batches.created
    assert workers.custom_ids == [f"0-{long}", f"1-{long}"]
    assert coordinator.custom_ids == ["0-coordinator_d"]


@pytest.mark.parametrize("kind", ["overloaded_error", "api_error", "expired"])
def test_an_errored_or_expired_entry_is_retried_as_a_messages_call_and_ends_done(tmp_path: Path, kind: str) -> None:
    fake = FakeMessagesAPI(entry_error=failing("Task 2 of a.", kind))
    result = run_batched(fake, tmp_path, make_spec({"a": 3}, mode="batch"))

    assert result.status == "done"
    failed = [cid for cid, r in fake.batches.created[0].results.items() if r["type"] != "succeeded"]
    assert len(failed) == 1 and failed[0].endswith("-a-2")
    assert fake.batches.created[0].results[failed[0]]["type"] == ("expired" if kind == "expired" else "errored")
    retried = result.agents.set_index("agent").loc["a-2"]
    assert retried.status == "done" and retried.attempts == 2 and not retried.batch
    assert [b["messages"][0]["content"].count("Task 2 of a.") for b in fake.requests] == [1]
    others = result.agents[result.agents.agent != "a-2"]
    assert others.batch.all() and (others.attempts == 1).all()
    assert result.output("a-2").startswith(SIMULATED_MARK)


def test_an_entry_the_api_calls_invalid_fails_without_a_retry(tmp_path: Path) -> None:
    fake = FakeMessagesAPI(entry_error=failing("Task 1 of a.", "invalid_request_error"))
    result = run_batched(fake, tmp_path, make_spec({"a": 2}, mode="batch"))

    agent = result.agents.set_index("agent").loc["a-1"]
    assert agent.status == "failed" and agent.attempts == 1
    assert "invalid_request_error" in agent.error
    assert fake.requests == []
    assert result.summaries.status[0] == "done"  # the coordinator still synthesises what there is


def test_seeded_entry_errors_all_end_done_after_retries(tmp_path: Path) -> None:
    fake = FakeMessagesAPI(error_rate=0.3, seed=5, retry_after_ms=10)
    result = run_batched(fake, tmp_path, make_spec({"a": 6, "b": 6}, mode="batch"),
                         retry=RetryPolicy(attempts=8, base=0.01))

    assert result.status == "done"
    errored = sum(b.counts()["errored"] for b in fake.batches.created)
    assert errored > 0
    assert fake.batches.poll_errors > 0  # status and results calls that failed were simply made again
    assert int((result.agents.attempts > 1).sum()) == errored  # each failed entry retried, once batched
    assert int((~result.agents.batch).sum()) == errored  # ...and answered by a Messages call


def test_messages_retries_of_batch_agents_share_the_concurrency_cap(tmp_path: Path) -> None:
    in_flight, peak = 0, 0

    class Counting(AnthropicProvider):
        async def complete(self, request: AgentRequest) -> Completion:
            nonlocal in_flight, peak
            if request.mode == "batch":
                return await super().complete(request)
            in_flight += 1
            peak = max(peak, in_flight)
            try:
                return await super().complete(request)
            finally:
                in_flight -= 1

    async def main() -> om.Run:
        fake = FakeMessagesAPI(latency_ms=30, entry_error=lambda params: "api_error")
        await fake.start()
        try:
            counting = Counting(api_key=KEY, base_url=fake.base_url, batch=FAST)
            return await om.arun(make_spec({"a": 6}, mode="batch", concurrency=2), provider=counting,
                                 root=tmp_path, retry=RETRY)
        finally:
            await fake.stop()

    result = asyncio.run(main())
    workers = result.agents[result.agents.role == "worker"]
    assert (workers.status == "done").all() and not workers.batch.any()
    assert peak == 2


@pytest.mark.parametrize(("limit", "sizes"), [
    ({"max_requests": 2}, [2, 2, 1, 1]),  # 5 workers, then the coordinator
    ({"max_bytes": 1}, [1, 1, 1, 1, 1, 1]),  # every entry is over the limit on its own: one batch each
])
def test_a_batch_is_sent_at_the_apis_size_limits(tmp_path: Path, limit: dict[str, int], sizes: list[int]) -> None:
    fake = FakeMessagesAPI()
    result = run_batched(fake, tmp_path, make_spec({"a": 5}, mode="batch"), batch=BatchPolicy(
        quiet=0.1, first_poll=0.01, max_poll=0.05, **limit))
    assert result.status == "done"
    assert [len(b.requests) for b in fake.batches.created] == sizes


def test_the_attempt_timeout_does_not_end_an_agent_waiting_for_its_batch(tmp_path: Path) -> None:
    fake = FakeMessagesAPI(batch_ms=400)
    result = run_batched(fake, tmp_path, make_spec({"a": 2}, mode="batch", timeout=0.1))
    assert result.status == "done"
    assert (result.agents.attempts == 1).all() and result.agents.batch.all()


def test_stop_mid_batch_cancels_it_on_the_server_and_the_folder_resumes(tmp_path: Path) -> None:
    fake = FakeMessagesAPI(batch_ms=60_000)
    spec = make_spec({"a": 3}, mode="batch")

    async def main() -> tuple[om.Run, om.Run]:
        await fake.start()
        try:
            async with prepared(spec, provider=provider(fake), root=tmp_path) as engine:
                running = asyncio.create_task(engine.run())
                await until(lambda: fake.batches.created)
                engine.stop()
                stopped = om.Run(engine.folder.path, await running)
                assert not list((stopped.path / "workers").iterdir())  # nothing written, nothing torn
            # the provider is closed once `prepared` ends: the batch must be cancelled by then
            assert fake.batches.cancels == 1
            fake.batches.processing_ms = 0
            resumed = await om.arun(spec, provider=provider(fake), root=tmp_path, resume=stopped.path)
            return stopped, resumed
        finally:
            await fake.stop()

    stopped, resumed = asyncio.run(main())
    assert stopped.status == "cancelled"
    assert stopped.agents.set_index("agent").status.to_dict() == {
        "a-1": "cancelled", "a-2": "cancelled", "a-3": "cancelled", "coordinator:a": "cancelled"}
    first = fake.batches.created[0]
    assert first.cancel_initiated_at is not None and first.counts()["canceled"] == 3

    assert resumed.path == stopped.path and resumed.status == "done"
    assert len(fake.batches.created[1].requests) == 3
    assert resumed.agents.batch.all()


def test_polling_backs_off_from_the_first_interval_to_the_cap(tmp_path: Path) -> None:
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(seconds)

    fake = FakeMessagesAPI(batch_ms=150)
    policy = BatchPolicy(quiet=0.01, first_poll=0.01, growth=2, max_poll=0.04)
    result = run_batched(fake, tmp_path, make_spec({"a": 1}, mode="batch"), batch=policy, sleep=sleep)

    assert result.status == "done"
    # Its worker's batch ends after 150 ms, so it is polled at least 4 times: after 10, 20, 40, 40 ms.
    assert waits[:4] == [0.01, 0.02, 0.04, 0.04]
    assert set(waits) <= {0.01, 0.02, 0.04}
    # Every wait is followed by one status call; reading the results asks once more (the SDK does).
    assert fake.batches.retrieves == len(waits) + len(fake.batches.created)


def test_a_provider_without_batches_runs_batch_mode_agents_as_usual(tmp_path: Path) -> None:
    in_flight, peak = 0, 0

    async def worker(request: AgentRequest) -> str:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.001)
        in_flight -= 1
        return "Done."

    result = om.run(make_spec({"a": 8}, mode="batch", concurrency=2), provider=PythonProvider(worker),
                    root=tmp_path)
    assert result.status == "done" and peak == 2 and not result.agents.batch.any()


# The fake's batch endpoints on their own, through the SDK.

def fake_and_client(**options: Any) -> tuple[FakeMessagesAPI, Callable[[], anthropic.AsyncAnthropic]]:
    fake = FakeMessagesAPI(**options)
    return fake, lambda: anthropic.AsyncAnthropic(api_key=KEY, base_url=fake.base_url, max_retries=0)


def entry(custom_id: str, content: str = "Hello.") -> Any:
    return {"custom_id": custom_id,
            "params": {"model": "claude-fake-1", "max_tokens": 256, "messages": [{"role": "user", "content": content}]}}


@pytest.mark.parametrize(("requests", "message"), [
    ([], "requests: field required"),
    ([entry("coordinator:a")], r"requests.0.custom_id: must match"),
    ([entry("a"), entry("a")], r"requests.1.custom_id: 'a' is used twice"),
    ([{"custom_id": "a"}], r"requests.0.params: field required"),
])
def test_a_bad_batch_is_refused_naming_the_entry(requests: list[Any], message: str) -> None:
    fake, client = fake_and_client()

    async def main() -> None:
        await fake.start()
        sdk = client()
        try:
            with pytest.raises(anthropic.BadRequestError, match=message):
                await sdk.messages.batches.create(requests=requests)
        finally:
            await sdk.close()
            await fake.stop()

    asyncio.run(main())
    assert fake.batches.created == []


def test_the_fake_batch_lifecycle_speaks_the_wire_format() -> None:
    fake, client = fake_and_client(batch_ms=100)

    async def main() -> None:
        await fake.start()
        sdk = client()
        try:
            batch = await sdk.messages.batches.create(requests=[entry("one"), entry("two", "Other."), entry("bad")
                                                               | {"params": {"model": "m", "messages": []}}])
            assert batch.processing_status == "in_progress" and batch.request_counts.processing == 3
            assert batch.results_url is None and batch.ended_at is None
            with pytest.raises(anthropic.AnthropicError, match="No `results_url`"):  # the SDK's own check
                await sdk.messages.batches.results(batch.id)
            ended = batch
            for _ in range(1000):
                ended = await sdk.messages.batches.retrieve(batch.id)
                if ended.processing_status == "ended":
                    break
                await asyncio.sleep(0.01)
            assert ended.processing_status == "ended" and ended.ended_at is not None
            assert ended.request_counts.succeeded == 2 and ended.request_counts.errored == 1
            assert ended.results_url == f"{fake.base_url}/v1/messages/batches/{batch.id}/results"
            lines = {line.custom_id: line.result async for line in await sdk.messages.batches.results(batch.id)}
            assert set(lines) == {"one", "two", "bad"}
            one = lines["one"]
            assert one.type == "succeeded" and one.message.content[0].type == "text"
            assert one.message.usage.service_tier == "batch"
            bad = lines["bad"]
            assert bad.type == "errored" and bad.error.error.type == "invalid_request_error"
            with pytest.raises(anthropic.NotFoundError):
                await sdk.messages.batches.retrieve("msgbatch_nope")
        finally:
            await sdk.close()
            await fake.stop()

    asyncio.run(main())
