"""Pictures of a run: its timeline (one bar per agent over time, by domain and role, coloured by status,
retries and rate-limit pauses marked) and its cost and tokens by domain.

Drawn from the run state alone (what run.json records: each agent's last start and end, its attempts'
own time, its retries with their waits), so a run loaded from disk draws as well as a live one.
matplotlib is an optional extra (`pip install "orchestra_magic[plot]"`), imported on the first plot; the
figure is made without pyplot, so nothing is left open in a global figure list.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from io import BytesIO
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..state.run import AgentState, RunState

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

COLOURS = {"done": "#2e7d32", "skipped": "#90a4ae", "running": "#1565c0", "failed": "#c62828",
           "cancelled": "#ef6c00", "pending": "#bdbdbd"}
MAX_LABELLED = 40  # agents named on the timeline's axis; past that, only domains are


def plot_run(state: RunState, now: float | None = None) -> Figure:
    """The run's figure: timeline on the left, cost and tokens by domain on the right."""
    figure_class = _figure_class()
    rows = list(_ordered(state))
    figure: Figure = figure_class(figsize=(12, min(2.5 + 0.18 * len(rows), 14)), layout="constrained")
    timeline, cost, tokens = figure.subplots(1, 3, width_ratios=[4, 1, 1])
    _timeline(timeline, state, rows, time.time() if now is None else now)
    _by_domain(cost, tokens, state)
    figure.suptitle(f"Run {state.run_id}: {state.status}")
    return figure


def _figure_class() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError('run.plot() draws with matplotlib: pip install "orchestra_magic[plot]"') from None

    class RunFigure(Figure):
        """A figure that shows itself in a notebook without pyplot (as a PNG)."""

        def _repr_png_(self) -> bytes:
            return png(self)

    return RunFigure


def png(figure: Figure) -> bytes:
    """The figure as PNG bytes (what a notebook shows, and the widget's Plot button)."""
    buffer = BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _ordered(state: RunState) -> Iterator[AgentState]:
    """Agents grouped by domain, each domain's workers first, then its coordinator."""
    domains: dict[str, list[AgentState]] = {}
    for agent in state.agents.values():
        domains.setdefault(agent.domain, []).append(agent)
    for agents in domains.values():
        yield from sorted(agents, key=lambda a: a.role != "worker")


def _timeline(ax: Axes, state: RunState, rows: list[AgentState], now: float) -> None:
    """x: seconds since the run first started. A skipped agent's bar is its earlier session's time,
    drawn pale at the start; retries are crosses, rate-limit pauses orange ticks with their wait."""
    from matplotlib.patches import Patch

    origin = state.first_start
    for y, agent in enumerate(rows):
        start, length = _span(agent, state, now)
        if start is None:
            continue
        ax.barh(y, length, left=start - origin, height=0.8, color=COLOURS.get(agent.status, "#000"),
                alpha=0.5 if agent.status == "skipped" else 1.0)
        for at, delay, rate_limited in agent.retries:
            if at >= start:  # this session's retries (earlier ones have no bar to sit on)
                colour = "#ff9800" if rate_limited else "#000000"
                ax.plot([at - origin, at - origin + delay], [y, y], color=colour, linewidth=1)
                ax.plot(at - origin, y, marker="|" if rate_limited else "x", color=colour, markersize=7)
    _label_rows(ax, rows)
    ax.set_xlabel("seconds since the run first started")
    ax.set_title("Timeline (x: retry; orange: rate-limit pause)", fontsize=10)
    handles = [Patch(color=c, label=s) for s, c in COLOURS.items() if state.counts[s]]
    ax.legend(handles=handles, loc="lower right", fontsize=8)


def _span(agent: AgentState, state: RunState, now: float) -> tuple[float | None, float]:
    """Where an agent's bar starts and how long it is (None: it never started)."""
    if agent.started_at is None:
        return None, 0.0
    if agent.status == "skipped":
        return agent.started_at, agent.busy_seconds
    end = agent.finished_at if agent.finished_at is not None else (state.finished_at or now)
    return agent.started_at, max(end - agent.started_at, 0.0)


def _label_rows(ax: Axes, rows: list[AgentState]) -> None:
    ax.invert_yaxis()
    if len(rows) <= MAX_LABELLED:
        ax.set_yticks(range(len(rows)), [a.agent for a in rows], fontsize=7)
        return
    firsts = {a.domain: i for i, a in reversed(list(enumerate(rows)))}  # each domain's first row
    ax.set_yticks(list(firsts.values()), list(firsts), fontsize=8)


def _by_domain(cost: Axes, tokens: Axes, state: RunState) -> None:
    names: list[str] = []
    dollars: list[float] = []
    used: list[tuple[int, int]] = []
    for agent in state.agents.values():
        if agent.domain not in names:
            names.append(agent.domain)
            dollars.append(0.0)
            used.append((0, 0))
        i = names.index(agent.domain)
        dollars[i] += agent.cost_usd or 0.0
        used[i] = (used[i][0] + agent.usage.input_tokens, used[i][1] + agent.usage.output_tokens)
    y = range(len(names))
    cost.barh(y, dollars, color="#5c6bc0")
    cost.set_yticks(y, names, fontsize=8)
    cost.invert_yaxis()
    cost.set_title("Cost by domain ($)" + (" (some unpriced)" if state.unpriced else ""), fontsize=10)
    tokens.barh(y, [u[0] for u in used], color="#26a69a", label="in")
    tokens.barh(y, [u[1] for u in used], left=[u[0] for u in used], color="#ffa726", label="out")
    tokens.set_yticks(y, [""] * len(names))
    tokens.invert_yaxis()
    tokens.set_title("Tokens by domain", fontsize=10)
    tokens.legend(fontsize=8, loc="lower right")
