"""OpenTelemetry traces of a run: one span for the run, one per domain inside it, one per agent inside
its domain, one per attempt inside its agent — and inside each attempt, the anthropic SDK's own span of
the API call, since the attempt span is the current one while the call runs (on a Dask worker too: the
task carries the trace context). Agent spans carry tokens, cost, attempts and status; the run and domain
spans their totals.

Off unless the application configured an OpenTelemetry SDK tracer provider (`trace.set_tracer_provider`
or `opentelemetry-instrument`; `pip install "orchestra_magic[otel]"` brings the SDK). Deciding that
imports nothing: without `opentelemetry.trace` already imported nobody can have configured one, and
with only the API's default provider there is nothing to export to. Off, the engine's hot path pays one
shared `nullcontext` per attempt.
"""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ..state.events import AgentFinished, AgentStarted, Event, RunFinished
from ..state.run import RunState
from ..state.usage import Usage

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

UNTRACED: AbstractContextManager[None] = contextlib.nullcontext()
_PREFIX = "orchestra."


def tracer() -> Tracer | None:
    """The configured tracer, or None when no OpenTelemetry SDK tracer provider is set up."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return provider.get_tracer("orchestra_magic")  # type: ignore[no-any-return]


class RunTracing:
    """The spans of one run, opened and closed from its events (a listener) and around each attempt."""

    def __init__(self, tracer: Tracer, state: RunState) -> None:
        self._tracer = tracer
        self._run = tracer.start_span(f"run {state.name}", attributes=_attributes(
            run_id=state.run_id, provider=state.provider, agents=len(state.agents)))
        self._domains: dict[str, Span] = {}
        self._agents: dict[str, Span] = {}
        self._left = Counter(agent.domain for agent in state.agents.values())  # agents not finished, per domain

    def on_event(self, event: Event, state: RunState) -> None:
        if isinstance(event, AgentStarted):
            self._agent(event.agent, state)
        elif isinstance(event, AgentFinished):
            self._finish_agent(event, state)
        elif isinstance(event, RunFinished):
            self._finish_run(event, state)

    def attempt(self, agent: str, attempt: int) -> AbstractContextManager[Any]:
        """The attempt's span, current while the call runs, so the SDK's span of the call nests in it."""
        from opentelemetry import trace

        parent = trace.set_span_in_context(self._agents[agent]) if agent in self._agents else None
        return self._tracer.start_as_current_span(f"attempt {attempt}", context=parent,
                                                  attributes=_attributes(agent=agent, attempt=attempt))

    def _agent(self, key: str, state: RunState) -> Span:
        from opentelemetry import trace

        span = self._agents.get(key)
        if span is None:
            agent = state.agents[key]
            domain = self._domains.get(agent.domain)
            if domain is None:
                domain = self._domains[agent.domain] = self._tracer.start_span(
                    f"domain {agent.domain}", context=trace.set_span_in_context(self._run),
                    attributes=_attributes(domain=agent.domain))
            span = self._agents[key] = self._tracer.start_span(
                f"{agent.role} {key}", context=trace.set_span_in_context(domain),
                attributes=_attributes(agent=key, role=agent.role, domain=agent.domain))
        return span

    def _finish_agent(self, event: AgentFinished, state: RunState) -> None:
        """Skipped and cancelled agents that never started get a span too, so the tree is the run's."""
        from opentelemetry.trace import Status, StatusCode

        agent = state.agents[event.agent]
        span = self._agent(event.agent, state)
        span.set_attributes(_attributes(status=event.status, attempts=agent.attempts, cost_usd=event.cost_usd,
                                        input_tokens=event.usage.input_tokens,
                                        output_tokens=event.usage.output_tokens,
                                        cache_read_tokens=event.usage.cache_read_tokens,
                                        cache_write_tokens=event.usage.cache_write_tokens))
        if event.status == "failed":
            span.set_status(Status(StatusCode.ERROR, event.error[:500]))
        span.end()
        self._left[agent.domain] -= 1
        if not self._left[agent.domain]:
            self._finish_domain(agent.domain, state)

    def _finish_domain(self, name: str, state: RunState) -> None:
        members = [a for a in state.agents.values() if a.domain == name]
        used = sum((a.usage for a in members), Usage())
        self._domains[name].set_attributes(_attributes(
            workers=sum(a.role == "worker" for a in members), failed=sum(a.status == "failed" for a in members),
            input_tokens=used.input_tokens, output_tokens=used.output_tokens,
            cost_usd=_total([a.cost_usd for a in members if a.usage.input_tokens])))
        self._domains[name].end()

    def _finish_run(self, event: RunFinished, state: RunState) -> None:
        from opentelemetry.trace import Status, StatusCode

        for span in (*self._agents.values(), *self._domains.values()):
            if span.is_recording():  # ended already, unless the run stopped around it
                span.end()
        self._run.set_attributes(_attributes(
            status=event.status, input_tokens=state.input_tokens, output_tokens=state.output_tokens,
            cost_usd=_total([a.cost_usd for a in state.agents.values() if a.usage.input_tokens])))
        if event.status != "done":
            self._run.set_status(Status(StatusCode.ERROR, event.reason[:500]))
        self._run.end()


def _attributes(**values: Any) -> dict[str, Any]:
    """Namespaced attributes; a None (an unpriced cost) is left out rather than shown as 0."""
    return {_PREFIX + name: value for name, value in values.items() if value is not None}


def _total(costs: list[float | None]) -> float | None:
    return None if None in costs else sum(c for c in costs if c is not None)


def carrier() -> dict[str, str]:
    """The current trace context as W3C headers, for a call that runs elsewhere (a Dask task); empty
    when nothing is traced."""
    if tracer() is None:
        return {}
    from opentelemetry import propagate

    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


@contextlib.contextmanager
def attached(headers: dict[str, str]) -> Iterator[None]:
    """Make the context in `headers` current (on the worker side of a Dask task); nothing when empty."""
    if not headers:
        yield
        return
    from opentelemetry import context, propagate

    token = context.attach(propagate.extract(headers))
    try:
        yield
    finally:
        context.detach(token)
