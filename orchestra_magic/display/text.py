"""A run's status in words: the one place that turns a `RunState` into the lines every view shows.

The CLI progress, the widget's header and the text view all call these, so they cannot disagree. Each
status is counted apart (done, skipped, failed, cancelled, running, pending: a cancelled or failed agent
never counts as finished work), and workers and coordinators are counted apart too (a domain of 6
workers reads "6/6 workers", not "7/7"). Formatting only (`resume_hint` also reads the folder's
record); no IPython, no ipywidgets.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from ..errors import RunFolderError
from ..runfolder.folder import RunFolder
from ..runfolder.options import read_options
from ..state.run import RunState

ORDER = ("done", "skipped", "failed", "cancelled", "running", "pending")
TRUNCATED_MARK = "✂"


def counts_text(counts: Mapping[str, int]) -> str:
    """'12 done · 2 failed · 6 cancelled': every status that has agents, in a fixed order."""
    return " · ".join(f"{counts[s]:,} {s}" for s in ORDER if counts.get(s)) or "none yet"


def finished_work(counts: Mapping[str, int]) -> int:
    """Agents whose output is there: done now, or kept from an earlier session (skipped)."""
    return counts.get("done", 0) + counts.get("skipped", 0)


def roles_text(state: RunState) -> str:
    """'workers 20/21 (20 done · 1 failed), coordinators 3/4 (3 done · 1 cancelled)', and how many
    answers were cut off at max_tokens, if any."""
    parts = []
    for role in ("worker", "coordinator"):
        counts = state.role_counts(role)
        total = sum(counts.values())
        if total:
            parts.append(f"{role}s {finished_work(counts):,}/{total:,} ({counts_text(counts)})")
    cut = f" ({TRUNCATED_MARK} {state.truncated} truncated)" if state.truncated else ""
    return ", ".join(parts) + cut


def domain_text(state: RunState, domain: str) -> str:
    """One domain: '6/6 workers done · 1 failed · coordinator done'."""
    return " · ".join(domain_parts(state, domain))


def domain_parts(state: RunState, domain: str) -> tuple[str, str]:
    """`domain_text` in two: its workers' count ('5/6 workers done') and the rest ('1 failed · coordinator
    done'), for views that set them in columns."""
    workers = state.tally.get((domain, "worker"), Counter())
    coordinator = state.tally.get((domain, "coordinator"), Counter())
    extra = [f"{workers[s]} {s}" for s in ("failed", "cancelled", "running") if workers[s]]
    said = next((s for s in ORDER if coordinator[s]), "pending")
    done = f"{finished_work(workers)}/{sum(workers.values())} workers done"
    return done, " · ".join([*extra, f"coordinator {said}"])


def usage_text(state: RunState) -> str:
    tokens = f"{state.input_tokens:,} in / {state.output_tokens:,} out tokens"
    tokens += f" · {state.cost()}" if state.cost() else ""
    return tokens + (f" · {state.waits()}" if state.rate_limited else "")


def duration(seconds: float) -> str:
    """'4.2 s', '3 min 05 s', '2 h 01 min': for people, not for sorting."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def time_text(state: RunState, now: float) -> str:
    """This session's time; with the run's total over its sessions once it was resumed."""
    spent = duration(state.elapsed(now))
    if not state.resumes:
        return spent
    times = "time" if state.resumes == 1 else "times"
    return f"{spent} (resumed {state.resumes} {times}; {duration(state.total_seconds(now))} in all)"


def outcome_text(state: RunState) -> str:
    """Why a run ended other than done, in one phrase ('' while it runs or when it is done)."""
    if state.status == "cancelled":
        return f"stopped: {state.reason or 'stopped'}"
    if state.status == "failed":
        return state.reason
    return ""


def status_line(state: RunState, now: float | None = None) -> str:
    """The run in one line of text: id, status, counts by role and status, tokens, cost, time, and why
    it stopped. What the text view prints, the notebook's plain-text fallback, the CLI's last word."""
    now = time.time() if now is None else now
    where = "" if state.executor.startswith("local") else f" · on {state.executor.split()[0]}"
    why = f" · {outcome}" if (outcome := outcome_text(state)) else ""
    return (f"{state.run_id} [{state.status}] {roles_text(state)} · {usage_text(state)} · "
            f"{time_text(state, now)}{where}{why}")


def resume_hint(path: Path | str, how: str) -> str:
    """What to do after a stop or a failure: `how` is the command (CLI) or the cell's words (notebook),
    followed by anything the run folder at `path` could not record and must be given again."""
    try:
        needed = read_options(RunFolder(path)).hint()
    except (OSError, RunFolderError):  # the hint is help, never a new failure
        needed = ""
    return how + (f"\n  ({needed})" if needed else "")


class Attachable(Protocol):
    """What a view reads: a run's state (a `Run` or a `RunHandle`)."""

    @property
    def state(self) -> RunState: ...


class TextView:
    """Progress as printed lines, where widgets cannot render (terminal IPython, `widgets = False`): the
    status line every `every` seconds while it changes, and once more when the run ends."""

    def __init__(self, run: Attachable, every: float = 2.0) -> None:
        self.run, self.every, self._last, self._said = run, every, 0.0, ""

    def attach(self, run: Attachable) -> None:
        self.run = run

    def render(self) -> None:
        now, state = time.time(), self.run.state  # one copy of the state (see `state.published`)
        line = status_line(state, now)
        if state.status != "running" or now - self._last >= self.every:
            if line != self._said:
                print(line, flush=True)
            self._last, self._said = now, line
