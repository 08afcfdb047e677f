"""Plain (non-streamed) Messages requests: used where streaming buys nothing, with every guarantee a
stream has (the same outputs, usage, rate-limit headers; a cut answer retried, never kept)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import make_spec, run_against

from orchestra_magic.engine.retry import RetryPolicy
from orchestra_magic.errors import TransientAgentError
from orchestra_magic.fake.server import FakeMessagesAPI
from orchestra_magic.providers.anthropic.nonstreamed import answer_of, must_stream
from orchestra_magic.providers.anthropic.provider import AnthropicProvider
from orchestra_magic.providers.base import AgentRequest

STREAMED = 60.0  # a client timeout under a 4,096-token answer's worst case: the provider streams


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    yield


@pytest.mark.parametrize(("model", "max_tokens", "timeout", "streams"), [
    ("claude-sonnet-4-5", 4096, 600.0, False),   # the usual agent: plain
    ("claude-sonnet-4-5", 21_333, 600.0, False),  # just within the SDK's ten minutes
    ("claude-sonnet-4-5", 21_334, 600.0, True),   # the SDK would refuse it plain
    ("claude-sonnet-4-5", 64_000, 600.0, True),
    ("claude-sonnet-4-5", 4096, STREAMED, True),  # could outlast the client's read timeout
    ("claude-opus-4-0", 8192, 600.0, False),      # a model with its own ceiling...
    ("claude-opus-4-0", 8193, 600.0, True),       # ...above it, streamed
    ("us.anthropic.claude-opus-4-20250514-v1:0", 8193, 600.0, True),  # on Bedrock, with its region prefix
    ("anthropic.claude-opus-4-20250514-v1:0", 8192, 600.0, False),
])
def test_only_answers_that_may_be_long_are_streamed(model: str, max_tokens: int, timeout: float,
                                                     streams: bool) -> None:
    assert must_stream(model, max_tokens, timeout) is streams


WHOLE = {"type": "message", "model": "m", "stop_reason": "end_turn", "content": [
    {"type": "thinking", "thinking": "t", "signature": "s"}, {"type": "text", "text": "a"},
    {"type": "text", "text": "b"}], "usage": {"input_tokens": 3, "output_tokens": 4,
                                               "cache_creation_input_tokens": None, "cache_read_input_tokens": 7}}


def _with(**changes: Any) -> bytes:
    return json.dumps({**WHOLE, **changes}).encode()


def test_a_whole_plain_answer_is_read_into_its_fields() -> None:
    answer = answer_of(json.dumps(WHOLE).encode())
    assert (answer.text, answer.input_tokens, answer.output_tokens, answer.model, answer.stop_reason,
            answer.cache_write_tokens, answer.cache_read_tokens) == ("ab", 3, 4, "m", "end_turn", 0, 7)


@pytest.mark.parametrize("body", [
    json.dumps(WHOLE).encode()[:80],                     # cut off halfway
    b"",                                                  # empty
    b"<html>bad gateway</html>",                          # a proxy's page
    b"[]",                                                # JSON, not a message
    _with(type="error"),                                  # not a message
    _with(stop_reason=None),                              # a message not finished
    _with(usage={"output_tokens": 4}),                    # usage without input tokens
    _with(usage={"input_tokens": "3", "output_tokens": 4}),  # a count of the wrong type
    _with(content={"type": "text"}),                      # content not a list
    _with(content=[{"type": "text", "text": 5}]),         # text not a string
    _with(content=[{"text": "a"}]),                       # a block without a type
    _with(model=None),
], ids=["cut", "empty", "html", "list", "error", "unfinished", "no-input", "str-count", "content-dict",
        "text-int", "untyped-block", "no-model"])
def test_a_body_that_is_not_a_whole_message_is_a_transient_fault(body: bytes) -> None:
    with pytest.raises(TransientAgentError, match=r"not valid JSON|not a whole message"):
        answer_of(body)


def _outputs(run_path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_path)): p.read_bytes() for p in sorted(run_path.glob("*/*.md"))}


@pytest.mark.parametrize("settings", [
    {},
    {"context": "Background every agent needs. " * 200},  # a cached prefix: cache tokens in the usage
    {"roles": {"worker": {"output": {"type": "object", "properties": {"n": {"type": "integer"}},
                                     "required": ["n"]}}}},  # structured outputs (output_config)
], ids=["plain", "cached", "structured"])
def test_plain_and_streamed_runs_write_the_same_files_and_usage(tmp_path: Path, settings: dict[str, Any]) -> None:
    runs, bodies = [], []
    for timeout in (600.0, STREAMED):
        fake = FakeMessagesAPI()
        runs.append(run_against(fake, tmp_path / str(timeout), make_spec({"a": 3, "b": 2}, concurrency=1, **settings),
                                provider=lambda url, t=timeout: AnthropicProvider(base_url=url, timeout=t)))
        bodies.append([body.get("stream", False) for body in fake.requests])
    assert bodies == [[False] * 7, [True] * 7]
    plain, streamed = runs
    assert plain.status == streamed.status == "done"
    assert _outputs(plain.path) == _outputs(streamed.path) and len(_outputs(plain.path)) == 7
    columns = ["agent", "input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens", "cost_usd", "note"]
    assert plain.agents[columns].equals(streamed.agents[columns])


def test_a_cut_plain_answer_is_retried_and_never_kept(tmp_path: Path) -> None:
    clean = run_against(FakeMessagesAPI(), tmp_path / "clean", make_spec({"a": 10}))
    fake = FakeMessagesAPI(cut_rate=0.4, seed=5)
    cut = run_against(fake, tmp_path / "cut", make_spec({"a": 10}, attempts=10),
                      retry=RetryPolicy(attempts=10, base=0.01, cap=0.05))
    assert cut.status == "done" and fake.faults["cut"] > 0
    assert not any(body.get("stream") for body in fake.requests)
    assert int(cut.agents.attempts.sum()) == len(fake.requests) > 11
    assert _outputs(cut.path) == _outputs(clean.path)


def test_a_plain_answer_carries_its_rate_limit_headers_and_usage() -> None:
    request = AgentRequest(agent="a-1", role="worker", domain="a", task="t", system="s", prompt="p",
                           model="claude-sonnet-4-5", max_tokens=1024)

    async def main() -> Any:
        fake = FakeMessagesAPI(rpm_limit=50)
        provider = AnthropicProvider(base_url=await fake.start())
        try:
            await provider.start()
            return await provider.complete(request), fake.requests
        finally:
            await provider.close()
            await fake.stop()

    completion, requests = asyncio.run(main())
    assert "stream" not in requests[0]
    assert completion.rate_limit is not None and completion.rate_limit.requests_per_minute == 50
    assert completion.input_tokens > 0 and completion.output_tokens > 0 and completion.stop_reason == "end_turn"
    assert completion.text.startswith("[simulated]")


def lookup_price(vendor: str, tier: int = 1) -> str:
    """Look up a vendor's list price.

    Args:
        vendor: The vendor's name.
        tier: The pricing tier, 1 to 3.
    """
    return f"{vendor} costs $42 at tier {tier}"


def test_a_tool_loop_gives_the_same_answer_plain_or_streamed_and_retries_a_cut_turn(tmp_path: Path) -> None:
    spec = make_spec({"a": 2}, roles={"worker": {"tools": ["lookup_price"], "thinking": 2048}}, attempts=8)
    outputs, bodies = [], []
    for name, timeout, cut in (("plain", 600.0, 0.0), ("streamed", STREAMED, 0.0), ("cut", 600.0, 0.3)):
        fake = FakeMessagesAPI(cut_rate=cut, seed=2)
        run = run_against(fake, tmp_path / name, spec, tools=[lookup_price],
                          provider=lambda url, t=timeout: AnthropicProvider(base_url=url, timeout=t),
                          retry=RetryPolicy(attempts=8, base=0.01, cap=0.05))
        tool_calls = run.agents.tool_calls[run.agents.role == "worker"]
        # a turn cut after the tool ran asks the whole agent again, so its tool runs again (and is counted)
        assert run.status == "done" and ((tool_calls >= 1) if cut else (tool_calls == 1)).all()
        outputs.append(_outputs(run.path))
        bodies.append({bool(body.get("stream")) for body in fake.requests})
        if cut:
            assert fake.faults["cut"] > 0
    assert bodies == [{False}, {True}, {False}]
    assert outputs[0] == outputs[1] == outputs[2] and len(outputs[0]) == 3
