"""Where a running tool may keep files: the agent it runs for, and that agent's workspace folder.

A context variable, so each agent's task (and the threads its sync tools run in) sees its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..providers.base import AgentRequest


@dataclass(frozen=True, slots=True)
class ToolContext:
    """The agent a tool is running for, and its folders. `workspace` is inside `run_folder`."""

    agent: str
    run_folder: Path
    workspace: Path


_CURRENT: ContextVar[ToolContext | None] = ContextVar("orchestra_magic_tool_context", default=None)


def workspace_of(request: AgentRequest) -> str:
    """An agent's workspace, relative to the run folder: one folder per agent, so no agent can
    reach another's files through the built-in write tool."""
    if request.role == "worker":
        return f"workspace/workers/{request.agent}"
    if request.role == "subcoordinator":  # keyed subcoordinator:<domain>:<tier>-<n>
        return f"workspace/subcoordinators/{request.domain}/{request.agent.rsplit(':', 1)[1]}"
    return f"workspace/coordinators/{request.domain}"


@contextmanager
def tool_context(request: AgentRequest) -> Iterator[None]:
    """Tools called inside this block run for `request`'s agent (a context variable, so each
    agent's task, and the threads its sync tools run in, see their own)."""
    run_folder = Path(request.run_folder) if request.run_folder else None
    context = None if run_folder is None else ToolContext(request.agent, run_folder,
                                                           run_folder / workspace_of(request))
    token = _CURRENT.set(context)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current_context() -> ToolContext:
    context = _CURRENT.get()
    if context is None:
        raise RuntimeError("no agent is running a tool here: workspace() and the file tools work only "
                           "inside a tool call of a run")
    return context


def workspace() -> Path:
    """The calling agent's own folder inside the run folder, created on first use: the place for
    files a Python tool makes. Call it from inside a tool (`om.workspace()`)."""
    folder = current_context().workspace
    folder.mkdir(parents=True, exist_ok=True)
    return folder
