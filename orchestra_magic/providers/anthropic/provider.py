"""The `anthropic` provider (the official SDK's async client: plain requests, streamed only where an
answer may be long; see `nonstreamed`) and `offline` (the same client pointed at the in-process fake
Messages API).

Retrying lives in the engine alone: the SDK's own retries are switched off (`max_retries=0`) and its
errors are mapped to `TransientAgentError` (429, 529, 5xx, timeouts, dropped connections; carrying the
server's `retry-after`) or `AgentError` (everything else), so one policy decides every wait.

A `mode: batch` request goes through the Message Batches API instead (see `batching`): same parameters,
half the price, answered when its batch ends; its `Completion` says `batch=True`.

The cloud providers (`clouds`: Bedrock, Vertex AI, Foundry, Anthropic-compatible servers) are this class
with another SDK client (`_connect`), model ids in the cloud's form (`_model_id`) and a `profile` of the
features the endpoint accepts: what it lacks is refused before the run (`check`) or left out of requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import anthropic
import httpx2  # the SDK's HTTP client (SDK 2.x)
from anthropic.lib.streaming import AsyncMessageStream
from anthropic.types import Message, TextBlockParam

from ...errors import AgentError, ConfigError, TransientAgentError
from ...redaction import redact
from ...state.events import Role
from ..base import CUT_OFF_STOPS, AgentRequest, Bucket, Completion, Provider, RateLimit
from .batches import TRANSIENT_KINDS, Batcher, BatchPolicy, Sleep
from .features import PROFILES, Profile, refusal
from .nonstreamed import Answer, answer_of, must_stream

if TYPE_CHECKING:
    from anthropic import AsyncAnthropicBedrock, AsyncAnthropicVertex

    from ...fake.server import FakeMessagesAPI
    from ...spec.model import Spec

    # Every client has the same `messages` surface; only the first-party one has batches.
    Client = anthropic.AsyncAnthropic | AsyncAnthropicBedrock | AsyncAnthropicVertex

DEFAULT_BASE_URL = "https://api.anthropic.com"
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
_TRANSIENT_STATUS = {408, 409, 429}
_RATE_LIMITED = {429, 529}  # "slow down" (rate limit) and "overloaded": the whole run backs off
# The fake ends a batch after its `batch_ms`, not minutes to hours: collect and poll at its pace.
OFFLINE_BATCHES = BatchPolicy(quiet=0.05, first_poll=0.05, max_poll=1.0)
OFFLINE_KEY = "offline-simulation"  # what the offline provider sends as its key: a marker, not a secret


class AnthropicProvider(Provider):
    """Key from `ANTHROPIC_API_KEY`, endpoint from `ANTHROPIC_BASE_URL` (unless given here)."""

    name = "anthropic"
    batches = True
    profile: Profile = PROFILES["anthropic"]
    regional = False  # answers are billed at a cloud's regional premium (see pricing)

    def __init__(self, *, api_key: str | None = None, base_url: str | None = None, timeout: float = 600.0,
                 cache_prompts: bool = True, batch: BatchPolicy | None = None, sleep: Sleep = asyncio.sleep) -> None:
        self._api_key = api_key
        self.base_url = base_url
        self.timeout = timeout
        self.cache_prompts = cache_prompts
        self.batch_policy = batch or BatchPolicy()  # `mode: batch`: when batches go out, how they are polled
        self._sleep = sleep  # between polls of a batch
        self._client: Client | None = None
        self._batcher: Batcher | None = None

    def check(self, spec: Spec) -> None:
        """Refuse, before anything runs, what this endpoint does not offer (batches, server tools)."""
        for role in ("worker", "coordinator"):
            settings = spec.settings(role)
            problem = refusal(self.profile, role, settings.mode, settings.tools)
            if problem:
                raise ConfigError(problem)

    def output_problem(self, role: Role) -> str | None:
        if self.profile.has("structured_outputs"):
            return None
        return (f"the {self.profile.name} provider is not set to send structured outputs, which the {role}s' "
                f"`output` needs; name the feature if the server takes them (features=[\"structured_outputs\"])")

    def __repr__(self) -> str:
        """Where it points, never its key; a URL's `user:password@` is redacted."""
        where = redact(self.base_url) if self.base_url else "ANTHROPIC_BASE_URL or the default endpoint"
        return f"<{type(self).__name__} {self.name} at {where}>"

    async def start(self) -> None:
        self._client = await self._connect()

    async def _connect(self) -> Client:
        """The SDK client for this endpoint, its key and address checked: the one part a cloud replaces."""
        key = self._api_key or os.environ.get("ANTHROPIC_API_KEY")
        if not key:
            raise ConfigError(
                "ANTHROPIC_API_KEY is not set. Set it to your Anthropic API key, "
                "or try the run without one: --provider offline (simulated answers)."
            )
        _check_key(key, "the api_key given" if self._api_key else "ANTHROPIC_API_KEY")
        self.base_url = _normalise(self.base_url or os.environ.get("ANTHROPIC_BASE_URL") or DEFAULT_BASE_URL)
        await _check_reachable(self.base_url)
        return anthropic.AsyncAnthropic(api_key=key, base_url=self.base_url, max_retries=0, timeout=self.timeout,
                                        http_client=http_client(self.timeout))

    async def close(self) -> None:
        try:
            if self._batcher is not None:
                await self._batcher.close()  # first: a stopped run's batches are cancelled on the server
                self._batcher = None
        finally:  # even when that is interrupted, the client's connections are closed
            if self._client is not None:
                await self._client.close()
                self._client = None

    async def complete(self, request: AgentRequest) -> Completion:
        if self._client is None:
            raise AgentError("the anthropic provider was not started")
        params = self._params(request)
        if request.tools:  # one Messages call per tool turn (a batch round per turn could take hours)
            from .toolloop import complete_with_tools

            return await complete_with_tools(self._turn, request, params)
        rate_limit = None
        with _mapped_errors(self.base_url):
            if request.mode == "batch":
                answer = Answer.of_message(await self._batches(self._client).submit(request.agent, params))
            elif must_stream(params["model"], request.max_tokens, self.timeout):
                async with self._client.messages.stream(**params) as stream:
                    answer = Answer.of_message(await _final_message(stream))
                    rate_limit = self._rate_limit(stream.response.headers)
            else:  # the cheap way: one plain request, its body read without building SDK objects
                response = await self._client.messages.with_raw_response.create(**params)
                answer = answer_of(await response.read())
                rate_limit = self._rate_limit(response.headers)
        return Completion(answer.text, answer.input_tokens, answer.output_tokens, answer.model, answer.stop_reason,
                          answer.cache_write_tokens, answer.cache_read_tokens, request.mode == "batch", self.regional,
                          rate_limit=rate_limit, truncated=answer.stop_reason in CUT_OFF_STOPS)

    def _params(self, request: AgentRequest) -> dict[str, Any]:
        """The Messages API parameters of one agent call (streamed, or one entry of a batch)."""
        params: dict[str, Any] = {
            "model": self._model_id(request.model), "max_tokens": request.max_tokens,
            "system": self._system(request.system), "messages": [{"role": "user", "content": request.prompt}],
        }
        if request.effort is not None and self.profile.has("effort"):
            params["output_config"] = {"effort": request.effort}
        if request.output is not None:  # structured outputs: the API constrains the answer to the schema
            params["output_config"] = {**params.get("output_config", {}),
                                       "format": {"type": "json_schema", "schema": dict(request.output)}}
        if request.thinking is not None and self.profile.has("thinking"):
            params["thinking"] = ({"type": "adaptive"} if request.thinking == "adaptive"
                                  else {"type": "enabled", "budget_tokens": request.thinking})
        return params

    def _model_id(self, model: str) -> str:
        """The spec's model name as this endpoint knows it."""
        return model

    def _rate_limit(self, headers: Any) -> RateLimit | None:
        """The answer's rate-limit headers, where this endpoint's are worth pacing on."""
        return _rate_limit(headers) if self.profile.has("rate_limit_headers") else None

    def _batches(self, client: Client) -> Batcher:
        """Made on the first `mode: batch` request, so a run without one never starts a batcher."""
        assert isinstance(client, anthropic.AsyncAnthropic)  # `check` lets batches through only there
        if self._batcher is None:
            self._batcher = Batcher(client, self.batch_policy, self._sleep)
        return self._batcher

    async def _turn(self, params: dict[str, Any]) -> tuple[Message, RateLimit | None]:
        """One Messages call of a tool loop (plain, or streamed where it must be, as for `complete`), its
        failures mapped to our errors. The loop sends the message's blocks back, so here the SDK builds
        them, once the body has been found to be a whole message."""
        assert self._client is not None
        with _mapped_errors(self.base_url):
            if must_stream(params["model"], params["max_tokens"], self.timeout):
                async with self._client.messages.stream(**params) as stream:
                    return await _final_message(stream), self._rate_limit(stream.response.headers)
            response = await self._client.messages.with_raw_response.create(**params)
            answer_of(await response.read())  # a cut or garbled body is a transient fault, as for a stream
            return await response.parse(), self._rate_limit(response.headers)

    def for_workers(self) -> AnthropicProvider:
        """The same endpoint and settings, but no key: each worker reads `ANTHROPIC_API_KEY` from its own
        environment, so the key is never pickled or sent over the network."""
        return AnthropicProvider(base_url=self.base_url, timeout=self.timeout, cache_prompts=self.cache_prompts,
                                 batch=self.batch_policy)

    def _system(self, text: str) -> list[TextBlockParam]:
        """One cache breakpoint after the system prompt: it is the part every agent of a role shares
        (instructions and the spec's context), so 30 workers pay full price for it about once."""
        block: TextBlockParam = {"type": "text", "text": text}
        if self.cache_prompts and self.profile.has("cache_control"):
            block["cache_control"] = {"type": "ephemeral"}
        return [block]


