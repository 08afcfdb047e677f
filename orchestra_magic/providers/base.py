"""The one seam between the engine and a backend: `Provider.complete(AgentRequest) -> Completion`.

A provider never sees the run folder or the scheduler, and the engine never sees SDK types. Adding a
backend is a short class: `complete` plus, if it holds resources, `start` and `close`.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..state.events import Role
from ..state.usage import Usage

if TYPE_CHECKING:
    from ..spec.model import Spec
    from ..tools.catalog import PythonTool  # the request carries them: the tool loop runs in the provider


@dataclass(frozen=True, slots=True)
class WorkerResult:
    """A worker's output as handed to its coordinator; `text` is None when the worker has none."""

    agent: str
    path: str
    text: str | None
    error: str = ""
    truncated: bool = False  # the worker's output is cut off: its coordinator is told so

    @property
    def missing(self) -> bool:
        return self.text is None


@dataclass(frozen=True, slots=True)
class Bucket:
    """One bucket as the headers give it: its per-minute limit and what is left of it now."""

    limit: int
    remaining: int


@dataclass(frozen=True, slots=True)
class RateLimit:
    """What an answer's `anthropic-ratelimit-*` headers said: the request bucket (a limit of 0: the answer
    did not say) and, where given, the input- and output-token buckets. A provider reports it with its
    answer; the engine's throttle paces on it."""

    requests_per_minute: int = 0
    remaining: int = 0
    input_tokens: Bucket | None = None
    output_tokens: Bucket | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRequest:
    """Everything one agent call needs. LLM providers use `system`/`prompt`; code uses `task`/`inputs`."""

    agent: str
    role: Role
    domain: str
    task: str
    system: str
    prompt: str
    model: str
    max_tokens: int
    effort: str | None = None  # low, medium, high, xhigh, max
    thinking: int | str | None = None  # "adaptive" or an extended-thinking budget in tokens
    mode: str = "messages"  # or "batch": send through the Message Batches API
    tools: tuple[str, ...] = ()  # tool names, resolved by the provider
    max_tool_turns: int = 8
    inputs: tuple[WorkerResult, ...] = ()
    tool_functions: Mapping[str, PythonTool] = field(default_factory=dict)  # the Python ones among `tools`
    run_folder: str = ""  # absolute; where the built-in file tools and `workspace()` work
    output: Mapping[str, Any] | None = None  # the JSON Schema the answer must fit (`roles.<role>.output`)


@dataclass(frozen=True, slots=True)
class Completion:
    text: str
    input_tokens: int = 0  # billed at full price (a cached prefix is counted below instead)
    output_tokens: int = 0
    model: str = ""
    stop_reason: str = ""
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    batch: bool = False  # answered through the Message Batches API (billed at half price)
    regional: bool = False  # served by a cloud's regional endpoint (billed at its premium; see pricing)
    rate_limit: RateLimit | None = None  # what the answer's rate-limit headers said, when it had them
    tool_calls: int = 0  # Python tool calls the provider ran for this agent
    server_tool_calls: int = 0  # server tool uses (web searches, fetches, code runs), billed by the API
    turns: tuple[Completion, ...] = ()  # a tool loop's Messages calls, each priced on its own
    truncated: bool = False  # the answer is cut off (the model hit `max_tokens`): done, but flagged

    @property
    def usage(self) -> Usage:
        """Its counters as one value, as the engine adds them up. (Providers still give them as fields,
        positionally in places: a constructor that took a `Usage` would change every provider at once.)"""
        return Usage(self.input_tokens, self.output_tokens, self.cache_write_tokens, self.cache_read_tokens,
                     self.tool_calls, self.server_tool_calls)


# The Messages API's stop reasons for an answer the model did not get to finish.
CUT_OFF_STOPS = frozenset({"max_tokens", "model_context_window_exceeded"})


class Provider(abc.ABC):
    """A backend that answers agent requests. Raise `TransientAgentError` for what is worth retrying,
    `AgentError` for what is not; the engine owns retries, timeouts and cancellation."""

    name: str = "provider"
    # Answers `mode: batch` requests through a batch API. The engine then gives such agents no
    # concurrency slot and no per-attempt timeout: they wait on a batch, not on an open connection.
    batches: bool = False

    def __repr__(self) -> str:
        """Its name only: a provider may hold a key, and a repr is shown and logged."""
        return f"<{type(self).__name__} {self.name}>"

    @property
    def identity(self) -> str:
        """Part of every agent's input hash: changing it makes a resumed run redo the agents."""
        return self.name

    def check(self, spec: Spec) -> None:  # noqa: B027 (optional hook)
        """Refuse a spec this backend cannot honour (a cloud without batches, say) with a `ConfigError`,
        before the run folder exists; called before `start`."""

    async def start(self) -> None:  # noqa: B027 (optional hook)
        """Check configuration and acquire resources; raise `ConfigError` for the user's mistakes."""

    async def close(self) -> None:  # noqa: B027 (optional hook)
        """Release what `start` acquired."""

    def output_problem(self, role: Role) -> str | None:
        """Why this provider cannot give `role`'s agents typed answers (`roles.<role>.output`), or None
        when it can. Asked before anything runs, so a run is never half done before the mismatch shows."""
        return None

    def for_workers(self) -> Provider:
        """A copy to run in other processes (the dask executor's workers): picklable, not started, and
        holding no secret; each worker process starts its copy once. A provider whose state pickles
        as it is (the python provider's functions travel with cloudpickle) returns itself."""
        return self

    @abc.abstractmethod
    async def complete(self, request: AgentRequest) -> Completion:
        """Answer one agent's request: its text, what it cost (tokens, tool calls) and whether it was cut
        off. Raise `TransientAgentError` for what is worth asking again (the engine waits and retries,
        by its one policy) and `AgentError` for what is not; never retry here, and let cancellation
        through: Stop, timeouts and budgets cancel this call."""
