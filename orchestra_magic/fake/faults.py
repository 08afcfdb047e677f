"""Faults on the wire the fake Messages API produces on demand, beyond its 429/529/500s and cut streams.

Each is something a real API, proxy or network has done, and each must end as a retry and then, if it
keeps happening, one error a user can read, never as an answer recorded `done`:

    no_stop           a stream that ends cleanly halfway, with no `message_stop` (the server, or a proxy's
                      idle timeout, closed it politely); what arrived looks like an answer and is not one
    invalid_json      a `200` whose body is not JSON: a stream event's data cut mid-object, or a cut JSON body
    json_not_sse      a `200` with the whole message as JSON where a stream was asked for
    empty             a `200` with an empty body
    no_message_start  a stream whose `message_start` event is missing
    sse_error         an `event: error` (`overloaded_error`) after the first deltas, as the API sends when
                      it overloads in the middle of an answer; the same transient overload as a 529
    rate_limit        a `429` whose `retry-after` is the server's `retry_after_ms` (86,400,000: a day)
    echo_headers      a `502` whose message echoes the request's headers, key included, as a misconfigured
                      proxy's error page does
    huge_error        a `500` whose message is `HUGE_ERROR_CHARS` characters long

Give them as rates: `FakeMessagesAPI(fault_rates={"no_stop": 0.3})`, or `orchestra fake-api --fault
no_stop=0.3`. Which request gets which fault is drawn from the server's seeded RNG (one draw per request,
and none at all when no rate is set), so a seed replays the same faults in the same order.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .wire import ApiError, Reply, sse, stream_events

FAULTS = ("no_stop", "invalid_json", "json_not_sse", "empty", "no_message_start", "sse_error", "rate_limit",
          "echo_headers", "huge_error")
HUGE_ERROR_CHARS = 5_000_000


def check_rates(rates: Mapping[str, float]) -> dict[str, float]:
    """The rates as given, refused (one `ValueError` naming the problem) when a kind is unknown, a rate is
    outside 0..1, or they add up to more than 1."""
    unknown = sorted(set(rates) - set(FAULTS))
    if unknown:
        raise ValueError(f"unknown fault {unknown[0]!r}; the fake knows {', '.join(FAULTS)}")
    for kind, rate in rates.items():
        if not 0 <= rate <= 1:
            raise ValueError(f"the rate of {kind} goes from 0 to 1, got {rate}")
    if sum(rates.values()) > 1:
        raise ValueError(f"fault rates add up to {sum(rates.values()):g}; at most 1 (one fault per request)")
    return {kind: rates[kind] for kind in FAULTS if rates.get(kind)}


def pick(rng: random.Random, rates: Mapping[str, float]) -> str | None:
    """The fault for one request, or None: one draw, set against the rates in `FAULTS` order."""
    if not rates:
        return None
    draw = rng.random()
    for kind, rate in rates.items():
        if draw < rate:
            return kind
        draw -= rate
    return None


def status_fault(kind: str, request: web.Request, retry_after_ms: int) -> ApiError | None:
    """The faults that are error statuses, in the API's error shape (None for the others)."""
    if kind == "rate_limit":
        headers = {"retry-after-ms": str(retry_after_ms), "retry-after": str(max(1, -(-retry_after_ms // 1000)))}
        return ApiError(429, "rate_limit_error", "simulated rate limit with a long retry-after", headers)
    if kind == "echo_headers":
        echoed = json.dumps(dict(request.headers))
        return ApiError(502, "api_error", f"bad gateway: the upstream refused the request; it was sent with {echoed}")
    if kind == "huge_error":
        return ApiError(500, "api_error", "simulated error with a huge message: " + "x" * HUGE_ERROR_CHARS)
    return None


async def send(kind: str, request: web.Request, message: dict[str, Any], reply: Reply,
               headers: Mapping[str, str], *, streamed: bool) -> web.StreamResponse:
    """Answer `200` with the broken body `kind` names. A request that asked for JSON, not a stream, can
    only get an empty or a cut body; the stream faults leave its answer whole."""
    if kind == "empty":
        return web.Response(status=200, body=b"", headers=headers)
    if not streamed:
        whole = json.dumps(message).encode()
        return web.Response(status=200, body=whole[: len(whole) // 2] if kind == "invalid_json" else whole,
                            headers=headers, content_type="application/json")
    if kind == "json_not_sse":
        return web.json_response(message, headers=headers)
    events = [sse(event) for event in stream_events(message, reply)]
    if kind == "invalid_json":
        return await _stream(request, headers, [events[0][:-20] + b"\n\n"])  # its data cut mid-object
    if kind == "no_message_start":
        return await _stream(request, headers, events[1:])
    if kind == "no_stop":
        return await _stream(request, headers, events[: len(events) // 2])
    if kind == "sse_error":
        error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        return await _stream(request, headers, [*events[:3], sse(error)])
    raise ValueError(f"{kind} is not a body fault")  # status faults never get here


async def _stream(request: web.Request, headers: Mapping[str, str], chunks: list[bytes]) -> web.StreamResponse:
    """A `200` event stream of `chunks`, ended cleanly (the fault is in what it holds, not in how it ends)."""
    response = web.StreamResponse(headers={**headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    for chunk in chunks:
        await response.write(chunk)
    await response.write_eof()
    return response