class OfflineProvider(AnthropicProvider):
    """The real SDK against the project's fake Messages API on 127.0.0.1: no key, simulated text."""

    name = "offline"

    def __init__(self, *, latency_ms: float = 0, error_rate: float = 0.0, seed: int = 0, timeout: float = 600.0,
                 batch_ms: float = 0, **fake_options: Any) -> None:
        """`fake_options`: any other `FakeMessagesAPI` option, e.g. `rpm_limit=60`."""
        super().__init__(api_key=OFFLINE_KEY, timeout=timeout, batch=OFFLINE_BATCHES)
        self.fake_options: dict[str, Any] = {"latency_ms": latency_ms, "error_rate": error_rate, "seed": seed,
                                             "batch_ms": batch_ms, **fake_options}
        self.server: FakeMessagesAPI | None = None

    async def start(self) -> None:
        from ...fake.server import FakeMessagesAPI

        self.server = FakeMessagesAPI(**self.fake_options)
        self.base_url = await self.server.start("127.0.0.1", 0)
        await super().start()

    def for_workers(self) -> AnthropicProvider:
        """Workers call this process's fake server (started on 127.0.0.1: reachable from a cluster on
        this machine, such as a `LocalCluster`). The offline key is a marker, not a secret."""
        return AnthropicProvider(api_key=OFFLINE_KEY, base_url=self.base_url, timeout=self.timeout,
                                 cache_prompts=self.cache_prompts, batch=self.batch_policy)

    async def close(self) -> None:
        try:
            await super().close()
        finally:  # a notebook interrupt must not leave the fake's port bound in the kernel
            if self.server is not None:
                await self.server.stop()
                self.server = None


