"""The fake Messages API's wire format: what a request must hold, and how an answer is made, shaped as a
message and streamed as server-sent events. Shared by the Messages endpoint (`fakeapi`) and the Message
Batches endpoints (`fakebatch`), so an answer is the same whichever way it is asked for."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from . import structured
from . import tools as faketools
from .text import sentence, simulated_text
from .text import tokens as _tokens

CHUNK_CHARS = 40  # characters per streamed delta


class ApiError(Exception):
    """An error response in the API's shape: `{"type": "error", "error": {"type": kind, "message": ...}}`."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.headers = headers or {}


def bad_request(message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message)


def check_auth(request: web.Request) -> None:
    bearer = request.headers.get("Authorization", "")
    if request.headers.get("x-api-key") or (bearer.startswith("Bearer ") and bearer[7:].strip()):
        return
    raise ApiError(401, "authentication_error", "an x-api-key or an Authorization: Bearer header is required")


def validate(body: Any, *, need_max_tokens: bool) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request("request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise bad_request("model: field required (a non-empty string)")
    tokens = body.get("max_tokens")
    if need_max_tokens and (not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1):
        raise bad_request("max_tokens: field required (a positive integer)")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise bad_request("messages: field required (a non-empty list)")
    return body


def _block_text(block: Any, where: str) -> str:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise bad_request(f"{where}: expected a content block object with a type")
    if block["type"] == "text":
        return str(block.get("text", ""))
    if block["type"] == "tool_result":
        return _text_of(block.get("content", ""), f"{where}.content")
    return ""


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise bad_request(f"{where}: expected a string or a list of content blocks")
    return "\n".join(_block_text(block, f"{where}.{i}") for i, block in enumerate(content))


def prompt_of(body: dict[str, Any]) -> tuple[str, str]:
    """(system, conversation text) of a validated body."""
    system = _text_of(body.get("system", ""), "system")
    parts = []
    for i, message in enumerate(body["messages"]):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise bad_request(f"messages.{i}: expected an object with role 'user' or 'assistant'")
        parts.append(_text_of(message.get("content"), f"messages.{i}.content"))
    return system, "\n".join(parts)


@dataclass(frozen=True)
class Reply:
    blocks: tuple[dict[str, Any], ...]
    stop_reason: str
    input_tokens: int  # not counting the cached prefix, as the real API reports it
    output_tokens: int
    cache_write: int = 0
    cache_read: int = 0
    server_tool_use: tuple[tuple[str, int], ...] = ()  # `usage.server_tool_use`, when server tools ran


def cacheable_prefix(body: dict[str, Any]) -> str:
    """The system text up to its last `cache_control` breakpoint ("" when there is none)."""
    system = body.get("system")
    if not isinstance(system, list):
        return ""
    marked = [i for i, b in enumerate(system) if isinstance(b, dict) and b.get("cache_control")]
    if not marked:
        return ""
    return "\n".join(str(b.get("text", "")) for b in system[: marked[-1] + 1] if isinstance(b, dict))


def _task(body: dict[str, Any]) -> str:
    """The first user turn: what the agent was asked (tools it names are called; searches are about it)."""
    return _text_of(body["messages"][0].get("content"), "messages.0.content")


def wants_schema(body: dict[str, Any]) -> bool:
    """The request asks for structured output (`output_config.format`); a malformed one is a 400."""
    try:
        return structured.requested_schema(body) is not None
    except ValueError as exc:
        raise bad_request(str(exc)) from None


def check_window(body: dict[str, Any], window: int) -> None:
    """Refuse a request that does not fit the model's context window, as the API does: the prompt alone
    over the window, or the prompt plus `max_tokens`."""
    system, prompt = prompt_of(body)
    used = _tokens(system + prompt)
    if used > window:
        raise bad_request(f"prompt is too long: {used} tokens > {window} maximum")
    if used + body["max_tokens"] > window:
        raise bad_request(f"input length and `max_tokens` exceed context limit: {used} + {body['max_tokens']} > "
                          f"{window}, decrease input length or `max_tokens` and try again")


def reply_to(body: dict[str, Any], invalid: bool = False, length: int | None = None) -> Reply:
    """The answer to a validated request. `invalid`: a structured answer is made not to fit its schema;
    `length`: a text answer of about that many tokens (up to `max_tokens`)."""
    system, prompt = prompt_of(body)
    if (wrong := faketools.problem(body)) is not None:
        raise bad_request(wrong)
    wants_schema(body)
    asked = {key: value for key, value in body.items() if key != "stream"}  # streamed or not, the same answer
    digest = hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()
    blocks: list[dict[str, Any]] = []
    if faketools.thinking_requested(body):
        blocks.append(faketools.thinking_block(sentence(random.Random(int(digest, 16)))))
    task = _task(body)
    server = faketools.server_step(body, task, digest)
    blocks += server.blocks
    input_tokens = _tokens(system + prompt + (json.dumps(server.blocks) if server.blocks else ""))
    tool = None if server.more else faketools.next_tool(body, task)
    if server.more:
        stop = "pause_turn"
    elif tool is not None:
        blocks.append(faketools.tool_use_block(tool, digest))
        stop = "tool_use"
    else:
        text = _final_text(body, system, prompt, blocks, digest, invalid, length)
        stop = "end_turn"
        room = body["max_tokens"] - sum(_tokens(b["thinking"]) for b in blocks if b["type"] == "thinking")
        if _tokens(text) > room:  # thinking counts against max_tokens too
            text, stop = text[: max(0, room) * 4], "max_tokens"
        blocks.append({"type": "text", "text": text})
    return Reply(tuple(blocks), stop, input_tokens, _tokens(faketools.written(blocks)),
                  server_tool_use=tuple(server.usage.items()))


def _final_text(body: dict[str, Any], system: str, prompt: str, blocks: list[dict[str, Any]], digest: str,
                invalid: bool, length: int | None) -> str:
    schema = structured.requested_schema(body)
    if schema is None:
        return faketools.with_quotes(simulated_text(system, prompt, body["model"], length), body, blocks)
    rng = random.Random(int(digest, 16))
    answer = structured.fitting_answer(schema, rng)
    return json.dumps(structured.broken(answer, schema, rng) if invalid else answer)


def _usage(reply: Reply, output_tokens: int) -> dict[str, Any]:
    usage: dict[str, Any] = {"input_tokens": reply.input_tokens, "output_tokens": output_tokens,
                             "cache_creation_input_tokens": reply.cache_write,
                             "cache_read_input_tokens": reply.cache_read}
    if reply.server_tool_use:
        usage["server_tool_use"] = dict(reply.server_tool_use)
    return usage


def message_of(msg_id: str, model: str, reply: Reply) -> dict[str, Any]:
    return {"id": msg_id, "type": "message", "role": "assistant", "model": model, "content": list(reply.blocks),
            "stop_reason": reply.stop_reason, "stop_sequence": None,
            "usage": _usage(reply, reply.output_tokens)}


def _deltas(block: dict[str, Any]) -> Iterator[dict[str, str]]:
    """Text, thinking and tool input arrive in pieces (a thinking block's signature last, on its own);
    result blocks of server tools arrive whole in their `content_block_start`."""
    kind = block["type"]
    if kind in ("text", "thinking"):
        text = block[kind]
        for i in range(0, len(text), CHUNK_CHARS):
            yield {"type": f"{kind}_delta", kind: text[i : i + CHUNK_CHARS]}
        if kind == "thinking":
            yield {"type": "signature_delta", "signature": block["signature"]}
    elif kind in ("tool_use", "server_tool_use"):
        raw = json.dumps(block["input"])
        for i in range(0, len(raw), CHUNK_CHARS):
            yield {"type": "input_json_delta", "partial_json": raw[i : i + CHUNK_CHARS]}


def stream_events(message: dict[str, Any], reply: Reply) -> Iterator[dict[str, Any]]:
    """The events of one streamed message, in the API's order; each event's name is its `type`."""
    start = {**message, "content": [], "stop_reason": None, "usage": _usage(reply, 1)}
    yield {"type": "message_start", "message": start}
    for index, block in enumerate(reply.blocks):
        yield {"type": "content_block_start", "index": index, "content_block": faketools.opening(block)}
        if index == 0:
            yield {"type": "ping"}
        for delta in _deltas(block):
            yield {"type": "content_block_delta", "index": index, "delta": delta}
        yield {"type": "content_block_stop", "index": index}
    final_usage: dict[str, Any] = {"output_tokens": reply.output_tokens}
    if reply.server_tool_use:
        final_usage["server_tool_use"] = dict(reply.server_tool_use)
    yield {"type": "message_delta", "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
           "usage": final_usage}
    yield {"type": "message_stop"}


def sse(event: dict[str, Any]) -> bytes:
    """One server-sent event. The SDK skips events without an `event:` line, so it is always there."""
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


async def read_json(request: web.Request) -> Any:
    """The parsed body, or None when it is not JSON (validation then names the problem)."""
    try:
        return json.loads(await request.read())
    except ValueError:
        return None
