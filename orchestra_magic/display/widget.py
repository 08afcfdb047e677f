"""The notebook's live progress tree: run → domains → workers, with Stop and Retry-failed buttons. A
domain with a reduction tree shows its levels, and opens to its sub-coordinators as well as its workers.

A view only: `render()` copies figures from the run's `RunState` into core ipywidgets (no third-party
widget code, so it works offline in JupyterLab, Notebook 7 and VS Code). It runs on the kernel's thread
while the engine runs on its own: each render reads one copy of the state (`RunHandle.state`, see
`state.published`), never the state the engine is changing. Whoever owns the view calls
`render()` on a timer (about 10 times a second), so the number of widget messages follows elapsed
time, not the number of agents; a trait set to its current value sends nothing. Worker rows are built
only when a domain is opened: one HTML table per domain, however many workers it has.
"""

from __future__ import annotations

import html
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING

import ipywidgets as w

from ..errors import UsageError
from ..results import Run
from ..state.run import AgentState, RunState
from .plot import png
from .text import TRUNCATED_MARK as _TRUNCATED_MARK
from .text import domain_text, finished_work, outcome_text, roles_text, status_line, time_text, usage_text

if TYPE_CHECKING:
    from ..live import RunHandle

_COLOURS = {"done": "#2e7d32", "skipped": "#607d8b", "running": "#1565c0", "failed": "#c62828",
            "cancelled": "#ef6c00", "pending": "#9e9e9e"}
_BAR_STYLE = {"done": "success", "failed": "danger", "cancelled": "warning", "running": "info"}
MAX_PREVIEW_CHARS = 20_000


class DomainRow:
    """One domain: a progress bar, its coordinator's status, and its worker table when opened."""

    def __init__(self, name: str, keys: list[str], read: Callable[[str], str], state: RunState) -> None:
        self.name, self.keys, self._read = name, keys, read
        self.state, self.agents = state, [state.agents[key] for key in keys]  # as last rendered
        self.bar = w.IntProgress(value=0, min=0, max=len(keys), layout=w.Layout(width="220px"))
        self.label = w.HTML()
        self.toggle = w.ToggleButton(value=False, description="workers", icon="chevron-right",
                                     layout=w.Layout(width="110px"), tooltip=f"Show {name}'s workers")
        self.details = w.VBox()
        self.toggle.observe(self._on_toggle, names="value")
        self.box = w.VBox([w.HBox([self.toggle, self.bar, self.label]), self.details])

    def _on_toggle(self, change: dict[str, object]) -> None:
        self.toggle.icon = "chevron-down" if change["new"] else "chevron-right"
        if change["new"] and not self.details.children:
            self._build_details()
        self.details.layout.display = None if change["new"] else "none"

    def _build_details(self) -> None:
        self.table = w.HTML()
        # Syntheses first (the coordinator's, and any below it), then the workers' outputs.
        files = [(f"synthesis ({a.agent})", a.agent) for a in self.agents if a.role != "worker"]
        files += [(a.agent, a.agent) for a in self.agents if a.role == "worker"]
        self.picker = w.Dropdown(options=files, description="output of", layout=w.Layout(width="320px"))
        show = w.Button(description="read file", icon="file-text-o")
        self.preview = w.HTML()
        show.on_click(lambda _: self._show_output())
        self.details.children = [self.table, w.HBox([self.picker, show]), self.preview]
        self.render()

    def _show_output(self) -> None:
        agent = next(a for a in self.agents if a.agent == self.picker.value)
        try:
            text = self._read(agent.path)
        except OSError:
            text = f"(no output yet: {agent.status})"
        if len(text) > MAX_PREVIEW_CHARS:
            text = text[:MAX_PREVIEW_CHARS] + f"\n… [{len(text):,} characters; open {agent.path} for the rest]"
        style = "white-space:pre-wrap;max-height:24em;overflow:auto"
        self.preview.value = f"<pre style='{style}'>{html.escape(text)}</pre>"

    def render(self, state: RunState | None = None) -> None:
        """Show `state` (a copy: see `state.published`), or the one last shown."""
        if state is not None:
            self.state, self.agents = state, [state.agents[key] for key in self.keys]
        counts = self.state.tally.get((self.name, "worker"), Counter()) + self.state.tally.get(
            (self.name, "coordinator"), Counter())
        done = finished_work(counts)
        self.bar.value = done  # work there is: neither a failure nor a cancellation fills the bar
        style = "danger" if counts["failed"] else "warning" if counts["cancelled"] else "info"
        self.bar.bar_style = "success" if done == len(self.agents) else style
        cut = sum(a.truncated for a in self.agents)
        extra = f" · {_TRUNCATED_MARK} {cut} truncated" if cut else ""
        extra += _levels_html(self.agents)
        self.label.value = f"<b>{html.escape(self.name)}</b> {html.escape(domain_text(self.state, self.name) + extra)}"
        if self.details.children:
            self.table.value = _worker_table(self.agents)


class RunTree(w.VBox):  # type: ignore[misc]
    """The tree's root. Its plain-text form is what text-only frontends (nbconvert to text) show."""

    run_id = ""

    status = ""  # the run's status line as of the last render

    def __repr__(self) -> str:
        """Where widgets do not render (nbconvert to text), the tree reads as its run's status line; the
        cell's display handle re-sends it as the run changes."""
        return self.status or f"<progress tree of run {self.run_id}>"


