"""What a user meets from Python: resuming with nothing but the run id, keywords checked at the call,
and a run's numbers (seconds, starts, resumes, cost) right across sessions."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
from helpers import make_spec

import orchestra_magic as om
from orchestra_magic.pricing import dollars

SPEC = """name: path
budget_usd: BUDGET
concurrency: 1
domains:
  - name: a
    coordinator: Sum up what was found about {{ topic }}.
    workers:
      - for_each: "{{ range(n) | list }}"
        task: "Finding {{ item }} about {{ topic }}"
"""
STOPS = SPEC.replace("BUDGET", "0.000001")  # the first answer spends it all: the run stops
FINISHES = SPEC.replace("BUDGET", "5")


def stopped_run(root: Path) -> om.Run:
    run = om.run(STOPS, provider="offline", variables={"n": 3, "topic": "caching", "unused": object()}, root=root)
    assert run.status == "cancelled"
    return run


def test_the_run_folder_records_how_it_was_run_and_never_a_key(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-never-on-disk")
    run = stopped_run(tmp_path)
    record = json.loads((run.path / "options.json").read_text())
    assert record["provider"] == "offline"
    assert record["variables"] == {"n": 3, "topic": "caching"}  # what the templates named, not the rest
    assert record["needed_again"] == {}
    assert "sk-ant" not in "".join(p.read_text() for p in run.path.rglob("*") if p.is_file())


def test_a_resume_given_the_spec_again_is_an_edit_and_reuses_the_recorded_options(tmp_path: Path) -> None:
    first = stopped_run(tmp_path)
    again = om.run(FINISHES, resume=first.run_id, root=tmp_path)  # no provider, no variables: recorded
    assert (again.run_id, again.status) == (first.run_id, "done")
    assert again.state.provider == "offline"
    assert "Finding 2 about caching" in (again.path / "spec.yaml").read_text()


def test_a_provider_object_cannot_be_recorded_and_a_resume_without_it_says_so(tmp_path: Path) -> None:
    python = om.PythonProvider(lambda request: "A finding.\nDone.")
    first = om.run(FINISHES, provider=python, variables={"n": 2, "topic": "t"}, root=tmp_path)
    assert json.loads((first.path / "options.json").read_text())["needed_again"] == {
        "provider": "a PythonProvider object"}
    with pytest.raises(om.ConfigError, match="ran on a PythonProvider object, which a run folder cannot record; "
                                             "pass it again"):
        om.run(resume=first.run_id, root=tmp_path)
    assert om.run(resume=first.run_id, root=tmp_path, provider=python).state.counts["skipped"] == 3


@pytest.mark.parametrize(("call", "meant"), [(om.run, "provider"), (om.start, "provider")])
def test_a_misspelt_keyword_is_named_at_the_call_with_the_one_meant(call: object, meant: str) -> None:
    with pytest.raises(TypeError, match=f"got an unexpected keyword argument 'provdier'; did you mean '{meant}'"):
        call(FINISHES, provdier="offline")  # type: ignore[operator]


def test_a_misspelt_keyword_of_arun_is_named_too() -> None:
    import asyncio

    with pytest.raises(TypeError, match="arun\\(\\) got an unexpected keyword argument 'concurency'; did you mean"):
        asyncio.run(om.arun(FINISHES, concurency=2))  # type: ignore[call-arg]


def test_agent_seconds_are_their_attempts_own_time_over_every_session(tmp_path: Path) -> None:
    first = stopped_run(tmp_path)
    before = first.agents.set_index("agent").seconds
    time.sleep(0.2)  # the time between the sessions is not the agents'
    again = om.run(FINISHES, resume=first.run_id, root=tmp_path, provider="offline",
                   variables={"n": 3, "topic": "caching"})
    after = again.agents.set_index("agent").seconds
    kept = before.dropna().index  # the agent that finished before the stop, skipped now
    assert len(kept) == 1 and after[kept].tolist() == before[kept].tolist()
    assert (after < 0.2).all()


def test_a_resumed_run_keeps_its_first_start_and_counts_its_sessions(tmp_path: Path) -> None:
    first = stopped_run(tmp_path)
    listed = om.list_runs(tmp_path).iloc[0]
    assert (listed.status, listed.resumes, listed.cancelled) == ("stopped", 0, 3)
    om.run(FINISHES, resume=first.run_id, root=tmp_path)
    listed = om.list_runs(tmp_path).iloc[0]
    assert (listed.status, listed.resumes, listed.done) == ("done", 1, 4)
    assert listed.started == pd.Timestamp.fromtimestamp(first.state.started_at).floor("s")  # the first start
    assert listed.cost_usd > 0 and listed.duration.endswith(" s")


def test_a_loaded_run_plots_its_timeline_and_its_cost_by_domain(tmp_path: Path) -> None:
    first = stopped_run(tmp_path)
    figure = om.load_run(first.path).plot()
    timeline, cost, _ = figure.axes[:3]
    assert len(timeline.patches) == 1  # the one agent that ran; the cancelled ones never started
    assert [t.get_text() for t in timeline.get_yticklabels()] == ["a-1", "a-2", "a-3", "coordinator:a"]
    assert cost.patches[0].get_width() == pytest.approx(first.state.cost_usd)
    assert figure._repr_png_().startswith(b"\x89PNG")  # how a notebook shows it


def test_the_timeline_marks_retries(tmp_path: Path) -> None:
    tried: set[str] = set()

    def flaky(request: om.AgentRequest) -> str:
        if request.agent == "a-1" and request.agent not in tried:
            tried.add(request.agent)
            raise om.TransientAgentError("busy")
        return "A finding.\nDone."

    handle = om.start(FINISHES, provider=om.PythonProvider(flaky), variables={"n": 2, "topic": "t"}, root=tmp_path,
                      retry=om.RetryPolicy(base=0.001, jitter=0))
    handle.wait()
    timeline = handle.plot().axes[0]  # a RunHandle plots the run as it is now
    assert [line.get_marker() for line in timeline.lines if line.get_marker() != "None"] == ["x"]


@pytest.mark.parametrize(("budget", "verdict"), [(100.0, "likely to hold"), (0.01, "may not hold")])
def test_the_dry_run_says_whether_the_budget_is_likely_to_hold(budget: float, verdict: str) -> None:
    text = om.plan(make_spec({"a": 3}, budget_usd=budget)).text()
    assert f"Budget {dollars(budget)}: {verdict}" in text
    assert "Budget" not in om.plan(make_spec({"a": 3})).text()
