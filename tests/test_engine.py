"""The engine's behaviour through its public entry points, with the function-backed provider.

Every test that runs agents runs twice, on the local executor and on Dask (`on`, see conftest): the same
behaviour is promised on both. Agent functions are pickled to run on Dask, so they report what they did
through files (`Log`), never through variables they close over."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from conftest import On
from helpers import Log, make_spec

import orchestra_magic as om
from orchestra_magic.engine.attempts import AgentCalls
from orchestra_magic.engine.retry import RetryPolicy
from orchestra_magic.engine.scheduler import Engine
from orchestra_magic.errors import AgentError, TransientAgentError
from orchestra_magic.providers import AgentRequest, Completion, PythonProvider
from orchestra_magic.runfolder.folder import RunFolder
from orchestra_magic.spec.load import load_spec
from orchestra_magic.state.events import AgentStarted, Event
from orchestra_magic.state.run import RunState

LOCAL = On("local", {})  # for tests about the run folder, not about where agents run


def echo(request: AgentRequest) -> str:
    return f"Result of {request.task}\nDone. Echoed {request.agent}."


def run(spec: Any, tmp_path: Path, on: On, provider: Any = None, **kwargs: Any) -> om.Run:
    return om.run(spec, provider=provider or PythonProvider(echo), root=tmp_path / "runs", **on.options, **kwargs)


def test_a_run_writes_every_output_and_returns_only_summaries(tmp_path: Path, on: On) -> None:
    result = run(make_spec({"a": 3, "b": 2}), tmp_path, on)
    assert result.status == "done"
    assert sorted(p.name for p in (result.path / "workers").iterdir()) == [
        "a-1.md", "a-2.md", "a-3.md", "b-1.md", "b-2.md"]
    assert sorted(p.name for p in (result.path / "synthesis").iterdir()) == ["a.md", "b.md"]
    assert list(result.summaries.domain) == ["a", "b"]
    assert result.summaries.summary[0] == "3 of 3 workers in a produced results."
    assert set(result.agents.status) == {"done"}
    assert (result.path / "spec.yaml").read_text().count("task:") == 5
    manifest = json.loads((result.path / "run.json").read_text())
    assert manifest["status"] == "done" and len(manifest["agents"]) == 7


def test_coordinator_starts_as_soon_as_its_own_workers_finish(tmp_path: Path, on: On) -> None:
    log = Log(tmp_path / "log")

    async def worker(request: AgentRequest) -> str:
        if request.domain == "b":
            await log.wait_for("coordinator:a")  # b's workers are held until a's coordinator has run
        log.add(request.agent)
        return "Done. ok"

    async def coordinator(request: AgentRequest) -> str:
        log.add(request.agent)
        return "<summary>s</summary>"

    result = run(make_spec({"a": 2, "b": 2}), tmp_path, on, PythonProvider(worker, coordinator))
    assert result.status == "done"
    order = log.lines()
    assert order.index("coordinator:a") < order.index("b-1")


def test_in_flight_agents_never_exceed_the_concurrency_cap(tmp_path: Path, on: On) -> None:
    log, flying = Log(tmp_path / "log"), tmp_path / "in-flight"
    flying.mkdir()

    async def worker(request: AgentRequest) -> str:
        (flying / request.agent).mkdir()  # counted where the call runs, not where the engine thinks it does
        log.add(str(len(list(flying.iterdir()))))
        await asyncio.sleep(0.02)
        (flying / request.agent).rmdir()
        return "Done."

    run(make_spec({"a": 10, "b": 10}, concurrency=3), tmp_path, on, PythonProvider(worker))
    assert max(int(n) for n in log.lines()) == 3


def test_a_freed_slot_is_taken_by_the_next_agent_one_loop_turn_later(tmp_path: Path) -> None:
    """As with a bare semaphore: no scheduler wake-ups between one call returning and the next starting
    (with 100 calls in flight a turn of the event loop takes milliseconds, and an idle slot is time lost)."""
    turns, started, answered = 0, list[int](), list[int]()

    async def count_turns() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    async def worker(request: AgentRequest) -> str:
        started.append(turns)
        await asyncio.sleep(0)
        answered.append(turns)
        return "Done."

    async def main() -> om.Run:
        ticker = asyncio.create_task(count_turns())
        try:
            return await om.arun(make_spec({"a": 4}, concurrency=1), provider=PythonProvider(worker),
                                 root=tmp_path / "runs")
        finally:
            ticker.cancel()

    assert asyncio.run(main()).status == "done"
    assert [s - a for a, s in zip(answered, started[1:], strict=False)] == [1, 1, 1]


def test_waves_start_a_batch_only_when_the_previous_one_is_finished(tmp_path: Path, on: On) -> None:
    lines = Log(tmp_path / "log")

    async def worker(request: AgentRequest) -> str:
        lines.add(f"start {request.agent}")
        await asyncio.sleep(0.002 if request.agent.endswith("1") else 0)
        lines.add(f"end {request.agent}")
        return "Done."

    run(make_spec({"a": 5}, concurrency=2, schedule="waves"), tmp_path, on, PythonProvider(worker))
    log = [tuple(line.split()) for line in lines.lines()]
    position = {entry: i for i, entry in enumerate(log)}
    started = [agent for kind, agent in log if kind == "start"]
    waves = [started[0:2], started[2:4], started[4:]]
    assert sorted(started) == ["a-1", "a-2", "a-3", "a-4", "a-5"]
    # Waves of two: no agent of a wave starts before every agent of the one before has ended. (Within a
    # wave the order is open: on Dask one call may end before the other's task has reached a worker.)
    for earlier, later in pairwise(waves):
        assert max(position["end", agent] for agent in earlier) < min(position["start", agent] for agent in later)


def test_transient_failures_are_retried_with_the_servers_retry_after(tmp_path: Path, on: On) -> None:
    log = Log(tmp_path / "log")
    waits: list[float] = []

    def flaky(request: AgentRequest) -> str:
        if log.first(request.agent):
            raise TransientAgentError("HTTP 429 rate_limit_error", retry_after=0.25)
        return "Done."

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    spec = load_spec(make_spec({"a": 2}))
    folder = RunFolder.create(tmp_path, "r")
    provider = PythonProvider(flaky)

    async def main() -> RunState:
        async with on.started(provider) as executor:
            return await Engine(spec, provider, folder, sleep=sleep, executor=executor).run()

    state = asyncio.run(main())
    assert state.status == "done"
    assert waits == [0.25, 0.25]
    assert [state.agents[k].attempts for k in ("a-1", "a-2")] == [2, 2]


def test_backoff_grows_exponentially_with_jitter() -> None:
    import random

    policy = RetryPolicy(attempts=5, base=1.0, cap=10.0, jitter=0.5)
    rng = random.Random(1)
    delays = [policy.delay(n, None, rng) for n in (1, 2, 3, 4, 5)]
    for attempt, delay in enumerate(delays, start=1):
        full = min(10.0, 2 ** (attempt - 1))
        assert full * 0.5 <= delay <= full


def test_an_agent_that_keeps_failing_is_marked_failed_with_its_last_error(tmp_path: Path, on: On) -> None:
    def always_busy(request: AgentRequest) -> str:
        raise TransientAgentError("HTTP 529 overloaded_error")

    result = run(make_spec({"a": 1}, attempts=2), tmp_path, on, PythonProvider(always_busy),
                 retry=RetryPolicy(attempts=2, base=0.001))
    row = result.agents.set_index("agent").loc["a-1"]
    assert row.status == "failed" and row.attempts == 2
    assert "gave up after 2 attempts" in row.error and "529" in row.error
    assert result.status == "failed"


def test_a_permanent_error_is_not_retried(tmp_path: Path, on: On) -> None:
    def bad_request(request: AgentRequest) -> str:
        raise AgentError("HTTP 400 invalid_request_error: max_tokens too large")

    result = run(make_spec({"a": 1}), tmp_path, on, PythonProvider(bad_request))
    assert result.agents.set_index("agent").loc["a-1", "attempts"] == 1


def test_a_hanging_agent_times_out_and_is_retried(tmp_path: Path, on: On) -> None:
    log = Log(tmp_path / "log")

    async def hangs_once(request: AgentRequest) -> str:
        if log.first(request.agent):
            await asyncio.Event().wait()
        return "Done."

    result = run(make_spec({"a": 1}, timeout=0.5), tmp_path, on, PythonProvider(hangs_once),
                 retry=RetryPolicy(attempts=2, base=0.001))
    assert result.agents.set_index("agent").loc["a-1", "attempts"] == 2
    assert result.status == "done"


def test_a_domain_with_failed_workers_is_still_synthesised_and_says_what_is_missing(tmp_path: Path, on: On) -> None:
    log = Log(tmp_path / "log")

    def worker(request: AgentRequest) -> str:
        if request.agent == "a-2":
            raise ValueError("no data for this one")
        return "Done."

    def coordinator(request: AgentRequest) -> str:
        log.add(json.dumps({"missing": [r.agent for r in request.inputs if r.missing], "prompt": request.prompt}))
        return "<summary>partial</summary>"

    result = run(make_spec({"a": 3}), tmp_path, on, PythonProvider(worker, coordinator))
    row = result.summaries.iloc[0]
    assert (row.status, row.failed, row.missing) == ("done", 1, ["a-2"])
    (seen,) = [json.loads(line) for line in log.lines()]
    assert seen["missing"] == ["a-2"]
    assert "a-2" in seen["prompt"] and "missing: ValueError: no data for this one" in seen["prompt"]
    assert result.agents.set_index("agent").loc["a-2", "error"] == "ValueError: no data for this one"


def test_a_domain_whose_workers_all_failed_gets_no_coordinator_call(tmp_path: Path, on: On) -> None:
    log = Log(tmp_path / "log")

    def worker(request: AgentRequest) -> str:
        raise ValueError("broken")

    def coordinator(request: AgentRequest) -> str:
        log.add(request.agent)
        return "x"

    result = run(make_spec({"a": 2}), tmp_path, on, PythonProvider(worker, coordinator))
    assert log.lines() == []
    assert "all 2 workers of a failed" in result.agents.set_index("agent").loc["coordinator:a", "error"]


@pytest.mark.parametrize(
    ("text", "expected", "flagged"),
    [
        ("Synthesis.\n<summary>Short and sweet.</summary>", "Short and sweet.", False),
        ("<summary>" + "word " * 300 + "</summary>", "word " * 200, True),
        ("No marked summary here at all.", "No marked summary here at all. … [no summary section", True),
    ],
)
def test_the_parent_gets_a_bounded_summary(tmp_path: Path, on: On, text: str, expected: str, flagged: bool) -> None:
    result = run(make_spec({"a": 1}), tmp_path, on, PythonProvider(echo, lambda r: text))
    row = result.summaries.iloc[0]
    assert row.summary.startswith(expected.strip())
    assert bool(row.summary_cut) is flagged
    if flagged:
        assert "synthesis/a.md" in row.summary
    assert (result.path / "synthesis" / "a.md").read_text().strip() == text.strip()


def test_resume_skips_finished_agents_and_reruns_changed_ones(tmp_path: Path, on: On) -> None:
    calls = Log(tmp_path / "log")

    def worker(request: AgentRequest) -> str:
        calls.add(request.agent)
        return f"{request.task}\nDone."

    provider = PythonProvider(worker)
    first = run(make_spec({"a": 2, "b": 2}), tmp_path, on, provider)
    calls.clear()
    again = run(make_spec({"a": 2, "b": 2}), tmp_path, on, provider, resume=first.run_id)
    assert calls.lines() == [] and set(again.agents.status) == {"skipped"}
    assert again.path == first.path
    assert again.summaries.summary.tolist() == first.summaries.summary.tolist()

    changed = make_spec({"a": 2, "b": 2})
    changed["domains"][1]["workers"][0]["task"] = "A different task."
    third = run(changed, tmp_path, on, provider, resume=first.run_id)
    statuses = third.agents.set_index("agent").status.to_dict()
    assert calls.lines() == ["b-1"]
    assert statuses == {"a-1": "skipped", "a-2": "skipped", "b-1": "done", "b-2": "skipped",
                        "coordinator:a": "skipped", "coordinator:b": "done"}


def test_cancelling_a_run_leaves_a_folder_that_resumes_to_completion(tmp_path: Path, on: On) -> None:
    calls, root, release = Log(tmp_path / "log"), tmp_path / "runs", tmp_path / "release"

    async def worker(request: AgentRequest) -> str:
        calls.add(request.agent)
        if request.agent == "a-3" and not release.exists():
            calls.add("a-3 hangs")
            await asyncio.sleep(3600)
        return "Done."

    provider = PythonProvider(worker)  # the same function both times, so finished agents count as unchanged
    spec = make_spec({"a": 4}, concurrency=3)

    async def main() -> None:
        task = asyncio.create_task(om.arun(spec, provider=provider, root=root, **on.options))
        await calls.wait_for("a-3 hangs")
        async with asyncio.timeout(30):  # a-1 is on record as done (on Dask its answer travels back first)
            while not list(root.glob("*/workers/a-1.md")):  # noqa: ASYNC110 (a file, not an event)
                await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    (folder,) = root.iterdir()
    state = om.load_run(folder).state
    assert state.status == "cancelled"
    assert state.agents["a-3"].status == "cancelled"
    coordinator = state.agents["coordinator:a"]  # never started: ends saying why, and a resume runs it
    assert coordinator.status == "cancelled" and coordinator.error == "not started: cancelled"
    assert not (folder / "workers" / "a-3.md").exists()
    assert not list(folder.rglob("*.tmp"))

    release.touch()
    calls.clear()
    resumed = om.run(spec, provider=provider, root=root, resume=folder.name, **on.options)
    assert resumed.status == "done"
    assert "a-1" not in calls.lines() and "a-3" in calls.lines()  # finished outputs were kept, not redone


def test_stop_cancels_in_flight_agents_and_starts_no_new_ones(tmp_path: Path, on: On) -> None:
    async def worker(request: AgentRequest) -> str:
        await asyncio.sleep(30)  # still running when the run is stopped
        return "Done."

    spec, provider = load_spec(make_spec({"a": 6}, concurrency=2)), PythonProvider(worker)

    async def main() -> RunState:
        async with on.started(provider) as executor:
            engine = Engine(spec, provider, RunFolder.create(tmp_path, "r"), executor=executor)

            def stop_once_both_run(event: Event, state: RunState) -> None:
                if isinstance(event, AgentStarted) and event.agent == "a-2":
                    engine.stop()

            engine.listeners.append(stop_once_both_run)
            return await engine.run()

    state = asyncio.run(main())
    assert state.status == "cancelled" and state.reason == "stopped by the user"
    errors = Counter(a.error for a in state.agents.values())
    assert state.counts["cancelled"] == 7 and state.counts["pending"] == 0
    assert errors == {"stopped by the user": 2, "not started: stopped by the user": 5}


def test_the_journal_restores_state_newer_than_the_last_snapshot(tmp_path: Path) -> None:
    result = run(make_spec({"a": 2}), tmp_path, LOCAL)
    folder = RunFolder.open(result.path)
    before = folder.read_state()
    journal = result.path / "journal.jsonl"
    finished = {"event": "AgentFinished", "agent": "a-1", "at": 1.0, "status": "failed", "error": "late"}
    journal.write_text(json.dumps(finished) + "\n" + '{"event": "AgentFini')  # a torn last line
    after = folder.read_state()
    assert before.agents["a-1"].status == "done"
    assert after.agents["a-1"].status == "failed" and after.agents["a-1"].error == "late"


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestra_magic.runfolder import atomic as runfolder

    target = tmp_path / "x.md"

    def full_disk(src: Any, dst: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(runfolder.os, "replace", full_disk)
    with pytest.raises(OSError):
        runfolder.write_atomic(target, "text")
    assert list(tmp_path.iterdir()) == []


def test_two_runs_started_together_get_separate_folders(tmp_path: Path) -> None:
    folders = {RunFolder.create(tmp_path, "same").path for _ in range(50)}
    assert len(folders) == 50


def test_load_run_rebuilds_results_from_disk_alone(tmp_path: Path, on: On) -> None:
    result = run(make_spec({"a": 2, "b": 1}), tmp_path, on)
    loaded = om.load_run(result.path)
    assert loaded.summaries.equals(result.summaries)
    assert loaded.agents.drop(columns="seconds").equals(result.agents.drop(columns="seconds"))
    assert "Result of Task 1 of a." in loaded.output("a-1")
    assert "<summary>" in loaded.synthesis("a")


def test_a_resume_sweeps_the_temporary_files_a_killed_run_left(tmp_path: Path) -> None:
    first = run(make_spec({"a": 2}), tmp_path, LOCAL)
    left = [first.path / "workers" / ".a-1.md.0badc0de.tmp", first.path / ".run.json.12345678.tmp"]
    for path in left:  # as a process killed between writing and renaming leaves them
        path.write_text("half")
    mine = first.path / "workers" / ".notes.tmp"  # not a name of ours: left alone
    mine.write_text("kept")
    run(make_spec({"a": 2}), tmp_path, LOCAL, resume=first.run_id)
    assert not any(path.exists() for path in left) and mine.read_text() == "kept"


def test_reading_an_output_that_does_not_exist_says_why(tmp_path: Path) -> None:
    def worker(request: AgentRequest) -> str:
        if request.agent == "a-2":
            raise ValueError("no data for this one")
        return "Done."

    result = run(make_spec({"a": 3, "b": 1}, attempts=1), tmp_path, LOCAL, PythonProvider(worker))
    with pytest.raises(om.UsageError, match=r"has no worker 'a-4'; did you mean 'a-3'\?"):
        result.output("a-4")
    with pytest.raises(om.UsageError, match=r"has no domain 'pricing'; its domains are a, b$"):
        result.synthesis("pricing")
    with pytest.raises(om.UsageError, match=r"worker 'a-2' .* no output \(failed: ValueError: no data for this one\)"):
        result.output("a-2")
    assert result.output("a-1").strip() == "Done." and "<summary>" in result.synthesis("a")


def test_the_blocking_form_works_inside_a_running_event_loop(tmp_path: Path, on: On) -> None:
    async def cell() -> str:
        return run(make_spec({"a": 1}), tmp_path, on).status  # as in a notebook cell

    assert asyncio.run(cell()) == "done"


def test_completion_objects_carry_token_usage(tmp_path: Path, on: On) -> None:
    def answer(request: AgentRequest) -> Completion:
        return Completion("Done. <summary>s</summary>", 10, 5)

    result = run(make_spec({"a": 1}), tmp_path, on, PythonProvider(answer, answer))
    assert result.summaries.input_tokens[0] == 20 and result.summaries.output_tokens[0] == 10


def test_the_engine_imports_no_notebook_widget_or_sdk_code() -> None:
    code = ("import sys, orchestra_magic.api, orchestra_magic.engine.scheduler, orchestra_magic.results; "
            "bad = [m for m in ('IPython', 'ipywidgets', 'ipykernel', 'anthropic', 'pandas', 'aiohttp', 'distributed') "
            "if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_run_folder_in_use_cannot_be_resumed_by_a_second_run(tmp_path: Path) -> None:
    first = run(make_spec({"a": 1}), tmp_path, LOCAL)
    holder = RunFolder.open(first.path)
    holder.lock()
    try:
        with pytest.raises(om.RunFolderError, match="is in use by another run"):
            run(make_spec({"a": 1}), tmp_path, LOCAL, resume=first.run_id)
    finally:
        holder.unlock()
    assert run(make_spec({"a": 1}), tmp_path, LOCAL, resume=first.run_id).status == "done"


def test_a_finished_resume_leaves_the_folder_free(tmp_path: Path) -> None:
    first = run(make_spec({"a": 1}), tmp_path, LOCAL)
    run(make_spec({"a": 1}), tmp_path, LOCAL, resume=first.run_id)
    other = RunFolder.open(first.path)
    other.lock()  # would raise if the resume had kept its claim
    other.unlock()


def test_a_full_disk_fails_the_agent_with_a_clear_error_and_leaves_no_partial_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on: On) -> None:
    from orchestra_magic.runfolder import folder as runfolder

    real_replace = runfolder.os.replace

    def replace(src: Any, dst: Any) -> None:
        if str(dst).endswith("a-2.md"):
            raise OSError(28, "No space left on device", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(runfolder.os, "replace", replace)
    result = run(make_spec({"a": 3}), tmp_path, on)
    agents = result.agents.set_index("agent")
    assert agents.loc["a-2", "status"] == "failed"
    assert agents.loc["a-2", "error"].startswith("file error: No space left on device")
    assert agents.loc["coordinator:a", "status"] == "done"  # the domain goes on without it
    assert not list(result.path.rglob("*.tmp")) and not (result.path / "workers" / "a-2.md").exists()


def test_a_bug_in_the_run_stops_it_cleanly_and_propagates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          on: On) -> None:
    def broken(self: Any, *args: Any) -> None:
        raise RuntimeError("bug in the engine")

    monkeypatch.setattr(AgentCalls, "_succeed", broken)
    with pytest.raises(RuntimeError, match="bug in the engine"):
        run(make_spec({"a": 3}), tmp_path, on)
    (folder,) = (tmp_path / "runs").iterdir()
    state = om.load_run(folder).state
    assert state.status == "cancelled" and "bug in the engine" in state.reason


@pytest.mark.parametrize("entry", ["run", "arun"])
def test_sync_agents_get_a_thread_each_up_to_the_concurrency(tmp_path: Path, entry: str) -> None:
    # 40 blocking functions that can only all return together: more than Python's default pool
    # (at most 32 threads, 6 on this machine) could hold at once, on `om.run`'s loop or the caller's.
    barrier = threading.Barrier(40, timeout=20)

    def worker(request: AgentRequest) -> str:
        barrier.wait()
        return "Done."

    spec, provider = make_spec({"a": 40}, concurrency=40), PythonProvider(worker)
    if entry == "run":
        result = run(spec, tmp_path, LOCAL, provider)
    else:
        result = asyncio.run(om.arun(spec, provider=provider, root=tmp_path / "runs"))
    assert result.status == "done", result.agents.error.iloc[0]


def test_a_sync_function_stuck_after_its_timeout_does_not_keep_the_process_alive(tmp_path: Path) -> None:
    script = """
