"""A run's results as the parent should hold them: summaries, paths and numbers, never full texts.

`Run.summaries` has one row per domain, `Run.agents` one per agent; both are built from the run state on
each access (pandas is imported here and nowhere in the engine). Full outputs stay on disk; read one
with `Run.synthesis(domain)` or `Run.output(worker_id)` when you need it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from .events import AgentState, RunState
from .runfolder import RunFolder

if TYPE_CHECKING:
    import pandas as pd

SUMMARY_COLUMNS = ["domain", "summary", "status", "workers", "failed", "missing", "summary_cut",
                   "synthesis_path", "input_tokens", "output_tokens"]
AGENT_COLUMNS = ["agent", "role", "domain", "status", "attempts", "input_tokens", "output_tokens", "seconds",
                 "path", "error", "note"]


class Run:
    """One run: its folder on disk and its state. Made by `run`/`arun`, or from disk by `load_run`."""

    def __init__(self, path: Path, state: RunState) -> None:
        self.path = path
        self.state = state

    @property
    def run_id(self) -> str:
        return self.state.run_id

    @property
    def status(self) -> str:
        return self.state.status

    @property
    def summaries(self) -> pd.DataFrame:
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
                "synthesis_path": str(self.path / coordinator.path),
                "input_tokens": sum(a.input_tokens for a in members),
                "output_tokens": sum(a.output_tokens for a in members),
            })
        return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)

    @property
    def agents(self) -> pd.DataFrame:
        import pandas as pd

        rows = [
            {"agent": a.agent, "role": a.role, "domain": a.domain, "status": a.status, "attempts": a.attempts,
             "input_tokens": a.input_tokens, "output_tokens": a.output_tokens, "seconds": a.seconds,
             "path": str(self.path / a.path), "error": a.error, "note": a.note}
            for a in self.state.agents.values()
        ]
        return pd.DataFrame(rows, columns=AGENT_COLUMNS)

    def synthesis(self, domain: str) -> str:
        return (self.path / "synthesis" / f"{domain}.md").read_text(encoding="utf-8")

    def output(self, worker_id: str) -> str:
        return (self.path / "workers" / f"{worker_id}.md").read_text(encoding="utf-8")

    def _domains(self) -> dict[str, list[AgentState]]:
        groups: dict[str, list[AgentState]] = {}
        for agent in self.state.agents.values():
            groups.setdefault(agent.domain, []).append(agent)
        return groups

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {s}" for s, n in sorted(self.state.counts.items()) if n)
        return f"<Run {self.run_id} {self.status}: {counts}; {self.path}>"


def load_run(path: str | os.PathLike[str]) -> Run:
    """Rebuild a run from its folder alone (run.json plus any journal lines written after it)."""
    folder = RunFolder.open(path)
    return Run(folder.path, folder.read_state())
