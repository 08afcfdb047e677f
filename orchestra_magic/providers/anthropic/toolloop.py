"""The anthropic provider's tool-use loop: our own, bounded, on the plain Messages API.

Why not the SDK's `tool_runner`: it lives under `client.beta`, and we want one Messages call per turn
with our own error mapping, a hard bound on turns, and usage summed over every turn. Each turn:
- `tool_use`: run the Python tools the model asked for (concurrently; a raising tool becomes a
  `tool_result` with `is_error: true`, so the model can recover), append the assistant content verbatim
  (thinking blocks and their signatures included, as the API requires) and the results, go again;
- `pause_turn`: the API paused a long server-tool turn; send its content back as is to continue;
- anything else ends the agent. Its text is the final turn's text blocks (with the text of the
  paused segments of that same turn before it); server tool blocks pass through untouched.
A tool turn past `max_tool_turns` fails the agent rather than producing an answer the model never got
to finish. However the loop ends early (it fails, times out or is stopped), the exception carries the
calls its turns were billed for (`spent`), so the run's cost and budget count them; each call is
priced on its own (`Completion.turns`), as the API bills them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic
from anthropic.types import Message, ToolUseBlock

from ...errors import AgentError, leave_spent
from ...tools.catalog import server_tool
from ...tools.context import tool_context
from ..base import CUT_OFF_STOPS, AgentRequest, Completion, RateLimit

# One Messages call: the answer and what its rate-limit headers said (the throttle paces on the last).
Turn = Callable[[dict[str, Any]], Awaitable[tuple[Message, RateLimit | None]]]
MAX_RESULT_CHARS = 100_000  # a tool result longer than this is cut: it would crowd out the task
MAX_ERROR_CHARS = 1_000


@dataclass
class _Tally:
    """What one agent's loop has done: each Messages call's usage (priced one by one, summed for the
    agent), the tool calls it ran, and the last rate-limit headers."""

    calls: list[Completion] = field(default_factory=list)
    tool_calls: int = 0
    server_tool_calls: int = 0
    turns: int = 0
    rate_limit: RateLimit | None = None

    def add(self, message: Message, rate_limit: RateLimit | None) -> None:
        usage = message.usage
        self.calls.append(Completion("", usage.input_tokens, usage.output_tokens, message.model,
                                     cache_write_tokens=usage.cache_creation_input_tokens or 0,
                                     cache_read_tokens=usage.cache_read_input_tokens or 0))
        self.rate_limit = rate_limit or self.rate_limit
        self.server_tool_calls += sum(block.type == "server_tool_use" for block in message.content)

    def total(self, name: str) -> int:
        return sum(getattr(call, name) for call in self.calls)

    def completion(self, text: str = "", stop_reason: str = "") -> Completion:
        return Completion(text, self.total("input_tokens"), self.total("output_tokens"), self.calls[-1].model,
                          stop_reason, self.total("cache_write_tokens"), self.total("cache_read_tokens"),
                          rate_limit=self.rate_limit, tool_calls=self.tool_calls,
                          server_tool_calls=self.server_tool_calls, turns=tuple(self.calls),
                          truncated=stop_reason in CUT_OFF_STOPS)


def definitions(request: AgentRequest) -> list[dict[str, Any]]:
    """The `tools` parameter, in the spec's order; the same for every agent of a role, so it stays
    inside the cached prompt prefix."""
    return [server_tool(name) or request.tool_functions[name].definition() for name in request.tools]


async def complete_with_tools(turn: Turn, request: AgentRequest, params: dict[str, Any]) -> Completion:
    """Run `request` to its final answer, calling `turn` once per Messages call."""
    tally = _Tally()
    try:
        return await _loop(turn, request, params, tally)
    except (AgentError, asyncio.CancelledError) as exc:  # failed, timed out or stopped
        if tally.calls:  # at least one turn was answered, and billed
            leave_spent(exc, tally.completion())
        raise


async def _loop(turn: Turn, request: AgentRequest, params: dict[str, Any], tally: _Tally) -> Completion:
    messages: list[dict[str, Any]] = list(params["messages"])
    texts: list[str] = []
    tools = definitions(request)
    with tool_context(request):
        while True:
            message, rate_limit = await turn({**params, "messages": messages, "tools": tools})
            tally.add(message, rate_limit)
            calls = [block for block in message.content if block.type == "tool_use"]
            paused = message.stop_reason == "pause_turn"
            if not paused and not (message.stop_reason == "tool_use" and calls):
                return tally.completion("".join([*texts, text_of(message)]), message.stop_reason or "")
            if tally.turns >= request.max_tool_turns:
                raise AgentError(_over_limit(request, tally, [c.name for c in calls]))
            tally.turns += 1
            _append(messages, "assistant", message.content)
            if paused:
                texts.append(text_of(message))
                continue
            texts.clear()
            tally.tool_calls += len(calls)
            _append(messages, "user", await asyncio.gather(*(_run(request, call) for call in calls)))


def text_of(message: Message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def _append(messages: list[dict[str, Any]], role: str, content: Sequence[Any]) -> None:
    """A paused turn continued twice stays one assistant message, as the API sees one turn."""
    if messages and messages[-1]["role"] == role and isinstance(messages[-1]["content"], list):
        messages[-1] = {"role": role, "content": [*messages[-1]["content"], *content]}
    else:
        messages.append({"role": role, "content": list(content)})


async def _run(request: AgentRequest, call: ToolUseBlock) -> dict[str, Any]:
    tool = request.tool_functions.get(call.name)
    result: dict[str, Any] = {"type": "tool_result", "tool_use_id": call.id}
    try:
        if tool is None:
            raise LookupError(f"no tool named {call.name!r} is offered to this agent")
        if not isinstance(call.input, dict):
            raise TypeError("the tool's input must be a JSON object")
        result["content"] = result_content(await tool.call(call.input))
    except Exception as exc:  # the model gets the error and may try again; the agent goes on
        result["content"], result["is_error"] = error_text(exc), True
    return result


def result_content(output: Any) -> str | list[dict[str, Any]]:
    """A tool's return value as `tool_result` content: text, content blocks as they are, or JSON."""
    if isinstance(output, list) and output and all(isinstance(b, dict) and "type" in b for b in output):
        return output
    if output is None:
        return "(the tool returned nothing)"
    text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False, default=str)
    if len(text) > MAX_RESULT_CHARS:
        return text[:MAX_RESULT_CHARS] + f"\n[... cut: {len(text) - MAX_RESULT_CHARS:,} more characters]"
    return text


def error_text(exc: Exception) -> str:
    if isinstance(exc, pydantic.ValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}" for e in exc.errors())
        return f"invalid arguments: {problems}"[:MAX_ERROR_CHARS]
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]


def _over_limit(request: AgentRequest, tally: _Tally, wanted: list[str]) -> str:
    asked = f"it asked for {', '.join(wanted)}" if wanted else "its turn was still paused"
    turns = f"{request.max_tool_turns} tool turn{'s' if request.max_tool_turns > 1 else ''}"
    return (f"used all {turns} (max_tool_turns) and still wanted more: {asked}. "
            f"Raise max_tool_turns for the {request.role}s (roles.{request.role}.max_tool_turns) or narrow "
            f"the task. Spent {tally.total('input_tokens'):,} input and {tally.total('output_tokens'):,} output tokens")