import threading, orchestra_magic as om
def stuck(request):
    threading.Event().wait()  # never returns: Python cannot kill a thread
run = om.run({"timeout": 0.2, "attempts": 1, "domains": [{"name": "a", "coordinator": "c",
             "workers": [{"task": "t"}]}]}, provider=om.PythonProvider(stuck), root="runs")
print(run.agents.status[0], run.agents.error[0])
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60)  # with a pool's threads it would wait for `stuck` forever
    assert done.returncode == 0, done.stderr
    assert done.stdout == "failed gave up after 1 attempt; last error: no answer within the 0.2 s timeout\n"


def test_the_run_reports_its_context_economy(tmp_path: Path, on: On) -> None:
    def worker(request: AgentRequest) -> Completion:
        return Completion("x " * 2000 + "\nDone.", 100, 1000)

    def coordinator(request: AgentRequest) -> Completion:
        return Completion("A long synthesis. " * 100 + "<summary>" + "word " * 40 + "</summary>", 5000, 800)

    result = run(make_spec({"a": 5, "b": 5}), tmp_path, on, PythonProvider(worker, coordinator))
    state = result.state
    assert state.output_tokens == 10 * 1000 + 2 * 800
    assert state.parent_tokens == 99  # two 40-word summaries of 199 characters each
    assert state.economy() == "the parent holds ~99 tokens of summaries for 11,600 written by the agents (1:117)"


