"""A run's results as the parent should hold them: summaries, paths and numbers, never full texts.

`Run.summaries` has one row per domain, `Run.agents` one per agent; both are built from the run state on
each access (pandas is imported here and nowhere in the engine). Full outputs stay on disk; read one
with `Run.synthesis(domain)` or `Run.output(worker_id)` when you need it.

`Run.path` is a `Path` for a local run folder and the URL (a `str`) for one under a URL root
(``s3://…``, ``memory://…``); the readers here work the same for both.
"""

from __future__ import annotations

import difflib
import os
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import RunFolderError, UsageError
from .runfolder.folder import RunFolder, run_folders
from .state.events import AgentState, RunState

if TYPE_CHECKING:
    import pandas as pd

SUMMARY_COLUMNS = ["domain", "summary", "status", "workers", "failed", "missing", "summary_cut",
                   "synthesis_path", "input_tokens", "output_tokens", "cost_usd"]
AGENT_COLUMNS = ["agent", "role", "domain", "status", "attempts", "input_tokens", "output_tokens",
                 "cache_write_tokens", "cache_read_tokens", "cost_usd", "seconds", "path", "error", "note", "batch",
                 "tool_calls", "server_tool_calls"]


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

        rows = []
        for domain, members in self._domains().items():
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
                "input_tokens": sum(a.input_tokens for a in members),
                "output_tokens": sum(a.output_tokens for a in members),
                "cost_usd": _total_cost(members),
            })
        return pd.DataFrame(rows, columns=SUMMARY_COLUMNS).astype({"cost_usd": float})  # None -> NaN

    @property
    def agents(self) -> pd.DataFrame:
        """One row per agent (workers and coordinators): status, attempts, tokens, cost, seconds, the
        output path and the error, if any."""
        import pandas as pd

        rows = [
            {"agent": a.agent, "role": a.role, "domain": a.domain, "status": a.status, "attempts": a.attempts,
             "input_tokens": a.input_tokens, "output_tokens": a.output_tokens,
             "cache_write_tokens": a.cache_write_tokens, "cache_read_tokens": a.cache_read_tokens,
             "cost_usd": a.cost_usd, "seconds": a.seconds,
             "path": self._folder.where(a.path), "error": a.error, "note": a.note, "batch": a.batch,
             "tool_calls": a.tool_calls, "server_tool_calls": a.server_tool_calls}
            for a in self.state.agents.values()
        ]
        return pd.DataFrame(rows, columns=AGENT_COLUMNS).astype({"cost_usd": float})

    def read_text(self, relative: str) -> str:
        """A file of the run folder, by its path relative to the folder (as in `AgentState.path`)."""
        return self._folder.read_text(relative)

    def synthesis(self, domain: str) -> str:
        """The full synthesis of `domain`'s coordinator, read from the run folder."""
        return self._output_of(f"coordinator:{domain}", "domain", domain)

    def output(self, worker_id: str) -> str:
        """The full output of one worker, read from the run folder."""
        return self._output_of(worker_id, "worker", worker_id)

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


def _total_cost(agents: list[AgentState]) -> float | None:
    """A domain's cost; None (NaN in the frame) when an agent that used tokens has no known price."""
    if any(a.cost_usd is None and a.input_tokens for a in agents):
        return None
    return sum(a.cost_usd or 0.0 for a in agents)


def load_run(path: str | os.PathLike[str]) -> Run:
    """Rebuild a run from its folder alone (run.json plus any journal lines written after it).
    `path` is a local folder or a URL (``s3://bucket/runs/<run_id>``, ``memory://…``)."""
    folder = RunFolder.open(path)
    return Run(folder.path, folder.read_state())


RUN_COLUMNS = ["run_id", "name", "started", "status", "agents", "done", "failed", "input_tokens", "output_tokens"]


def list_runs(root: str | os.PathLike[str]) -> pd.DataFrame:
    """Every run folder under `root` (a folder or a URL), newest first: id, name, start time, status,
    counts, tokens."""
    import pandas as pd

    rows = []
    for folder in run_folders(root):
        try:
            state = RunFolder.open(folder).read_state()
        except RunFolderError:
            continue  # not ours, or unreadable: listing the rest is more useful than failing
        rows.append({"run_id": state.run_id, "name": state.name,
                     "started": pd.Timestamp(state.started_at, unit="s"), "status": state.status,
                     "agents": state.total, "done": state.counts["done"] + state.counts["skipped"],
                     "failed": state.counts["failed"], "input_tokens": state.input_tokens,
                     "output_tokens": state.output_tokens})
    frame = pd.DataFrame(rows, columns=RUN_COLUMNS)
    return frame.sort_values("started", ascending=False, ignore_index=True)