class RunView:
    """The whole tree for one run. `attach` switches it to a new run (after Retry failed)."""

    def __init__(self, run: Run | RunHandle, *, on_stop: Callable[[], None], on_retry: Callable[[], None]) -> None:
        self.run = run
        self.bar = w.IntProgress(value=0, min=0, layout=w.Layout(width="320px"))
        self.header = w.HTML()
        self.stop_button = w.Button(description="Stop", icon="stop", button_style="danger")
        self.retry_button = w.Button(description="Retry failed", icon="repeat", disabled=True)
        self.plot_button = w.Button(description="Plot", icon="bar-chart",
                                    tooltip="the run's timeline and its cost and tokens by domain (run.plot())")
        self.stop_button.on_click(lambda _: on_stop())
        self.retry_button.on_click(lambda _: on_retry())
        self.plot_button.on_click(lambda _: self.show_plot())
        self.plot_area = w.VBox()  # not an Output widget: nbclient cannot execute notebooks holding one
        self.domains: list[DomainRow] = []
        self.domain_box = w.VBox()
        self.widget = RunTree([w.HBox([self.bar, self.stop_button, self.retry_button, self.plot_button]),
                               self.header, self.plot_area, self.domain_box])
        self.widget.run_id = run.run_id
        self.attach(run)

    def attach(self, run: Run | RunHandle) -> None:
        self.run = run
        state = run.state
        groups: dict[str, list[str]] = {}
        for agent in state.agents.values():
            groups.setdefault(agent.domain, []).append(agent.agent)
        self.domains = [DomainRow(name, keys, run.read_text, state) for name, keys in groups.items()]
        self.domain_box.children = [d.box for d in self.domains]
        self.bar.max = state.total
        self.render(state)

    def render(self, state: RunState | None = None) -> None:
        """Show the run as it is now: one copy of its state for the whole tree."""
        state = state or self.run.state
        self.bar.value = finished_work(state.counts)
        self.bar.bar_style = _BAR_STYLE.get(state.status, "") if state.status != "running" else (
            "danger" if state.counts["failed"] else "info")
        now = time.time()
        self.header.value = header_html(state, now)
        self.widget.status = status_line(state, now)
        running = state.status == "running"
        self.stop_button.disabled = not running
        self.stop_button.button_style = "danger" if running else ""  # a spent Stop should not look live
        self.retry_button.disabled = running or not (state.counts["failed"] or state.counts["cancelled"]
                                                     or state.counts["pending"])
        for domain in self.domains:
            domain.render(state)

    def show_plot(self) -> None:
        """Draw `run.plot()` under the header (again, as the run is now, on each click)."""
        try:
            shown = w.Image(value=png(self.run.plot()), format="png")
        except UsageError as exc:  # matplotlib missing: say how to get it
            shown = w.HTML(f"<pre>{html.escape(str(exc))}</pre>")
        self.plot_area.children = [shown]

    def resend(self) -> None:
        """Send every widget's whole state again (see `magic._Job.resend`)."""
        pending = [self.widget]
        while pending:
            widget = pending.pop()
            widget.send_state()
            pending.extend(getattr(widget, "children", ()))


def header_html(state: RunState, now: float) -> str:
    """The tree's header: the same figures as `text.status_line`, laid out for the notebook."""
    why = f"<br><b>{html.escape(outcome)}</b>" if (outcome := outcome_text(state)) else ""
    return (f"<b>{html.escape(state.run_id)}</b> {_badge(state.status)} &nbsp; {html.escape(roles_text(state))}"
            f"<br>{html.escape(usage_text(state))} &nbsp;·&nbsp; {html.escape(time_text(state, now))}{why}"
            f"<br><small>Context economy: {html.escape(state.economy())}</small>"
            f"<br><small>{executor_html(state)}</small>")


def executor_html(state: RunState) -> str:
    """Where the agents run, with a link to the executor's dashboard (Dask's) when it has one."""
    line = f"Agents run on: {html.escape(state.executor)}"
    if state.dashboard:
        link = html.escape(state.dashboard, quote=True)
        line += f" &nbsp;·&nbsp; <a href='{link}' target='_blank' rel='noopener'>open the Dask dashboard ↗</a>"
    return line


def _truncated(agent: AgentState) -> str:
    """The mark of an output that is cut off (done, but not whole), with why in its tooltip."""
    if not agent.truncated:
        return ""
    return (f" <span title='truncated: the output is cut off (max_tokens reached); its coordinator was told' "
            f"style='color:#ef6c00;font-weight:600'>{_TRUNCATED_MARK} truncated</span>")


def _badge(status: str) -> str:
    return f"<span style='color:{_COLOURS.get(status, '#000')};font-weight:600'>{status}</span>"


def _levels_html(agents: list[AgentState]) -> str:
    """` · levels 0: 8/8 · 1: 1/2 · 2: 0/1` (finished, not cancelled) for a tree domain; "" for two levels."""
    levels: dict[int, list[int]] = {}
    for a in agents:
        counts = levels.setdefault(a.level, [0, 0])
        counts[0] += a.status in ("done", "skipped", "failed")
        counts[1] += 1
    if len(levels) <= 2:
        return ""
    return " · levels " + " · ".join(f"{level}: {done}/{total}" for level, (done, total) in sorted(levels.items()))


def _worker_table(agents: list[AgentState]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(a.agent)}</td><td>{a.level}</td><td>{_badge(a.status)}{_truncated(a)}</td>"
        f"<td>{a.attempts}</td><td>{a.usage.input_tokens:,}/{a.usage.output_tokens:,}</td>"
        f"<td>{'' if a.seconds is None else f'{a.seconds:.1f}'}</td>"
        f"<td>{html.escape(a.error[:160])}</td></tr>"
        for a in agents
    )
    head = "".join(f"<th>{name}</th>" for name in ("agent", "level", "status", "attempts", "tokens in/out", "s",
                                                   "error"))
    head = f"<tr>{head}</tr>"
    return f"<table style='font-size:90%'>{head}{rows}</table>"
