"""A run's results as the parent should hold them: summaries, paths and numbers, never full texts.

`Run.summaries` has one row per domain, `Run.agents` one per agent; both are built from the run state on
each access (pandas is imported here and nowhere in the engine). Full outputs stay on disk; read one
with `Run.synthesis(domain)` or `Run.output(worker_id)` when you need it.

`Run.path` is a `Path` for a local run folder and the URL (a `str`) for one under a URL root
(``s3://…``, ``memory://…``); the readers here work the same for both.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .display.plot import plot_run
from .display.text import duration, finished_work
from .errors import RunFolderError, UsageError
from .runfolder.folder import RunFolder, run_folders
from .runfolder.layout import RUN_DOMAIN, SPEC, answer_path
from .state.run import AgentState, RunState

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from .spec.model import Spec

SUMMARY_COLUMNS = ["domain", "summary", "status", "workers", "failed", "missing", "summary_cut",
                   "synthesis_path", "input_tokens", "output_tokens", "cost_usd"]
AGENT_COLUMNS = ["agent", "role", "domain", "status", "attempts", "input_tokens", "output_tokens",
                 "cache_write_tokens", "cache_read_tokens", "cost_usd", "seconds", "path", "error", "note", "batch",
                 "tool_calls", "server_tool_calls", "level", "parent", "truncated"]


class Run:
    """A run's results: its folder on disk and its state, as values. Made by `run`/`arun`, by waiting for
    a `RunHandle`, or from disk by `load_run`. To stop, wait for or retry a run, use its `RunHandle`."""

    def __init__(self, path: Path | str, state: RunState) -> None:
        self.path = path
        self.state = state

    @cached_property
    def _folder(self) -> RunFolder:
        return RunFolder(self.path)

    @property
    def run_id(self) -> str:
        return self.state.run_id

    @property
    def status(self) -> str:
        return self.state.status

    @property
    def summaries(self) -> pd.DataFrame:
        """One row per domain: the coordinator's short summary, status, worker counts, the synthesis
        path, tokens and cost. Built from the state on each access; full texts stay on disk."""
        import pandas as pd

        frame = pd.DataFrame(self.summary_rows())
        columns = SUMMARY_COLUMNS + [c for c in frame.columns if c not in SUMMARY_COLUMNS]
        return frame.reindex(columns=columns).astype({"cost_usd": float})  # None -> NaN

    def summary_rows(self) -> list[dict[str, Any]]:
        """`summaries` as plain dicts, for a caller that does not need pandas (the CLI's last table:
        importing pandas for it cost a whole-process run about 0.3 s of CPU)."""
        rows = []
        for domain, members in self._domains().items():
            if domain == RUN_DOMAIN:
                continue  # the run-level coordinator's text is `summary`
            coordinator = next(a for a in members if a.role == "coordinator")
            workers = [a for a in members if a.role == "worker"]
            missing = [a.agent for a in workers if a.status not in ("done", "skipped")]
            rows.append({
                "domain": domain,
                "summary": coordinator.summary,
                "status": coordinator.status,
                "workers": len(workers),
                "failed": sum(a.status == "failed" for a in workers),
                "missing": missing,
                "summary_cut": coordinator.summary_cut,
                "synthesis_path": self._folder.where(coordinator.path),
                "input_tokens": sum(a.usage.input_tokens for a in members),
                "output_tokens": sum(a.usage.output_tokens for a in members),
                "cost_usd": _total_cost(members),
            })
            rows[-1].update(self._answer(coordinator, skip=("summary",)))
        return rows

    @property
    def results(self) -> pd.DataFrame:
        """The workers' typed answers (where `roles.worker.output` is declared): one row per worker, a
        column per field with the schema's types, plus `agent` and `domain`. Indexed like the input: a
        `for_each` DataFrame's index labels, a list's positions (a worker not made by `for_each` is
        indexed by its id), so `df.join(run.results)` lines the answers up with their rows. A worker
        without an answer (failed, not run yet) has its fields missing. Read from the `workers/<id>.json`
        files on each access: the notebook holds only these small values."""
        import pandas as pd

        from .spec.output import fields  # here: loading the magic must not import pydantic

        schema = self._spec.settings("worker").output
        if schema is None:
            raise UsageError(f"the workers of run {self.run_id} declare no `output`, so they have no typed results; "
                             "add roles.worker.output to the spec (see docs/spec.md), or read run.output(id)")
        types = fields(schema)
        rows, index = [], []
        for domain, worker in self._spec.workers:
            agent = self.state.agents.get(worker.id)
            answer = self._answer(agent) if agent is not None else {}
            rows.append({**{f: answer.get(f) for f in types}, "agent": worker.id, "domain": domain.name})
            index.append(worker.id if worker.key is None else worker.key)
        frame = pd.DataFrame(rows, index=pd.Index(index), columns=[*types, "agent", "domain"])
        return frame.astype(types)

    @cached_property
    def _spec(self) -> Spec:
        from .spec.load import load_spec

        return load_spec(self._folder.read_text(SPEC))

    def _answer(self, agent: AgentState, skip: tuple[str, ...] = ()) -> dict[str, Any]:
        """An agent's typed answer from its JSON file; {} when it has none (no `output`, or not done)."""
        if agent.status not in ("done", "skipped"):
            return {}
        try:
            answer = json.loads(self._folder.read_text(answer_path(agent.path)))
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in answer.items() if k not in skip} if isinstance(answer, dict) else {}

    @property
    def summary(self) -> str:
        """The run-level coordinator's short summary ("" when the spec has no top-level `coordinator:`,
        or it has not finished); its full synthesis is `synthesis("_run")`."""
        top = self.state.agents.get(f"coordinator:{RUN_DOMAIN}")
        return top.summary if top is not None else ""

    @property
    def agents(self) -> pd.DataFrame:
        """One row per agent (workers, sub-coordinators and coordinators): status, attempts, tokens, cost,
        seconds, the output path and the error, if any; `level` (0 for workers) and `parent` (the agent
        that reads its result) place it in the tree, and `truncated` says its reader got it cut."""
        import pandas as pd

        rows = [
            {"agent": a.agent, "role": a.role, "domain": a.domain, "status": a.status, "attempts": a.attempts,
             **a.usage.as_dict(), "cost_usd": a.cost_usd, "seconds": a.seconds,
             "path": self._folder.where(a.path), "error": a.error, "note": a.note, "batch": a.batch,
             "level": a.level, "parent": a.parent, "truncated": a.truncated}
            for a in self.state.agents.values()
        ]
        return pd.DataFrame(rows, columns=AGENT_COLUMNS).astype({"cost_usd": float})

    def plot(self) -> Figure:
        """The run in pictures: a timeline (one bar per agent, by domain and role, coloured by status,
        retries and rate-limit pauses marked) and cost and tokens by domain. A matplotlib `Figure`
        (shown in a notebook as is; `.savefig(path)` elsewhere); needs the `plot` extra."""
        return plot_run(self.state)

    def read_text(self, relative: str) -> str:
        """A file of the run folder, by its path relative to the folder (as in `AgentState.path`)."""
        return self._folder.read_text(relative)

    def synthesis(self, domain: str) -> Markdown:
        """The full synthesis of `domain`'s coordinator, read from the run folder: a `str` that a notebook
        shows as Markdown, with its summary set off rather than its <summary> tags shown."""
        return Markdown(self._output_of(f"coordinator:{domain}", "domain", domain))

    def output(self, worker_id: str) -> Markdown:
        """The full output of one worker, read from the run folder (a `str`, shown as Markdown)."""
        return Markdown(self._output_of(worker_id, "worker", worker_id))

    def _output_of(self, key: str, kind: str, name: str) -> str:
        """An agent's output file; a `UsageError` that says why when the name is unknown or the agent
        has no output (failed, cancelled, not run yet), rather than a bare missing-file error."""
        agent = self.state.agents.get(key)
        if agent is None:
            role = "coordinator" if kind == "domain" else "worker"
            known = [a.domain if kind == "domain" else a.agent for a in self.state.agents.values() if a.role == role]
            close = difflib.get_close_matches(name, known, n=1)
            listed = ", ".join(known[:8]) + (", …" if len(known) > 8 else "")
            hint = f"did you mean {close[0]!r}?" if close else f"its {kind}s are {listed}"
            raise UsageError(f"run {self.run_id} has no {kind} {name!r}; {hint}")
        if agent.status not in ("done", "skipped"):
            why = f": {agent.error}" if agent.error else ""
            raise UsageError(f"the {kind} {name!r} of run {self.run_id} has no output ({agent.status}{why})")
        return self.read_text(agent.path)

    def _domains(self) -> dict[str, list[AgentState]]:
        groups: dict[str, list[AgentState]] = {}
        for agent in self.state.agents.values():
            groups.setdefault(agent.domain, []).append(agent)
        return groups

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.state.counts.items()) if n)
        return f"<Run {self.run_id} {self.status}: {counts}; {self.path}>"


