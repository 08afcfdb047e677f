"""The run state: one `Usage` value, folders written before it still read the same, and readers on other
threads than the engine's see a consistent copy."""

from __future__ import annotations

import json
import shutil
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import make_spec

import orchestra_magic as om
from orchestra_magic.runfolder.folder import RunFolder
from orchestra_magic.state.events import AgentFinished, AgentStarted, event_from_dict, event_to_dict
from orchestra_magic.state.run import AgentState, RunState
from orchestra_magic.state.usage import USAGE_NAMES, Usage

BEFORE = Path(__file__).parent / "fixtures" / "run-written-before-usage"  # run.json and journal by the code before


@pytest.mark.parametrize(("left", "right", "total"), [
    (Usage(), Usage(), Usage()),
    (Usage(1, 2, 3, 4, 5, 6), Usage(), Usage(1, 2, 3, 4, 5, 6)),
    (Usage(1, 2, 3, 4, 5, 6), Usage(10, 20, 30, 40, 50, 60), Usage(11, 22, 33, 44, 55, 66)),
])
def test_usages_add_counter_by_counter_and_the_empty_usage_is_zero(left: Usage, right: Usage, total: Usage) -> None:
    assert left + right == right + left == total
    assert total - right == left


def test_a_usage_is_written_flat_under_the_names_the_tables_show() -> None:
    flat = Usage(1, 2, 3, 4, 5, 6).as_dict()
    assert tuple(flat) == USAGE_NAMES == ("input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens",
                                          "tool_calls", "server_tool_calls")
    assert Usage.take(dict(flat)) == Usage(1, 2, 3, 4, 5, 6) and Usage(1, 2, 3).prompt_tokens == 1 + 3


@pytest.fixture
def before(tmp_path: Path) -> Iterator[RunFolder]:
    shutil.copytree(BEFORE, tmp_path / "run-before")
    yield RunFolder.open(tmp_path / "run-before")


def test_a_folder_written_before_usage_was_one_value_reads_as_it_did(before: RunFolder) -> None:
    state = before.read_state()
    usages = {key: agent.usage for key, agent in state.agents.items()}
    assert usages == {"w1": Usage(100, 50, 7, 9, 2, 1),  # skipped: keeps its earlier record, tool calls too
                      "w2": Usage(11, 12, 13, 14, 15, 16), "coordinator:d": Usage(20, 0)}
    assert state.removed["old"].usage == Usage(3, 4, tool_calls=5)
    assert (state.input_tokens, state.output_tokens, state.usage.tool_calls) == (131, 62, 17)
    assert (state.status, state.counts, state.rate_limited) == ("failed", Counter(done=1, skipped=1, failed=1), 1)


def test_journal_lines_written_before_read_back_and_write_again_as_they_were() -> None:
    for line in (BEFORE / "journal.jsonl").read_text(encoding="utf-8").splitlines():
        assert event_to_dict(event_from_dict(json.loads(line))) == json.loads(line)


def test_run_json_rows_keep_their_flat_usage_columns(before: RunFolder) -> None:
    state = before.read_state()
    before.snapshot(state)
    rows = json.loads((before.path / "run.json").read_text(encoding="utf-8"))["agents"]
    written = json.loads((BEFORE / "run.json").read_text(encoding="utf-8"))["agents"]
    assert {name: rows[0][name] for name in USAGE_NAMES} == {name: written[0][name] for name in USAGE_NAMES}
    assert set(rows[0]) == set(written[0])
    assert RunState.from_dict(json.loads((before.path / "run.json").read_text(encoding="utf-8"))).usage == state.usage


@pytest.mark.parametrize("line", [
    {"event": "AgentFinished", "agent": "a", "at": 1.0, "status": "done", "input_tokens": "12"},
    {"event": "AgentFinished", "agent": "a", "at": 1.0, "status": "done", "tool_calls": 1.5},
    {"event": "AgentFinished", "agent": "a", "at": 1.0, "status": "done", "output_tokens": True},
])
def test_a_journal_line_with_a_counter_that_is_not_a_whole_number_is_refused(line: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="usage"):
        event_from_dict(line)


