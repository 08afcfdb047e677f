"""A local fake of Anthropic's Messages API, speaking the real wire format.

Why: tests, demos and the `offline` provider run the official `anthropic` SDK, unmodified, with no key
and no network. Pointed at this server (`base_url` or `ANTHROPIC_BASE_URL`), the SDK parses JSON messages,
server-sent events, error bodies and retry headers through the same code paths as against the real API.

What it simulates:
- `POST /v1/messages`, as JSON or as a stream of server-sent events (`"stream": true`), with
  deterministic text: the same request gets the same answer. Every text starts with `[simulated]`.
  A prompt that asks for a `<summary>` gets one; other answers end with a `Done. ...` line.
- Tool use, server tools and thinking blocks (see `faketools` for the rules): each offered tool is
  called once with arguments made from its schema, server tools answer with their result blocks, and
  the final text quotes every tool result; thinking blocks carry signatures the fake checks.
- `max_tokens`: text longer than allowed is cut, with `stop_reason: "max_tokens"`.
- Authentication (`x-api-key` or `Authorization: Bearer`), body validation, and injected 429 / 529 /
  500 errors drawn from a seeded RNG, all with the real error body shape and headers.
- Latency before the first byte, token usage estimates (about 4 characters per token), rate-limit
  headers, and `POST /v1/messages/count_tokens`.
- The Message Batches endpoints, on the same server (see `fakebatch`; records in `batches`).
It never logs, stores or echoes the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import math
import random
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from . import faketools
from .fakelimits import RequestBucket
from .faketext import sentence, simulated_text
from .faketext import tokens as _tokens
from .faketools import SIMULATED_MARK as SIMULATED_MARK  # re-exported: tests and users read it here

CHUNK_CHARS = 40
RATE_LIMIT = 1_000_000  # advertised when no --rpm limit is enforced: a figure no run reaches
MIN_CACHE_TOKENS = 1024  # shorter prefixes are not cached (the API's minimum for most models)
_REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 529: "Overloaded"}
_INJECTED = {429: "rate_limit_error", 529: "overloaded_error", 500: "api_error"}
_HTTP_KINDS = {404: "not_found_error", 405: "not_found_error", 413: "request_too_large"}

class ApiError(Exception):
    """An error response in the API's shape: `{"type": "error", "error": {"type": kind, "message": ...}}`."""

    def __init__(self, status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.kind, self.message = status, kind, message
        self.headers = headers or {}


def _bad(message: str) -> ApiError:
    return ApiError(400, "invalid_request_error", message)


def _check_auth(request: web.Request) -> None:
    bearer = request.headers.get("Authorization", "")
    if request.headers.get("x-api-key") or (bearer.startswith("Bearer ") and bearer[7:].strip()):
        return
    raise ApiError(401, "authentication_error", "an x-api-key or an Authorization: Bearer header is required")


def _validate(body: Any, *, need_max_tokens: bool) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _bad("request body must be a JSON object")
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise _bad("model: field required (a non-empty string)")
    tokens = body.get("max_tokens")
    if need_max_tokens and (not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 1):
        raise _bad("max_tokens: field required (a positive integer)")
    if not isinstance(body.get("messages"), list) or not body["messages"]:
        raise _bad("messages: field required (a non-empty list)")
    return body


def _block_text(block: Any, where: str) -> str:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise _bad(f"{where}: expected a content block object with a type")
    if block["type"] == "text":
        return str(block.get("text", ""))
    if block["type"] == "tool_result":
        return _text_of(block.get("content", ""), f"{where}.content")
    return ""


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad(f"{where}: expected a string or a list of content blocks")
    return "\n".join(_block_text(block, f"{where}.{i}") for i, block in enumerate(content))


def _prompt(body: dict[str, Any]) -> tuple[str, str]:
    """(system, conversation text) of a validated body."""
    system = _text_of(body.get("system", ""), "system")
    parts = []
    for i, message in enumerate(body["messages"]):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
            raise _bad(f"messages.{i}: expected an object with role 'user' or 'assistant'")
        parts.append(_text_of(message.get("content"), f"messages.{i}.content"))
    return system, "\n".join(parts)


@dataclass(frozen=True)
class _Reply:
    blocks: tuple[dict[str, Any], ...]
    stop_reason: str
    input_tokens: int  # not counting the cached prefix, as the real API reports it
    output_tokens: int
    cache_write: int = 0
    cache_read: int = 0
    server_tool_use: tuple[tuple[str, int], ...] = ()  # `usage.server_tool_use`, when server tools ran


def _cacheable_prefix(body: dict[str, Any]) -> str:
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


def _reply(body: dict[str, Any]) -> _Reply:
    system, prompt = _prompt(body)
    if (wrong := faketools.problem(body)) is not None:
        raise _bad(wrong)
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
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
        text = faketools.with_quotes(simulated_text(system, prompt, body["model"]), body, blocks)
        stop = "end_turn"
        room = body["max_tokens"] - sum(_tokens(b["thinking"]) for b in blocks if b["type"] == "thinking")
        if _tokens(text) > room:  # thinking counts against max_tokens too
            text, stop = text[: max(0, room) * 4], "max_tokens"
        blocks.append({"type": "text", "text": text})
    return _Reply(tuple(blocks), stop, input_tokens, _tokens(faketools.written(blocks)),
                  server_tool_use=tuple(server.usage.items()))


def _usage(reply: _Reply, output_tokens: int) -> dict[str, Any]:
    usage: dict[str, Any] = {"input_tokens": reply.input_tokens, "output_tokens": output_tokens,
                             "cache_creation_input_tokens": reply.cache_write,
                             "cache_read_input_tokens": reply.cache_read}
    if reply.server_tool_use:
        usage["server_tool_use"] = dict(reply.server_tool_use)
    return usage


def _message(msg_id: str, model: str, reply: _Reply) -> dict[str, Any]:
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


def _stream_events(message: dict[str, Any], reply: _Reply) -> Iterator[dict[str, Any]]:
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


def _sse(event: dict[str, Any]) -> bytes:
    """One server-sent event. The SDK skips events without an `event:` line, so it is always there."""
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


class FakeMessagesAPI:
    """The fake, served by aiohttp in the running event loop: `await start()`, point the SDK at
    `base_url`, `await stop()`. `requests` holds every JSON body posted to /v1/messages, in order;
    `answers` every message sent back (as JSON, streamed or not); `responses` counts the responses
    sent by HTTP status; `batches` holds the message batches."""

    def __init__(self, *, latency_ms: float = 0, error_rate: float = 0.0, seed: int = 0,
                 retry_after_ms: int = 20, cut_rate: float = 0.0, stall_rate: float = 0.0,
                 stall_ms: float = 5000, rpm_limit: int | None = None, rpm_burst: int | None = None,
                 batch_ms: float = 0, entry_error: Callable[[dict[str, Any]], str | None] | None = None) -> None:
        from .fakebatch import FakeBatches  # here, not at the top: fakebatch builds on this module

        self.latency_ms, self.error_rate, self.seed = latency_ms, error_rate, seed
        # A requests-per-minute limit enforced like the API's (see fakelimits); None: unlimited.
        self.bucket = RequestBucket(rpm_limit, rpm_burst) if rpm_limit else None
        self.retry_after_ms = retry_after_ms
        # Faults beyond error statuses: a stream cut off halfway (the connection drops), and an answer
        # that stalls for `stall_ms` (longer than a client's timeout).
        self.cut_rate, self.stall_rate, self.stall_ms = cut_rate, stall_rate, stall_ms
        self.faults: Counter[str] = Counter()
        self.cache: Counter[str] = Counter()  # prompt-cache "write"s and "read"s
        self._cached: set[str] = set()
        self.requests: list[dict[str, Any]] = []
        self.answers: list[dict[str, Any]] = []
        self.responses: Counter[int] = Counter()
        self._rng = random.Random(seed)
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._base_url = ""
        self._window, self._used = datetime.min.replace(tzinfo=UTC), 0
        # Message Batches: a batch takes `batch_ms` to process; `entry_error(params)` may name an error type.
        self.batches = FakeBatches(self, processing_ms=batch_ms, entry_error=entry_error)

    @property
    def base_url(self) -> str:
        if not self._base_url:
            raise RuntimeError("the fake Messages API is not started")
        return self._base_url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        app = web.Application(middlewares=[self._middleware()])
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        self.batches.add_routes(app.router)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        self._base_url = f"http://{host}:{self._runner.addresses[0][1]}"
        return self._base_url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner, self._base_url = None, ""

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}_fake_" + hashlib.sha256(f"{self.seed}:{next(self._ids)}".encode()).hexdigest()[:24]

    def _middleware(self) -> Middleware:
        @web.middleware
        async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
            if self.latency_ms > 0:
                await asyncio.sleep(self.latency_ms / 1000)
            try:
                response = await handler(request)
            except ConnectionResetError:  # the client gave up (a stopped run): nothing to answer, nothing to log
                return web.Response(status=499)
            except ApiError as exc:
                response = self._error_response(exc)
            except web.HTTPException as exc:
                kind = _HTTP_KINDS.get(exc.status, "invalid_request_error")
                response = self._error_response(ApiError(exc.status, kind, f"{exc.reason}: {request.path}"))
            self.responses[response.status] += 1
            return response

        return middleware

    def _error_response(self, exc: ApiError) -> web.Response:
        rid = self._next_id("req")
        body = {"type": "error", "error": {"type": exc.kind, "message": exc.message}, "request_id": rid}
        return web.json_response(body, status=exc.status, reason=_REASONS.get(exc.status),
                                 headers={**exc.headers, "request-id": rid})

    def _injected_error(self) -> ApiError | None:
        if self._rng.random() >= self.error_rate:
            return None
        status = self._rng.choice(tuple(_INJECTED))
        headers = {}
        if status == 429:
            seconds = max(1, math.ceil(self.retry_after_ms / 1000))
            headers = {"retry-after-ms": str(self.retry_after_ms), "retry-after": str(seconds)}
        return ApiError(status, _INJECTED[status], f"simulated {_INJECTED[status]}", headers)

    def _check_rate(self) -> None:
        if self.bucket is None or self.bucket.take():
            return
        wait = self.bucket.retry_after()
        headers = {**self.bucket.headers(), "retry-after": str(max(1, math.ceil(wait))),
                   "retry-after-ms": str(math.ceil(wait * 1000))}
        raise ApiError(429, "rate_limit_error", f"This request would exceed your organization's rate limit of "
                       f"{self.bucket.rpm} requests per minute. Please reduce the rate of requests.", headers)

    def _success_headers(self) -> dict[str, str]:
        if self.bucket is not None:
            return {"request-id": self._next_id("req"), **self.bucket.headers()}
        window = datetime.now(UTC).replace(second=0, microsecond=0)
        if window != self._window:
            self._window, self._used = window, 0
        self._used += 1
        reset = (window + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
        return {"request-id": self._next_id("req"), "anthropic-ratelimit-requests-limit": str(RATE_LIMIT),
                "anthropic-ratelimit-requests-remaining": str(max(0, RATE_LIMIT - self._used)),
                "anthropic-ratelimit-requests-reset": reset}

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await _read_json(request)
        if isinstance(body, dict):
            self.requests.append(body)
        _check_auth(request)
        reply = _reply(_validate(body, need_max_tokens=True))
        self._check_rate()
        if (error := self._injected_error()) is not None:
            raise error
        reply = self._cache(body, reply)
        message = _message(self._next_id("msg"), body["model"], reply)
        self.answers.append(message)
        if self._fault("stall", self.stall_rate):
            await asyncio.sleep(self.stall_ms / 1000)
        if body.get("stream") is True:
            return await self._stream(request, message, reply, cut=self._fault("cut", self.cut_rate))
        return web.json_response(message, headers=self._success_headers())

    def _cache(self, body: dict[str, Any], reply: _Reply) -> _Reply:
        """Prompt caching as the API does it: a prefix marked with `cache_control` and at least
        `MIN_CACHE_TOKENS` long is written on first sight and read afterwards (per model)."""
        prefix = _cacheable_prefix(body)
        tokens = _tokens(prefix) if prefix else 0
        if tokens < MIN_CACHE_TOKENS:
            return reply
        key = hashlib.sha256(f"{body['model']}\x00{prefix}".encode()).hexdigest()
        hit = key in self._cached
        self._cached.add(key)
        self.cache[("read" if hit else "write")] += 1
        rest = max(1, reply.input_tokens - tokens)
        return replace(reply, input_tokens=rest, cache_read=tokens if hit else 0, cache_write=0 if hit else tokens)

    def _fault(self, kind: str, rate: float) -> bool:
        hit = rate > 0 and self._rng.random() < rate
        self.faults[kind] += hit
        return hit

    async def _stream(self, request: web.Request, message: dict[str, Any],
                      reply: _Reply, cut: bool = False) -> web.StreamResponse:
        headers = {**self._success_headers(), "Content-Type": "text/event-stream"}
        response = web.StreamResponse(headers={**headers, "Cache-Control": "no-cache"})
        await response.prepare(request)
        events = list(_stream_events(message, reply))
        with contextlib.suppress(ConnectionResetError):
            for event in events[: len(events) // 2] if cut else events:
                await response.write(_sse(event))
            if cut and request.transport is not None:
                request.transport.abort()  # the connection drops mid-message, as a flaky network does
                return response
            await response.write_eof()
        return response

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        body = await _read_json(request)
        _check_auth(request)
        system, prompt = _prompt(_validate(body, need_max_tokens=False))
        return web.json_response({"input_tokens": _tokens(system + prompt)}, headers=self._success_headers())


async def _read_json(request: web.Request) -> Any:
    """The parsed body, or None when it is not JSON (validation then names the problem)."""
    try:
        return json.loads(await request.read())
    except ValueError:
        return None


def serve(host: str = "127.0.0.1", port: int = 8765, **options: Any) -> None:
    """Serve the fake until Ctrl-C (`orchestra fake-api`); `options` as for `FakeMessagesAPI`."""

    async def main() -> None:
        api = FakeMessagesAPI(**options)
        url = await api.start(host, port)
        print(f"Fake Anthropic Messages API on {url} (simulated responses; set ANTHROPIC_BASE_URL to this)",
              file=sys.stderr)
        try:
            await asyncio.Event().wait()
        finally:
            await api.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