_SUMMARY_SECTION = re.compile(r"<summary>(.*?)</summary>", re.DOTALL | re.IGNORECASE)


class Markdown(str):
    """An agent's text: still a `str` (print it, search it, save it), shown as Markdown in a notebook.
    The coordinator's <summary> section is shown as a quoted "Summary" paragraph, not as raw tags
    (which Markdown would pass through as an HTML element)."""

    __slots__ = ()

    def _repr_markdown_(self) -> str:
        return _SUMMARY_SECTION.sub(lambda m: "\n\n> **Summary.** " + " ".join(m.group(1).split()) + "\n\n", self)


def _total_cost(agents: list[AgentState]) -> float | None:
    """A domain's cost; None (NaN in the frame) when an agent that used tokens has no known price."""
    if any(a.cost_usd is None and a.usage.input_tokens for a in agents):
        return None
    return sum(a.cost_usd or 0.0 for a in agents)


def load_run(path: str | os.PathLike[str]) -> Run:
    """Rebuild a run from its folder alone (run.json plus any journal lines written after it).
    `path` is a local folder or a URL (``s3://bucket/runs/<run_id>``, ``memory://…``)."""
    folder = RunFolder.open(path)
    return Run(folder.path, folder.read_outcome())


RUN_COLUMNS = ["run_id", "name", "started", "status", "resumes", "agents", "done", "failed", "cancelled",
               "cost_usd", "duration", "seconds", "input_tokens", "output_tokens"]


