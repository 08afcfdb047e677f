"""The terminal progress stays a few lines whatever the run's size, and tells done from failed, cancelled
and skipped, down to the last frame of a stopped run."""

from __future__ import annotations

import io
import re

from rich.console import Console

from orchestra_magic.display.progress import MAX_DOMAIN_ROWS, CliProgress
from orchestra_magic.state.events import AgentFinished, AgentStarted, Event, RunFinished, Status
from orchestra_magic.state.run import AgentState, RunState


def run_state(domains: dict[str, int]) -> RunState:
    """A run of `n` workers and a coordinator per domain, all pending."""
    agents = [AgentState(f"{d}-{i}", "worker", d, f"workers/{d}-{i}.md") for d, n in domains.items()
              for i in range(1, n + 1)]
    agents += [AgentState(d, "coordinator", d, f"synthesis/{d}.md") for d in domains]
    return RunState(run_id="run-1", name="r", provider="python", started_at=0.0, agents={a.agent: a for a in agents})


def finish(agent: str, status: Status) -> list[Event]:
    return [AgentStarted(agent=agent, at=1.0, attempt=1), AgentFinished(agent=agent, at=2.0, status=status)]


def last_frame(state: RunState, events: list[Event]) -> list[str]:
    """What a terminal keeps of the progress once the run is over: its last frame, as lines."""
    out = io.StringIO()
    with CliProgress(Console(file=out, force_terminal=False, width=200)) as view:
        for event in events:
            state.apply(event)  # as the engine does: the reducer first, then the listeners
            view.update(event, state)
    return [line.rstrip() for line in out.getvalue().splitlines() if line.strip()]


def test_a_thousand_domains_draw_a_bounded_number_of_lines() -> None:
    state = run_state({f"d{n}": 1 for n in range(1000)})
    events = [e for n in range(1000) for e in finish(f"d{n}-1", "done")]
    lines = last_frame(state, [*events, RunFinished(at=3.0, status="cancelled", reason="stopped")])
    assert len(lines) == 1 + MAX_DOMAIN_ROWS + 1, lines
    assert lines[1].split()[0] == "d999" and lines[-1].strip() == f"… and {1000 - MAX_DOMAIN_ROWS} more domains"


def test_the_last_frame_of_a_stopped_run_counts_each_outcome_apart() -> None:
    state = run_state({"a": 2, "b": 1, "c": 1})
    events = [*finish("a-1", "done"), *finish("a-2", "failed"), *finish("a", "done"), *finish("b-1", "skipped"),
              AgentFinished(agent="c-1", at=3.0, status="cancelled"), AgentFinished(agent="c", at=3.0,
                                                                                    status="cancelled"),
              RunFinished(at=3.0, status="cancelled", reason="stopped with Ctrl-C")]
    lines = last_frame(state, events)
    words = " ".join(" ".join(lines).split())  # the run's line may wrap: read the frame as words
    assert "run-1 [cancelled]" in words and "3/7 agents done" in words
    assert ("stopped: stopped with Ctrl-C · workers 2/4 (1 done · 1 skipped · 1 failed · 1 cancelled), "
            "coordinators 1/3 (1 done · 1 cancelled · 1 pending)") in words, words
    rows = {row.split()[0]: row for row in lines if row.startswith("  ")}
    assert re.search(r"1/2 workers done +1 failed · coordinator done", rows["a"])  # the failed worker fills no bar
    assert re.search(r"0/1 workers done +1 cancelled · coordinator cancelled", rows["c"])


def test_an_agent_whose_output_could_not_be_written_counts_once_as_failed() -> None:
    state = run_state({"a": 2})
    events = [*finish("a-1", "done"), AgentFinished(agent="a-1", at=2.5, status="failed", error="file error: full"),
              *finish("a-2", "done"), RunFinished(at=3.0, status="failed", reason="1 of 3 agents failed")]
    words = " ".join(" ".join(last_frame(state, events)).split())
    assert "1/3 agents done" in words and "workers 1/2 (1 done · 1 failed)" in words, words
    assert "1/2 workers done 1 failed" in words, words