def _check_key(key: str, source: str) -> None:
    """Refuse, with one line that never shows the key, a key no HTTP header can carry as it is: a
    pasted key with a line break or a trailing space would otherwise fail every call as "Connection error"."""
    if key != key.strip():
        problem = "leading or trailing whitespace (a space or line break pasted with it)"
    elif (bad := next((i for i, c in enumerate(key) if not " " < c < "\x7f"), None)) is not None:
        what = "a line break" if key[bad] in "\r\n" else f"a character no HTTP header can carry (U+{ord(key[bad]):04X})"
        problem = f"{what} at character {bad + 1}"
    else:
        return
    raise ConfigError(f"{source} has {problem}; set it to the key exactly as issued (the key is not shown here)")


def _normalise(url: str) -> str:
    """The SDK appends `/v1/messages` itself, so a base URL ending in `/v1` would double it."""
    url = url.rstrip("/")
    return url.removesuffix("/v1")


async def _check_reachable(url: str, setting: str = "ANTHROPIC_BASE_URL") -> None:
    """Fail before the run starts, with one clear line, when nothing listens at the endpoint (`setting`
    names where the address came from)."""
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return  # the SDK goes through the proxy; a direct connection proves nothing
    parts = urlsplit(url)
    if not parts.hostname:
        raise ConfigError(f"{setting} {redact(url)!r} is not a URL; expected e.g. http://127.0.0.1:8765")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, port), timeout=10)
    except (OSError, TimeoutError) as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise ConfigError(
            f"cannot reach the Messages API at {redact(url)} ({reason}). "
            f"Check {setting} and your network, or use --provider offline."
        ) from None
    writer.close()