def list_runs(root: str | os.PathLike[str]) -> pd.DataFrame:
    """Every run folder under `root` (a folder or a URL), newest first: id, name, when it first started
    (local time, to the second), status (a stopped run reads "stopped"), how often it was resumed,
    agent counts, cost, how long it ran over all its sessions (`duration` in words, `seconds` to sort
    by), tokens."""
    import pandas as pd

    rows = []
    for folder in run_folders(root):
        try:
            state = RunFolder.open(folder).read_outcome()
        except RunFolderError:
            continue  # not ours, or unreadable: listing the rest is more useful than failing
        seconds = state.total_seconds(state.last_activity())
        rows.append({"run_id": state.run_id, "name": state.name,
                     "started": pd.Timestamp.fromtimestamp(state.first_start).floor("s"),
                     "status": "stopped" if state.status == "cancelled" else state.status,
                     "resumes": state.resumes, "agents": state.total, "done": finished_work(state.counts),
                     "failed": state.counts["failed"], "cancelled": state.counts["cancelled"],
                     "cost_usd": state.cost_usd if state.cost_usd and not state.unpriced else None,
                     "duration": duration(seconds), "seconds": round(seconds, 1),
                     "input_tokens": state.input_tokens, "output_tokens": state.output_tokens})
    frame = pd.DataFrame(rows, columns=RUN_COLUMNS).astype({"cost_usd": float})
    return frame.sort_values("started", ascending=False, ignore_index=True)