def state_of(agents: int) -> RunState:
    return RunState("r", "n", "p", 0.0, {f"w{i}": AgentState(f"w{i}", "worker", "d", f"workers/w{i}.md")
                                         for i in range(agents)})


@pytest.mark.parametrize("finishes", [
    # (status, cost, input tokens) of one agent's finishes in turn: a resume re-runs, re-prices or skips it
    [("failed", None, 10), ("done", 0.5, 30)],  # unpriced first (a model with no price), priced on resume
    [("done", 0.5, 30), ("failed", None, 40)],
    [("failed", None, 10), ("skipped", 0.2, 0)],  # a skipped agent keeps its usage but takes the cost given
    [("done", None, 10), ("skipped", None, 10), ("done", 1.0, 5)],
])
def test_the_reducers_running_totals_equal_the_totals_counted_from_the_agents(
        finishes: list[tuple[str, float | None, int]]) -> None:
    state = state_of(2)
    for status, cost, tokens in finishes:
        state.apply(AgentFinished(agent="w0", at=1.0, status=status, cost_usd=cost,  # type: ignore[arg-type]
                                  usage=Usage(input_tokens=tokens, output_tokens=1)))
        counted = RunState("r", "n", "p", 0.0, state.agents)  # totals made afresh from the agents' rows
        assert (state.usage, state.cost_usd, state.unpriced, state.truncated, state.counts) == (
            counted.usage, counted.cost_usd, counted.unpriced, counted.truncated, counted.counts)


def test_a_snapshot_stays_as_it_was_while_events_go_on_and_shares_the_agents_no_event_changed() -> None:
    state = state_of(3)
    state.apply(AgentStarted(agent="w0", at=1.0, attempt=1))
    first = state.snapshot()
    state.apply(AgentFinished(agent="w0", at=2.0, status="done", usage=Usage(5, 6)))
    state.apply(AgentStarted(agent="w1", at=2.0, attempt=1))
    second = state.snapshot()
    assert (first.agents["w0"].status, first.counts, first.input_tokens) == (
        "running", Counter(pending=2, running=1), 0)
    assert (second.agents["w0"].status, second.counts["done"], second.input_tokens) == ("done", 1, 5)
    assert second.agents["w2"] is first.agents["w2"] and second.agents["w0"] is not state.agents["w0"]
    assert state.snapshot() is second  # no event since: the same copy


def consistent(state: RunState) -> str:
    """What is wrong with a state that a reader got, or ""."""
    counts = Counter(agent.status for agent in state.agents.values())
    if +state.counts != counts:
        return f"counts {dict(+state.counts)} but the agents say {dict(counts)}"
    tokens = sum(agent.usage.input_tokens for agent in state.agents.values())
    if state.input_tokens != tokens:
        return f"{state.input_tokens} input tokens in all, {tokens} by the agents"
    return ""


def test_a_reader_on_another_thread_never_sees_an_event_half_applied(tmp_path: Path) -> None:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often: a read that spans an event shows at once

    def answer(request: om.AgentRequest) -> om.Completion:
        return om.Completion("A finding.\nDone.", input_tokens=3, output_tokens=2)

    handle = om.start(make_spec({"a": 300, "b": 300}, concurrency=50), provider=om.PythonProvider(answer),
                      root=tmp_path)
    seen: list[str] = []

    def read() -> None:
        while not handle.done:
            seen.append(consistent(handle.state))

    reader = threading.Thread(target=read)
    try:
        reader.start()
        handle.wait()
    finally:
        reader.join()
        sys.setswitchinterval(interval)
    assert [problem for problem in seen if problem] == [] and len(seen) > 1
    final = handle.state
    assert consistent(final) == "" and final.counts["done"] == final.total > 600
