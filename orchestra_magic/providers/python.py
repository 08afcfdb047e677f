"""The `python` provider: workers and coordinators as plain Python callables.

For fan-outs of ordinary code over data (one worker per file, ticker, paper…) with the same run folder,
progress, resume and results as LLM runs. Sync callables run in a thread so the event loop stays live.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable

from ..threads import in_thread
from .base import AgentRequest, Completion, Provider

AgentFunction = Callable[[AgentRequest], "str | Completion | Awaitable[str | Completion]"]


def list_coordinator(request: AgentRequest) -> str:
    """The default coordinator: each worker's closing line, and a count as the summary."""
    lines = [f"- {r.agent}: {'missing: ' + r.error if r.text is None else _last_line(r.text)}"
             for r in request.inputs]
    done = sum(not r.missing for r in request.inputs)
    summary = f"{done} of {len(request.inputs)} workers in {request.domain} produced results."
    return "\n".join([f"# {request.domain}", "", *lines, "", f"<summary>{summary}</summary>"])


def _last_line(text: str) -> str:
    return next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "(empty)")


class PythonProvider(Provider):
    """`worker(request)` returns the worker's output text; `coordinator(request)` the synthesis, with
    its summary inside <summary></summary> (see `list_coordinator`)."""

    name = "python"

    def __init__(self, worker: AgentFunction, coordinator: AgentFunction | None = None) -> None:
        self.worker = worker
        self.coordinator = coordinator or list_coordinator

    @property
    def identity(self) -> str:
        return f"python:{_qualname(self.worker)}:{_qualname(self.coordinator)}"

    async def complete(self, request: AgentRequest) -> Completion:
        function = self.worker if request.role == "worker" else self.coordinator
        if inspect.iscoroutinefunction(function):
            result = await function(request)
        else:
            result = await in_thread(function, request)
            if inspect.isawaitable(result):
                result = await result
        return result if isinstance(result, Completion) else Completion(text=str(result))


def _qualname(function: object) -> str:
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', type(function).__name__)}"
