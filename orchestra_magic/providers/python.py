"""The `python` provider: workers and coordinators as plain Python callables.

For fan-outs of ordinary code over data (one worker per file, ticker, paper…) with the same run folder,
progress, resume and results as LLM runs. Sync callables run in a thread so the event loop stays live.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from pydantic import BaseModel

from ..state.events import Role
from ..threads import in_thread
from .base import AgentRequest, Completion, Provider

Answer = str | Mapping[str, Any] | BaseModel | Completion
AgentFunction = Callable[[AgentRequest], "Answer | Awaitable[Answer]"]


def list_coordinator(request: AgentRequest) -> str:
    """The default coordinator: each worker's closing line, and a count as the summary."""
    lines = [f"- {r.agent}: {'missing: ' + r.error if r.text is None else _last_line(r.text)}"
             + (" (truncated: cut off before its end)" if r.truncated else "") for r in request.inputs]
    done = sum(not r.missing for r in request.inputs)
    summary = f"{done} of {len(request.inputs)} workers in {request.domain} produced results."
    return "\n".join([f"# {request.domain}", "", *lines, "", f"<summary>{summary}</summary>"])


def _last_line(text: str) -> str:
    return next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), "(empty)")


class PythonProvider(Provider):
    """`worker(request)` returns the worker's output text; `coordinator(request)` the synthesis, with
    its summary inside <summary></summary> (see `list_coordinator`). Where the role declares an
    `output` (`request.output`), the function returns a dict or a pydantic model instance instead,
    which the engine checks against the schema like any provider's answer."""

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
        return result if isinstance(result, Completion) else Completion(text=_text(result))

    def output_problem(self, role: Role) -> str | None:
        function = self.worker if role == "worker" else self.coordinator
        if function is list_coordinator:
            return ("the python provider's default coordinator writes text; pass coordinator=fn returning a "
                    "dict or a pydantic model to give coordinators an `output`")
        if _returns(function) in (str, "str"):
            return (f"the python provider's {role} function {_qualname(function)} is declared to return str; "
                    f"with roles.{role}.output it must return a dict or a pydantic model")
        return None


def _returns(function: object) -> object:
    try:
        return inspect.signature(function).return_annotation  # type: ignore[arg-type]
    except (TypeError, ValueError):  # a callable with no signature to read
        return None


def _text(result: object) -> str:
    """An answer as the text the engine reads: a dict or a pydantic model as its JSON."""
    if isinstance(result, BaseModel):
        return result.model_dump_json()
    if isinstance(result, Mapping):
        return json.dumps(dict(result), default=str)
    return str(result)


def _qualname(function: object) -> str:
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', type(function).__name__)}"
