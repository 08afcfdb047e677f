"""The Message Batches endpoints of the fake API (served by `fakeapi.FakeMessagesAPI`, same app, same port).

Why: `mode: batch` runs the SDK's own `messages.batches` calls (create, retrieve, results, cancel)
against the local server everything else uses, so batch mode is tested over real HTTP with no key.

What it simulates:
- `POST /v1/messages/batches`: checks the request list (1 to 100,000 entries; each a unique `custom_id`
  matching ``^[a-zA-Z0-9_-]{1,64}$`` plus `params`), answers `processing_status: "in_progress"`.
- A batch ends `processing_ms` after it was created (seen on the first look after that). Each entry is
  then answered by the same simulated generation as /v1/messages (text, usage, prompt caching), with
  `usage.service_tier: "batch"`. Like the API, entry params are checked only then: a bad one ends
  `errored` with `invalid_request_error`. An entry also errors when `entry_error(params)` names an error
  type (or ends `expired` when it says "expired"), or at the server's seeded `error_rate` (as
  `overloaded_error` or `api_error`).
- `GET /v1/messages/batches/{id}` with `request_counts`, `ended_at` and `results_url`;
  `GET …/{id}/results` as JSON Lines in a shuffled (seeded) order, since the API does not promise
  request order; `POST …/{id}/cancel`: entries not yet processed end `canceled`. The two GETs also
  answer 429/529/500 at `error_rate`, as any endpoint of the API may (counted in `poll_errors`).
`FakeBatches.created` records every batch in order (what was sent, what was answered) for tests.
"""

from __future__ import annotations

import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .wire import ApiError, bad_request, check_auth, message_of, read_json, validate

if TYPE_CHECKING:
    from .server import FakeMessagesAPI

MAX_REQUESTS = 100_000
CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_ENTRY_FAULTS = ("overloaded_error", "api_error")
EntryError = Callable[[dict[str, Any]], str | None]


@dataclass
class FakeBatch:
    """One batch as the fake holds it: the requests as sent and, once ended, a result per custom_id."""

    id: str
    requests: list[dict[str, Any]]
    created_at: datetime
    ready_at: float  # time.monotonic() at which processing ends
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    ended_at: datetime | None = None
    cancel_initiated_at: datetime | None = None

    @property
    def custom_ids(self) -> list[str]:
        return [r["custom_id"] for r in self.requests]

    def counts(self) -> dict[str, int]:
        tally = Counter(result["type"] for result in self.results.values())
        return {"processing": len(self.requests) - len(self.results), "succeeded": tally["succeeded"],
                "errored": tally["errored"], "canceled": tally["canceled"], "expired": tally["expired"]}


