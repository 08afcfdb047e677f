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
- Context windows: a prompt over its model's window (`pricing.window_of`, or `context_window` for every
  model), or a prompt plus `max_tokens` over it, is answered 400 `invalid_request_error` ("prompt is too
  long: N tokens > M maximum"), as the API does; `output_tokens` asks for answers about that long.
- Authentication (`x-api-key` or `Authorization: Bearer`), body validation, and injected 429 / 529 /
  500 errors drawn from a seeded RNG, all with the real error body shape and headers.
- Structured outputs (`output_config.format`): JSON that fits the schema (see `structured`); a seeded
  `invalid_rate` of them made not to fit, counted in `faults["invalid"]`.
- Faults on the wire, on demand (`fault_rates`; see `fake.faults`): streams that end without
  `message_stop`, `200`s with broken or empty bodies, `event: error` mid-stream, a day-long `retry-after`,
  error pages that echo the request's headers, errors megabytes long.
- Latency before the first byte, token usage estimates (about 4 characters per token), rate-limit
  headers, and `POST /v1/messages/count_tokens`.
- The Message Batches endpoints, on the same server (see `fakebatch`; records in `batches`).
It never logs or stores the key, and echoes it only when the `echo_headers` fault is asked for.
Request checks and how answers are shaped and streamed are in
`fakewire`, shared with the batch endpoints; this module is the server: errors, limits, caching, timing.
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
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ..pricing import window_of
from . import faults as wire_faults
from .clouds import EVENT_STREAM, CloudRoutes, Credentials, Frame, refuse_extensions
from .limits import Bucket, Limits
from .text import tokens as _tokens
from .tools import SIMULATED_MARK as SIMULATED_MARK  # re-exported: tests and users read it here
from .wire import (
    ApiError,
    Reply,
    cacheable_prefix,
    check_auth,
    check_window,
    message_of,
    prompt_of,
    read_json,
    reply_to,
    sse,
    stream_events,
    validate,
    wants_schema,
)

RATE_LIMIT = 1_000_000  # advertised when no --rpm limit is enforced: a figure no run reaches
MAX_REQUEST_BYTES = 32 * 1024 * 1024  # the Messages API's request size limit
MIN_CACHE_TOKENS = 1024  # shorter prefixes are not cached (the API's minimum for most models)
_REASONS = {429: "Too Many Requests", 500: "Internal Server Error", 529: "Overloaded"}
_INJECTED = {429: "rate_limit_error", 529: "overloaded_error", 500: "api_error"}
_HTTP_KINDS = {404: "not_found_error", 405: "not_found_error", 413: "request_too_large"}

class FakeMessagesAPI:
    """The fake, served by aiohttp in the running event loop: `await start()`, point the SDK at
    `base_url`, `await stop()`. `requests` holds every JSON body posted to /v1/messages, in order;
    `answers` every message sent back (as JSON, streamed or not); `responses` counts the responses
    sent by HTTP status; `batches` holds the message batches."""

    def __init__(self, *, latency_ms: float = 0, error_rate: float = 0.0, seed: int = 0,
                 retry_after_ms: int = 20, cut_rate: float = 0.0, stall_rate: float = 0.0,
                 stall_ms: float = 5000, rpm_limit: int | None = None, rpm_burst: int | None = None,
                 batch_ms: float = 0, entry_error: Callable[[dict[str, Any]], str | None] | None = None,
                 invalid_rate: float = 0.0, strict: bool = False, clouds: Credentials | None = None,
                 itpm_limit: int | None = None, itpm_burst: int | None = None, otpm_limit: int | None = None,
                 otpm_burst: int | None = None, fault_rates: Mapping[str, float] | None = None,
                 output_tokens: int | None = None, context_window: int | None = None) -> None:
        from .batches import FakeBatches  # here, not at the top: fakebatch builds on this module

        self.latency_ms, self.error_rate, self.seed = latency_ms, error_rate, seed
        # Answers of about `output_tokens` tokens (up to each request's max_tokens), so tests meet context
        # windows for real; every request must fit its model's window (`context_window`: one for all models).
        self.output_tokens, self.context_window = output_tokens, context_window
        # Requests-, input- and output-tokens-per-minute limits enforced like the API's (see `limits`);
        # None: unlimited.
        self.limits = Limits(
            Bucket(rpm_limit, rpm_burst) if rpm_limit else None,
            Bucket(itpm_limit, itpm_burst, unit="input tokens") if itpm_limit else None,
            Bucket(otpm_limit, otpm_burst, unit="output tokens") if otpm_limit else None)
        self.retry_after_ms = retry_after_ms
        # Faults beyond error statuses: an answer cut off halfway (a stream's connection drops; a plain
        # answer's body ends in the middle of its JSON), and an answer that stalls for `stall_ms` (longer
        # than a client's timeout).
        self.cut_rate, self.stall_rate, self.stall_ms = cut_rate, stall_rate, stall_ms
        # Structured answers (`output_config.format`) made not to fit their schema, at this seeded rate.
        self.invalid_rate = invalid_rate
        self.fault_rates = wire_faults.check_rates(fault_rates or {})  # the wire faults, by kind
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
        # `strict`: refuse cache_control, thinking and effort with 400s, as many compatible servers do.
        self.strict = strict
        # Bedrock's, Vertex AI's and Foundry's paths, with the credentials they accept (see `clouds`).
        self.clouds = CloudRoutes(self, clouds or Credentials())

    @property
    def base_url(self) -> str:
        if not self._base_url:
            raise RuntimeError("the fake Messages API is not started")
        return self._base_url

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        # The API takes requests of up to 32 MB (larger ones get 413 request_too_large); aiohttp's own
        # default of 1 MB would refuse a long prompt before the context window could.
        app = web.Application(middlewares=[self._middleware()], client_max_size=MAX_REQUEST_BYTES)
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/v1/messages/count_tokens", self._count_tokens)
        self.batches.add_routes(app.router)
        self.clouds.add_routes(app.router)
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

    def _check_rate(self, input_tokens: int) -> None:
        refusal = self.limits.admit(input_tokens) if self.limits else None
        if refusal is None:
            return
        headers = {**self.limits.headers(), "retry-after": str(max(1, math.ceil(refusal.wait))),
                   "retry-after-ms": str(math.ceil(refusal.wait * 1000))}
        what = refusal.kind.replace("_", " ")
        raise ApiError(429, "rate_limit_error", f"This request would exceed your organization's rate limit of "
                       f"{refusal.limit:,} {what} per minute. Please reduce the rate of requests.", headers)

    def _success_headers(self) -> dict[str, str]:
        if self.limits:
            return {"request-id": self._next_id("req"), **self.limits.headers()}
        window = datetime.now(UTC).replace(second=0, microsecond=0)
        if window != self._window:
            self._window, self._used = window, 0
        self._used += 1
        reset = (window + timedelta(minutes=1)).isoformat().replace("+00:00", "Z")
        return {"request-id": self._next_id("req"), "anthropic-ratelimit-requests-limit": str(RATE_LIMIT),
                "anthropic-ratelimit-requests-remaining": str(max(0, RATE_LIMIT - self._used)),
                "anthropic-ratelimit-requests-reset": reset}

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        if isinstance(body, dict):
            self.requests.append(body)
        check_auth(request)
        return await self.respond(request, body)

    async def respond(self, request: web.Request, body: Any, frame: Frame = sse) -> web.StreamResponse:
        """Answer a Messages request body (the clouds' routes first translate theirs into one): JSON, or a
        stream of events, each encoded by `frame` (server-sent events; Bedrock's event stream)."""
        body = validate(body, need_max_tokens=True)
        if self.strict:
            refuse_extensions(body)
        reply = self.reply(body)
        self._check_rate(reply.input_tokens)
        if (error := self._injected_error()) is not None:
            raise error
        fault = wire_faults.pick(self._rng, self.fault_rates)
        if fault is not None:
            self.faults[fault] += 1
            if (error := wire_faults.status_fault(fault, request, self.retry_after_ms)) is not None:
                raise error
        reply = self._cache(body, reply)
        self.limits.settle(reply.output_tokens)
        message = message_of(self._next_id("msg"), body["model"], reply)
        if self._fault("stall", self.stall_rate):
            await asyncio.sleep(self.stall_ms / 1000)
        if fault is not None:  # a broken answer: not in `answers`, which holds the messages sent whole
            return await wire_faults.send(fault, request, message, reply, self._success_headers(),
                                         streamed=body.get("stream") is True)
        self.answers.append(message)
        cut = self._fault("cut", self.cut_rate)
        if body.get("stream") is True:
            return await self._stream(request, message, reply, cut=cut, frame=frame)
        whole = json.dumps(message).encode()  # a cut plain answer ends halfway through its JSON
        return web.Response(body=whole[: len(whole) // 2] if cut else whole, headers=self._success_headers(),
                            content_type="application/json")

    def reply(self, body: dict[str, Any]) -> Reply:
        """The answer to a validated body, once it is known to fit its model's context window."""
        check_window(body, self.context_window or window_of(body["model"]))
        length = None if self.output_tokens is None else min(self.output_tokens, body["max_tokens"] - 16)
        return reply_to(body, invalid=self.break_answer(body), length=length)

    def _cache(self, body: dict[str, Any], reply: Reply) -> Reply:
        """Prompt caching as the API does it: a prefix marked with `cache_control` and at least
        `MIN_CACHE_TOKENS` long is written on first sight and read afterwards (per model)."""
        prefix = cacheable_prefix(body)
        tokens = _tokens(prefix) if prefix else 0
        if tokens < MIN_CACHE_TOKENS:
            return reply
        key = hashlib.sha256(f"{body['model']}\x00{prefix}".encode()).hexdigest()
        hit = key in self._cached
        self._cached.add(key)
        self.cache[("read" if hit else "write")] += 1
        rest = max(1, reply.input_tokens - tokens)
        return replace(reply, input_tokens=rest, cache_read=tokens if hit else 0, cache_write=0 if hit else tokens)

    def break_answer(self, body: dict[str, Any]) -> bool:
        """Whether this structured answer is to be made invalid (drawn only for requests with a schema,
        so runs without one see the same seeded faults as before)."""
        return wants_schema(body) and self._fault("invalid", self.invalid_rate)

    def _fault(self, kind: str, rate: float) -> bool:
        hit = rate > 0 and self._rng.random() < rate
        self.faults[kind] += hit
        return hit

    async def _stream(self, request: web.Request, message: dict[str, Any],
                      reply: Reply, cut: bool = False, frame: Frame = sse) -> web.StreamResponse:
        content_type = "text/event-stream" if frame is sse else EVENT_STREAM
        headers = {**self._success_headers(), "Content-Type": content_type}
        response = web.StreamResponse(headers={**headers, "Cache-Control": "no-cache"})
        await response.prepare(request)
        events = list(stream_events(message, reply))
        with contextlib.suppress(ConnectionResetError):
            for event in events[: len(events) // 2] if cut else events:
                await response.write(frame(event))
            if cut and request.transport is not None:
                request.transport.abort()  # the connection drops mid-message, as a flaky network does
                return response
            await response.write_eof()
        return response

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        check_auth(request)
        system, prompt = prompt_of(validate(body, need_max_tokens=False))
        return web.json_response({"input_tokens": _tokens(system + prompt)}, headers=self._success_headers())


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
