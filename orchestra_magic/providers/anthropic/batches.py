"""Batch mode for the anthropic provider: agents that arrive together go out as one Message Batch.

Why: the Message Batches API bills every token at half price, for answers that may take minutes or
hours. The engine starts every ready agent at once, so their calls arrive within a moment of each other;
the `Batcher` collects them until none has come for `BatchPolicy.quiet` seconds (or a size limit of the
API is reached), creates one batch, polls it with a growing interval, reads its results and hands each
waiting agent its own answer: the `Message`, or an error for its entry (`_outcome` says which).

Ids: a `custom_id` must match ``^[a-zA-Z0-9_-]{1,64}$`` and coordinators are keyed
``coordinator:<domain>``, so an entry's id is ``<n>-<agent, other characters as _>`` cut to 64
characters; the number keeps it unique in its batch.

Stopping: when every agent waiting on a batch is cancelled (a stopped run), the batch is cancelled on
the server so it stops costing; `close()` waits for that. A batch left running by a killed process is
not picked up again: a resume sends its agents anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import anthropic
import httpx2  # the SDK's HTTP client (SDK 2.x)
from anthropic.types import Message
from anthropic.types.messages import MessageBatch, MessageBatchResult
from anthropic.types.messages.batch_create_params import Request

from ...errors import AgentError, BatchEntryError

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

# Entry errors worth another try; the rest (invalid_request_error, not_found_error, …) would fail again.
TRANSIENT_KINDS = frozenset({"api_error", "overloaded_error", "rate_limit_error", "timeout_error"})
_TRANSIENT_STATUS = frozenset({408, 409, 429})
_NOT_ID = re.compile(r"[^A-Za-z0-9_-]")
_ENTRY_OVERHEAD = 100  # bytes of JSON around one entry's params in the create body


@dataclass(frozen=True, slots=True)
class BatchPolicy:
    """When a batch is sent and how often it is asked about. The defaults suit the real API, where a
    batch takes minutes to hours: an extra few seconds of collecting or polling cost nothing there."""

    quiet: float = 0.5  # send once no new request has arrived for this long…
    max_wait: float = 10.0  # …or this long after the first, however many keep arriving
    max_requests: int = 100_000  # the API's limits for one batch
    max_bytes: int = 256_000_000
    first_poll: float = 5.0
    max_poll: float = 60.0
    growth: float = 1.5
    poll_failures: int = 10  # consecutive failed status or results calls before the agents are failed

    def poll_delays(self) -> Iterator[float]:
        """first_poll, then growing by `growth` up to `max_poll`."""
        delay = self.first_poll
        while True:
            yield delay
            delay = min(self.max_poll, delay * self.growth)


@dataclass(slots=True)
class _Entry:
    custom_id: str
    params: dict[str, Any]
    future: asyncio.Future[Message]


@dataclass(slots=True)
class _Batch:
    """The entries of one batch, while it is collected and then while it runs on the server."""

    entries: dict[str, _Entry] = field(default_factory=dict)
    size: int = 0  # estimated bytes of the create body
    first_at: float = 0.0
    waiting: int = 0  # entries whose agent still waits (counted, not scanned: 10,000 entries end at once)
    abandoned: asyncio.Event = field(default_factory=asyncio.Event)  # no agent waits on it any more

    def add(self, agent: str, params: dict[str, Any], size: int) -> _Entry:
        custom_id = f"{len(self.entries)}-{_NOT_ID.sub('_', agent)}"[:64]
        entry = _Entry(custom_id, params, asyncio.get_running_loop().create_future())
        entry.future.add_done_callback(self._check_abandoned)
        self.entries[custom_id] = entry
        self.size += size
        self.waiting += 1
        self.abandoned.clear()  # all earlier entries may have been cancelled while it was collected
        return entry

    def live(self) -> list[_Entry]:
        return [e for e in self.entries.values() if not e.future.done()]

    def requests(self) -> list[Request]:
        return [{"custom_id": e.custom_id, "params": cast(Any, e.params)} for e in self.live()]

    def resolve(self, custom_id: str, result: MessageBatchResult) -> None:
        entry = self.entries.get(custom_id)
        if entry is None or entry.future.done():
            return
        outcome = _outcome(result)
        if isinstance(outcome, Message):
            entry.future.set_result(outcome)
        else:
            entry.future.set_exception(outcome)

    def fail(self, error: BaseException) -> None:
        for entry in self.live():
            entry.future.set_exception(error)

    def _check_abandoned(self, _: asyncio.Future[Message]) -> None:
        self.waiting -= 1
        if not self.waiting:
            self.abandoned.set()


class Batcher:
    """Collects requests into Message Batches and answers each caller from its batch's results.
    `submit` raises the SDK's own errors for a batch that could not be created or read (the provider
    maps them, as for a Messages call) and `AgentError`/`BatchEntryError` for the caller's entry."""

    def __init__(self, client: anthropic.AsyncAnthropic, policy: BatchPolicy | None = None,
                 sleep: Sleep = asyncio.sleep) -> None:
        self._client = client
        self.policy = policy or BatchPolicy()
        self._sleep = sleep
        self._open: _Batch | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._running: dict[asyncio.Task[None], _Batch] = {}

    async def submit(self, agent: str, params: dict[str, Any]) -> Message:
        """The answer to one Messages request (`params` as for `messages.create`), sent in a batch."""
        size = len(json.dumps(params)) + _ENTRY_OVERHEAD
        if self._open is not None and self._open.size + size > self.policy.max_bytes:
            self._send()
        loop = asyncio.get_running_loop()
        if self._open is None:
            self._open = _Batch(first_at=loop.time())
        entry = self._open.add(agent, params, size)
        if len(self._open.entries) >= self.policy.max_requests:
            self._send()
        else:
            self._arm_timer(loop, self._open)
        return await entry.future

    async def close(self) -> None:
        """Fail what still waits (its batches are then cancelled on the server) and wait for that."""
        if self._open is not None:
            self._open.fail(AgentError("the provider was closed before the batch was sent"))
            self._send()
        for batch in self._running.values():
            batch.fail(AgentError("the provider was closed before the batch ended"))
        if self._running:
            _, late = await asyncio.wait(self._running, timeout=30)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)

    def _arm_timer(self, loop: asyncio.AbstractEventLoop, batch: _Batch) -> None:
        if self._timer is not None:
            self._timer.cancel()
        until_max = batch.first_at + self.policy.max_wait - loop.time()
        self._timer = loop.call_later(max(0.0, min(self.policy.quiet, until_max)), self._send)

    def _send(self) -> None:
        """Stop collecting; the batch goes to the server unless every agent in it was cancelled meanwhile."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._open = self._open, None
        if batch is None or not batch.live():
            return
        task = asyncio.create_task(self._run(batch), name="message-batch")
        self._running[task] = batch
        task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        del self._running[task]

    async def _run(self, batch: _Batch) -> None:
        try:
            await self._process(batch)
        except asyncio.CancelledError:
            batch.fail(AgentError("the provider was closed before the batch ended"))
            raise
        except Exception as exc:  # an SDK error: every agent still waiting gets it, mapped by the provider
            batch.fail(exc)
        else:
            batch.fail(BatchEntryError("the batch's results had no entry for this request"))

    async def _process(self, batch: _Batch) -> None:
        created = await self._client.messages.batches.create(requests=batch.requests())
        if await self._until_ended(batch, created):
            await self._patiently(lambda: self._deliver(batch, created.id))
            return
        with contextlib.suppress(anthropic.APIError, httpx2.TransportError):  # best effort: we are stopping
            await self._client.messages.batches.cancel(created.id)

    async def _until_ended(self, batch: _Batch, status: MessageBatch) -> bool:
        """Poll until the batch has ended (True), or until no agent waits on it any more (False)."""
        delays, batch_id = self.policy.poll_delays(), status.id
        while status.processing_status != "ended":
            if await self._abandoned_during(batch, next(delays)):
                return False
            status = await self._patiently(lambda: self._client.messages.batches.retrieve(batch_id))
        return True

    async def _abandoned_during(self, batch: _Batch, delay: float) -> bool:
        """Wait `delay` seconds, or less if every waiting agent is cancelled meanwhile."""
        if batch.abandoned.is_set():
            return True
        waits = {asyncio.ensure_future(self._sleep(delay)), asyncio.ensure_future(batch.abandoned.wait())}
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
        return batch.abandoned.is_set()

    async def _deliver(self, batch: _Batch, batch_id: str) -> None:
        async for line in await self._client.messages.batches.results(batch_id):
            batch.resolve(line.custom_id, line.result)

    async def _patiently(self, call: Callable[[], Awaitable[T]]) -> T:
        """A status or results call, made again after a transient failure: the batch is still on the
        server, and failing all its agents over one 529 would have them retried at full price."""
        delays = self.policy.poll_delays()
        for failures in itertools.count(1):
            try:
                return await call()
            except (anthropic.APIError, httpx2.TransportError) as exc:
                if failures >= self.policy.poll_failures or not _transient(exc):
                    raise
                await self._sleep(next(delays))
        raise AssertionError("unreachable")


def _outcome(result: MessageBatchResult) -> Message | AgentError:
    """An entry's result as its agent's answer or error. A failed entry worth retrying raises
    `BatchEntryError`, which the engine retries as a plain Messages call."""
    if result.type == "succeeded":
        return result.message
    if result.type == "errored":
        error = result.error.error
        text = f"the batch answered this request with {error.type}: {error.message}"
        return BatchEntryError(text) if error.type in TRANSIENT_KINDS else AgentError(text)
    if result.type == "expired":
        return BatchEntryError("the batch expired before this request was processed (the API ends a batch "
                               "after 24 hours)")
    return AgentError("the batch was cancelled on the server before this request was processed")


def _transient(exc: Exception) -> bool:
    if isinstance(exc, anthropic.APIStatusError):
        return exc.status_code in _TRANSIENT_STATUS or exc.status_code >= 500
    return True  # connection errors and timeouts