def test_a_resume_stopped_early_keeps_the_outputs_it_had_not_reached_yet(tmp_path: Path) -> None:
    calls: list[str] = []
    started, release = threading.Event(), threading.Event()

    def worker(request: AgentRequest) -> str:
        calls.append(request.agent)
        if "changed" in request.task:
            started.set()
            release.wait(30)  # holds its slot until the run has been stopped
        return "Done."

    spec = make_spec({"a": 4}, concurrency=1)
    provider = PythonProvider(worker, lambda request: "Done.")
    first = om.run(spec, provider=provider, root=tmp_path)
    workers = spec["domains"][0]["workers"]
    changed = {**spec, "domains": [{**spec["domains"][0], "workers": [{"task": "changed"}, *workers[1:]]}]}
    resumed = om.start(changed, provider=provider, root=tmp_path, resume=first.run_id)
    try:
        assert started.wait(30)
        resumed.stop()
        resumed.wait()
    finally:
        release.set()
    states = {a.agent: (a.status, a.error) for a in resumed.state.agents.values()}
    assert states["a-1"] == ("cancelled", "stopped by the user")
    assert {states[f"a-{i}"][0] for i in (2, 3, 4)} == {"done"}  # not reached: kept as recorded
    calls.clear()
    again = om.run(spec, provider=provider, root=tmp_path, resume=first.run_id)
    assert again.status == "done" and calls == ["a-1"]  # only the agent whose task changed back runs
