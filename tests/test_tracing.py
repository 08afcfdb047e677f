"""OpenTelemetry traces: a run's spans mirror its tree (run → domain → agent → attempt → the SDK's call)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import make_spec
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import orchestra_magic as om

QUICKSTART = Path(__file__).parent.parent / "examples" / "quickstart.yaml"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """A configured SDK tracer provider exporting to memory. The global provider can be set once per
    process, so the fixture sets it and puts the unconfigured default back afterwards."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    once: Any = trace._TRACER_PROVIDER_SET_ONCE
    saved = trace._TRACER_PROVIDER, once._done
    once._done = False
    trace.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        trace._TRACER_PROVIDER, once._done = saved
        provider.shutdown()


def by_parent(finished: tuple[ReadableSpan, ...]) -> dict[int | None, list[ReadableSpan]]:
    tree: dict[int | None, list[ReadableSpan]] = {}
    for span in finished:
        tree.setdefault(span.parent.span_id if span.parent else None, []).append(span)
    return tree


def children(tree: dict[int | None, list[ReadableSpan]], span: ReadableSpan) -> list[ReadableSpan]:
    assert span.context is not None
    return tree.get(span.context.span_id, [])


def test_a_run_of_25_agents_is_one_trace_whose_tree_mirrors_the_run(tmp_path: Path,
                                                                    spans: InMemorySpanExporter) -> None:
    run = om.run(str(QUICKSTART), provider="offline", root=tmp_path)
    finished = spans.get_finished_spans()
    assert len({s.context.trace_id for s in finished if s.context}) == 1
    tree = by_parent(finished)
    (root,) = tree[None]
    assert root.name == "run vector-db-review" and root.attributes
    assert root.attributes["orchestra.status"] == "done"
    assert root.attributes["orchestra.output_tokens"] == int(run.agents.output_tokens.sum())
    domains = children(tree, root)
    assert sorted(s.name for s in domains) == sorted(f"domain {d}" for d in run.summaries.domain)
    agents = {}
    for domain in domains:
        for agent in children(tree, domain):
            assert agent.attributes and agent.attributes["orchestra.domain"] == domain.name.split()[1]
            agents[agent.attributes["orchestra.agent"]] = agent
    assert sorted(agents) == sorted(run.agents.agent)
    for row in run.agents.itertuples():
        span = agents[row.agent]
        assert span.attributes
        assert (span.attributes["orchestra.status"], span.attributes["orchestra.output_tokens"]) == (
            "done", row.output_tokens)
        assert span.attributes["orchestra.cost_usd"] == pytest.approx(row.cost_usd)
        (attempt,) = children(tree, span)
        assert attempt.name == "attempt 1"
        calls = children(tree, attempt)  # the anthropic SDK's own span of the API call
        assert len(calls) == 1 and calls[0].attributes
        assert calls[0].attributes.get("gen_ai.usage.output_tokens") == row.output_tokens


def test_retries_are_attempt_spans_and_a_failure_is_an_error(tmp_path: Path, spans: InMemorySpanExporter) -> None:
    provider = om.OfflineProvider(error_rate=0.8, seed=3, retry_after_ms=1)
    run = om.run(make_spec({"a": 4}, attempts=2), provider=provider, root=tmp_path,
                 retry=om.RetryPolicy(attempts=2, base=0.001))
    assert (run.agents.attempts > 1).any() and (run.agents.status == "failed").any()
    tree = by_parent(spans.get_finished_spans())
    (root,) = tree[None]
    agents = {s.attributes["orchestra.agent"]: s for d in children(tree, root) for s in children(tree, d)
              if s.attributes}
    for row in run.agents.itertuples():
        assert len(children(tree, agents[row.agent])) == row.attempts
        assert (agents[row.agent].status.status_code == trace.StatusCode.ERROR) == (row.status == "failed")


def test_without_a_configured_tracer_provider_nothing_more_is_imported(tmp_path: Path) -> None:
    code = ("import sys, orchestra_magic as om\n"
            f"om.run({make_spec({'a': 2})!r}, provider='offline', root={str(tmp_path)!r})\n"
            "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_on_dask_the_sdks_spans_on_the_workers_nest_in_the_engines_attempts(
        tmp_path: Path, spans: InMemorySpanExporter, threads_cluster: Any) -> None:
    run = om.run(make_spec({"a": 3}), provider="offline", root=tmp_path, client=threads_cluster)
    assert run.status == "done"
    finished = spans.get_finished_spans()
    assert len({s.context.trace_id for s in finished if s.context}) == 1
    attempts = {s.context.span_id: s for s in finished if s.name.startswith("attempt") and s.context}
    calls = [s for s in finished if s.parent and s.parent.span_id in attempts]
    assert len(attempts) == len(calls) == 4  # 3 workers and the coordinator, each call under its attempt
