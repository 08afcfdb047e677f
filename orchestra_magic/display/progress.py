"""Terminal progress for long runs, on stderr (rich): a line for the run and a few for its domains.

A view only: it renders the engine's `RunState` and never changes it, and keeps no count of its own
(every figure is the reducer's). It draws from rich's own thread, so it reads a copy of the state made
on the engine's thread (`state.published`), never the state an event is changing. The work is bounded whatever the
run's size: an event costs a dictionary update, and each refresh (4 a second, from rich's own thread)
draws the run's line and at most `rows` domain lines, the domains with the latest activity, then one
line for the others ("… and 990 more domains"). Adding a rich task per domain, as this view once did,
redrew every bar at each add: 31.6 s of CPU inside the engine's event loop before the first event of
a 1,000-domain run (see benchmarks/progress.py).

A domain with a reduction tree also shows its levels, bottom-up (`L0 950/1,000 · L1 110/125 · L2 0/16 ·
L3 0/1`), read from the state at each refresh for the domains on screen only.

Done, failed, cancelled and skipped agents are counted apart, on every line and in the last frame
of a stopped run, and a bar fills only with the agents that finished well (done or skipped). The words
come from `text`, as in the notebook's views: workers apart from coordinators, and a domain's bar
counts its workers, as its row of the summaries table does.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict
from types import TracebackType

from rich.console import Console, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.progress_bar import ProgressBar
from rich.table import Table

from ..state.events import Event, RunFinished
from ..state.published import Published
from ..state.run import RunState
from .text import domain_parts, finished_work, outcome_text, roles_text, time_text, usage_text

MAX_DOMAIN_ROWS = 8


class CliProgress:
    """Use as a context manager around a run; pass `update` to the run as a listener."""

    def __init__(self, console: Console, rows: int = MAX_DOMAIN_ROWS) -> None:
        self.console = console
        self.rows = rows
        self.run_id = ""
        self._published: Published | None = None  # the engine's state, copied for rich's refresh thread
        self._sizes: dict[str, int] = {}  # workers per domain: fixed for the run, counted once
        self._levels: dict[str, dict[int, list[str]]] = {}  # tree domains only: level -> its agents
        self._recent: OrderedDict[str, None] = OrderedDict()  # at most `rows` domains, latest activity last
        self._lock = threading.Lock()  # `_recent` is written by the engine, read by rich's refresh thread
        self._live: Live | None = None

    def __enter__(self) -> CliProgress:
        return self  # the display starts with the first event, so an early error prints alone

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.stop()  # draws the last frame: the run's final status and counts
            if not self._live.console.is_terminal:  # a log file: end the frame's line, as a terminal does
                self._live.console.line()

    def update(self, event: Event, state: RunState) -> None:
        if self._live is None:
            self._start(state)
        if isinstance(event, RunFinished):
            return
        domain = state.agents[event.agent].domain
        with self._lock:
            self._recent[domain] = None
            self._recent.move_to_end(domain)
            if len(self._recent) > self.rows:
                self._recent.popitem(last=False)

    def frame(self) -> RenderableType:
        """What the terminal shows now: the run's line, the latest domains' lines, a line for the rest.
        Drawn on rich's refresh thread, from a copy of the state made on the engine's (the previous
        refresh's, a quarter of a second old at most: this thread never waits for the engine)."""
        if self._published is None:
            return ""
        state = self._published.read(wait=False)
        with self._lock:
            recent = list(reversed(self._recent))
        grid = Table.grid(padding=(0, 1))
        for _ in range(3):
            grid.add_column(no_wrap=True)
        grid.add_column(overflow="fold")  # the words: wrapped on a narrow terminal, never cutting the names
        success = finished_work(state.counts)
        grid.add_row(escape(f"{state.run_id} [{state.status}]"), _bar(success, state.total, state.counts["failed"]),
                     f"{success:,}/{state.total:,} agents done", _run_info(state))
        for domain in recent:
            workers = state.tally.get((domain, "worker"), Counter())
            done, rest = domain_parts(state, domain)
            levels = _levels_text(state, self._levels.get(domain))
            grid.add_row(f"  {escape(domain)}", _bar(finished_work(workers), self._sizes[domain], workers["failed"]),
                         escape(done), escape(" · ".join(p for p in (rest, levels) if p)))
        if (hidden := len(self._sizes) - len(recent)) > 0:
            grid.add_row(f"  … and {hidden:,} more domain{'s' if hidden != 1 else ''}", "", "", "")
        return grid

    def _start(self, state: RunState) -> None:
        self._published, self.run_id = Published(state), state.run_id
        levels: dict[str, dict[int, list[str]]] = {}
        for agent in state.agents.values():
            self._sizes[agent.domain] = self._sizes.get(agent.domain, 0) + (agent.role == "worker")
            levels.setdefault(agent.domain, {}).setdefault(agent.level, []).append(agent.agent)
        self._levels = {domain: tiers for domain, tiers in levels.items() if len(tiers) > 2}
        self._live = Live(console=self.console, get_renderable=self.frame, refresh_per_second=4, transient=False)
        self._live.start()
        if not state.executor.startswith("local"):
            dashboard = f"; dashboard: {state.dashboard}" if state.dashboard else ""
            self._live.console.print(escape(f"Agents run on {state.executor}{dashboard}"))


def _bar(success: int, total: int, failed: int) -> ProgressBar:
    return ProgressBar(total=max(total, 1), completed=success, width=24,
                       complete_style="red" if failed else "bar.complete")


def _levels_text(state: RunState, levels: dict[int, list[str]] | None) -> str:
    """A tree domain's levels, bottom-up (level 0: its workers), each as finished-well/agents."""
    if levels is None:
        return ""
    done = {level: sum(state.agents[key].status in ("done", "skipped") for key in keys)
            for level, keys in levels.items()}
    return " · ".join(f"L{level} {done[level]:,}/{len(keys):,}" for level, keys in sorted(levels.items()))


def _run_info(state: RunState) -> str:
    """Why a stopped run stopped, the counts by role and status, tokens, cost, waits and time."""
    parts = [outcome_text(state), roles_text(state), usage_text(state), time_text(state, time.time())]
    return escape(" · ".join(p for p in parts if p))
