"""Terminal progress for long runs: one bar for the run and one per domain, on stderr (rich).

A view only: it renders the engine's `RunState` and never changes it. rich redraws at most 10 times a
second from its own thread, so the per-event cost here is a dictionary update, whatever the agent count.
"""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from ..state.events import AgentFinished, Event, RunState


class CliProgress:
    """Use as a context manager around a run; pass `update` to the run as a listener."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), console=console, refresh_per_second=10, transient=False,
        )
        self.run_id = ""
        self._run_task: TaskID | None = None
        self._domains: dict[str, TaskID] = {}
        self._domain_done: dict[str, int] = {}

    def __enter__(self) -> CliProgress:
        return self  # the display starts with the first event, so an early error prints alone

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._run_task is not None:
            self.progress.stop()

    def update(self, event: Event, state: RunState) -> None:
        if self._run_task is None:
            self._start(state)
        assert self._run_task is not None
        counts = state.counts
        info = (f"{counts['running']} running, {counts['failed']} failed · "
                f"{state.input_tokens + state.output_tokens:,} tokens" + (f" · {state.cost()}" if state.cost() else "")
                + (f" · {state.waits()}" if state.rate_limited else ""))
        self.progress.update(self._run_task, completed=state.finished, info=info)
        if isinstance(event, AgentFinished):
            agent = state.agents[event.agent]
            self._domain_done[agent.domain] += 1
            self.progress.update(self._domains[agent.domain], completed=self._domain_done[agent.domain])

    def _start(self, state: RunState) -> None:
        self.progress.start()
        self.run_id = state.run_id
        self._run_task = self.progress.add_task(escape(state.run_id), total=state.total, info="")
        if not state.executor.startswith("local"):
            dashboard = f"; dashboard: {state.dashboard}" if state.dashboard else ""
            self.progress.console.print(escape(f"Agents run on {state.executor}{dashboard}"))
        sizes: dict[str, int] = {}
        for agent in state.agents.values():
            sizes[agent.domain] = sizes.get(agent.domain, 0) + 1
        for domain, size in sizes.items():
            self._domains[domain] = self.progress.add_task(f"  {escape(domain)}", total=size, info="")
            self._domain_done[domain] = 0