async def _final_message(stream: AsyncMessageStream[Any]) -> Message:
    """The streamed message, once it is whole. A stream can end cleanly and still not hold an answer: a
    proxy or server that closed it early (no `message_stop`: what arrived looks like an answer and is cut
    off), or a `200` whose body is no message stream at all (JSON, empty, no `message_start`). Both are
    transient faults of the wire, retried like a dropped connection, never recorded as an answer."""
    started = stopped = False
    async for event in stream:  # what `get_final_message` does, watching the two events that frame a message
        if event.type == "message_start":
            started = True
        elif event.type == "message_stop":
            stopped = True
    if not started:
        raise TransientAgentError(f"the API answered {stream.response.status_code} without a message: "
                                  f"no message_start event in its body ({_body_kind(stream.response)})")
    if not stopped:
        raise TransientAgentError("the answer's stream ended before the message was complete (no message_stop "
                                  "event); the partial answer was not kept")
    return await stream.get_final_message()


def _body_kind(response: httpx2.Response) -> str:
    kind = response.headers.get("content-type", "").split(";")[0].strip()
    return f"content type {kind}" if kind else "no content type"


@contextlib.contextmanager
def _mapped_errors(base_url: str | None) -> Iterator[None]:
    """The SDK's errors as ours: transient ones (429, 529, 5xx, an `error` event mid-stream, dropped
    connections, a `200` whose body is not the message it should be) to retry, others final."""
    try:
        yield
    except anthropic.APIStatusError as exc:
        raise _status_error(exc) from None
    except (anthropic.APIConnectionError, httpx2.TransportError) as exc:
        # A stream cut off halfway surfaces as the transport's own error, not the SDK's.
        raise TransientAgentError(f"lost the connection to {redact(base_url or '')}: {exc}") from None
    except ValueError as exc:  # JSON that does not parse, or does not have the shape of a message (pydantic)
        what = "was not valid JSON" if isinstance(exc, json.JSONDecodeError) else "did not have a message's shape"
        raise TransientAgentError(f"the API's answer {what} ({str(exc).splitlines()[0]})") from None


def _status_error(exc: anthropic.APIStatusError) -> AgentError:
    """An error status, or an `error` event in a `200` stream (the API overloaded mid-answer): the
    latter is judged by its error type, as the same fault with a status would be (overloaded as 529)."""
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    kind = error.get("type", "error") if isinstance(error, dict) else "error"
    text = error.get("message", exc.message) if isinstance(error, dict) else exc
    if exc.status_code < 300:  # an `event: error` in the middle of a stream
        return _mid_stream_error(str(kind), f"the API sent {kind} in the middle of its answer: {text}")
    message = f"HTTP {exc.status_code} {kind}: {text}"
    if exc.status_code in _TRANSIENT_STATUS or exc.status_code >= 500:
        return TransientAgentError(message, retry_after=_retry_after(exc.response.headers),
                                   rate_limited=exc.status_code in _RATE_LIMITED)
    return AgentError(message)


def _mid_stream_error(kind: str, message: str) -> AgentError:
    if kind not in TRANSIENT_KINDS:
        return AgentError(message)
    return TransientAgentError(message, rate_limited=kind in ("overloaded_error", "rate_limit_error"))


def http_client(timeout: float) -> httpx2.AsyncClient | None:
    """The SDK's own aiohttp transport (`anthropic.DefaultAioHttpClient`), or None (the SDK's default, httpx)
    where it cannot be made. Why: at a thousand calls the client is CPU-bound, and a call through httpx's
    connection pool costs about twice one through aiohttp (see docs/decisions/0014). The SDK still builds,
    authenticates and signs each request, maps transport errors to its own, and takes proxies from the
    environment as before; aiohttp is already a dependency (the fake API)."""
    try:
        return anthropic.DefaultAioHttpClient(timeout=timeout)
    except RuntimeError:  # the SDK found no usable aiohttp
        return None


def _rate_limit(headers: Any) -> RateLimit | None:
    """The buckets the answer's `anthropic-ratelimit-{requests,input-tokens,output-tokens}-*` headers
    describe (None when it has none of them)."""
    requests, inputs, outputs = (_bucket(headers, kind) for kind in ("requests", "input-tokens", "output-tokens"))
    if requests is None and inputs is None and outputs is None:
        return None
    return RateLimit(requests.limit if requests else 0, requests.remaining if requests else 0, inputs, outputs)


def _bucket(headers: Any, kind: str) -> Bucket | None:
    try:
        return Bucket(int(headers[f"anthropic-ratelimit-{kind}-limit"]),
                      int(headers[f"anthropic-ratelimit-{kind}-remaining"]))
    except (KeyError, ValueError):
        return None


def _retry_after(headers: Any) -> float | None:
    """`retry-after-ms` (Anthropic's, precise) first, then `retry-after` in seconds."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return max(0.0, float(value) / scale)
            except ValueError:
                continue
    return None