class FakeBatches:
    """The batch endpoints and their records. `processing_ms` may be changed between batches."""

    def __init__(self, api: FakeMessagesAPI, *, processing_ms: float = 0.0,
                 entry_error: EntryError | None = None) -> None:
        self.api = api
        self.processing_ms = processing_ms
        self.entry_error = entry_error
        self.created: list[FakeBatch] = []
        self.retrieves = 0  # status polls answered
        self.poll_errors = 0  # injected errors answered to a status or results call
        self.cancels = 0
        self._by_id: dict[str, FakeBatch] = {}
        self._order = random.Random(api.seed)

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_post("/v1/messages/batches", self._create)
        router.add_get("/v1/messages/batches/{batch_id}", self._retrieve)
        router.add_get("/v1/messages/batches/{batch_id}/results", self._results)
        router.add_post("/v1/messages/batches/{batch_id}/cancel", self._cancel)

    async def _create(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        check_auth(request)
        entries = _check_requests(body)
        batch = FakeBatch(self.api._next_id("msgbatch"), entries, datetime.now(UTC),
                          time.monotonic() + self.processing_ms / 1000)
        self.created.append(batch)
        self._by_id[batch.id] = batch
        return self._answer(batch)

    async def _retrieve(self, request: web.Request) -> web.StreamResponse:
        check_auth(request)
        self._maybe_fail()
        self.retrieves += 1
        return self._answer(self._settled(request))

    async def _results(self, request: web.Request) -> web.StreamResponse:
        check_auth(request)
        self._maybe_fail()
        batch = self._settled(request)
        if batch.ended_at is None:
            raise bad_request(f"message batch {batch.id} is still in progress; its results are available once it ends")
        lines = [{"custom_id": cid, "result": batch.results[cid]} for cid in batch.custom_ids]
        self._order.shuffle(lines)
        body = "".join(json.dumps(line) + "\n" for line in lines)
        return web.Response(text=body, content_type="application/binary", headers=self.api._success_headers())

    async def _cancel(self, request: web.Request) -> web.StreamResponse:
        check_auth(request)
        batch = self._settled(request)
        self.cancels += 1
        if batch.ended_at is None:
            batch.cancel_initiated_at = batch.ended_at = datetime.now(UTC)
            batch.results = {cid: {"type": "canceled"} for cid in batch.custom_ids}
            return self._answer(batch, status="canceling")  # as the API answers a cancel
        return self._answer(batch)

    def _maybe_fail(self) -> None:
        if (error := self.api._injected_error()) is not None:
            self.poll_errors += 1
            raise error

    def _settled(self, request: web.Request) -> FakeBatch:
        """The batch named in the path, processed first if its time has come."""
        batch = self._by_id.get(request.match_info["batch_id"])
        if batch is None:
            raise ApiError(404, "not_found_error", f"no message batch {request.match_info['batch_id']!r}")
        if batch.ended_at is None and time.monotonic() >= batch.ready_at:
            batch.results = {r["custom_id"]: self._process(r["params"]) for r in batch.requests}
            batch.ended_at = datetime.now(UTC)
        return batch

    def _process(self, params: dict[str, Any]) -> dict[str, Any]:
        """One entry's result, by the same generation (and prompt cache) as a /v1/messages call."""
        try:
            body = validate(params, need_max_tokens=True)
            if body.get("stream"):
                raise bad_request("stream: not supported in a message batch")
            reply = self.api.reply(body)
        except ApiError as exc:
            return _errored(exc.kind, exc.message)
        if (kind := self._fault(params)) is not None:
            return {"type": "expired"} if kind == "expired" else _errored(kind, f"simulated {kind}")
        message = message_of(self.api._next_id("msg"), body["model"], self.api._cache(body, reply))
        message["usage"]["service_tier"] = "batch"
        return {"type": "succeeded", "message": message}

    def _fault(self, params: dict[str, Any]) -> str | None:
        if self.entry_error is not None and (kind := self.entry_error(params)):
            return kind
        if self.api.error_rate > 0 and self.api._rng.random() < self.api.error_rate:
            return self.api._rng.choice(_ENTRY_FAULTS)
        return None

    def _answer(self, batch: FakeBatch, status: str = "") -> web.Response:
        ended = batch.ended_at is not None
        data = {
            "id": batch.id, "type": "message_batch",
            "processing_status": status or ("ended" if ended else "in_progress"),
            "request_counts": batch.counts(),
            "created_at": _rfc3339(batch.created_at), "expires_at": _rfc3339(batch.created_at + timedelta(days=1)),
            "ended_at": _rfc3339(batch.ended_at), "cancel_initiated_at": _rfc3339(batch.cancel_initiated_at),
            "archived_at": None,
            "results_url": f"{self.api.base_url}/v1/messages/batches/{batch.id}/results" if ended else None,
        }
        return web.json_response(data, headers=self.api._success_headers())


def _check_requests(body: Any) -> list[dict[str, Any]]:
    """The create body's requests, or a 400 naming the first problem (as the API checks them up front)."""
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        raise bad_request("requests: field required (a non-empty list)")
    if len(requests) > MAX_REQUESTS:
        raise bad_request(f"requests: at most {MAX_REQUESTS:,} requests in one batch, got {len(requests):,}")
    seen: set[str] = set()
    for i, entry in enumerate(requests):
        custom_id = entry.get("custom_id") if isinstance(entry, dict) else None
        if not isinstance(custom_id, str) or not CUSTOM_ID.match(custom_id):
            raise bad_request(f"requests.{i}.custom_id: must match {CUSTOM_ID.pattern}, got {custom_id!r}")
        if custom_id in seen:
            raise bad_request(f"requests.{i}.custom_id: {custom_id!r} is used twice; each must be unique in a batch")
        if not isinstance(entry.get("params"), dict):
            raise bad_request(f"requests.{i}.params: field required (an object)")
        seen.add(custom_id)
    return requests


def _errored(kind: str, message: str) -> dict[str, Any]:
    return {"type": "errored", "error": {"type": "error", "error": {"type": kind, "message": message},
                                         "request_id": None}}


def _rfc3339(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat().replace("+00:00", "Z")
