"""The fake Messages API, driven by the real `anthropic` SDK over real HTTP on 127.0.0.1 (no mocks)."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import anthropic
import pytest
from anthropic.types import MessageParam

from orchestra_magic.fake.server import SIMULATED_MARK, FakeMessagesAPI

KEY = "sk-ant-test-fake-key"
MODEL = "claude-fake-1"
ASK = "Survey what is known about soil moisture sensors."
USER: list[MessageParam] = [{"role": "user", "content": ASK}]
COORDINATOR = (
    "Your task:\nSynthesise.\n"
    + "".join(f'<worker_result id="w-{i}" path="w-{i}.md">\nFinding {i}.\n</worker_result>\n'
              for i in range(3))
    + "Then give a short summary inside <summary></summary> tags."
)
WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Weather for a city.",
    "input_schema": {"type": "object", "required": ["city", "days"],
                     "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}},
}

Test = Callable[[FakeMessagesAPI, anthropic.AsyncAnthropic], Awaitable[None]]


def drive(test: Test, *, max_retries: int = 0, **fake: Any) -> FakeMessagesAPI:
    """Start a fake, hand it and an SDK client pointed at it to `test`, tear both down."""

    async def main() -> FakeMessagesAPI:
        api = FakeMessagesAPI(**fake)
        await api.start()
        client = anthropic.AsyncAnthropic(api_key=KEY, base_url=api.base_url, max_retries=max_retries)
        try:
            await test(api, client)
        finally:
            await client.close()
            await api.stop()
        return api

    return asyncio.run(main())


async def create(client: anthropic.AsyncAnthropic, **kwargs: Any) -> anthropic.types.Message:
    params: dict[str, Any] = {"model": MODEL, "max_tokens": 1024, "messages": USER, **kwargs}
    message: anthropic.types.Message = await client.messages.create(**params)
    return message


async def stream(client: anthropic.AsyncAnthropic, **kwargs: Any) -> anthropic.types.Message:
    params: dict[str, Any] = {"model": MODEL, "max_tokens": 1024, "messages": USER, **kwargs}
    async with client.messages.stream(**params) as events:
        return await events.get_final_message()


def text_of(message: anthropic.types.Message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def test_create_returns_simulated_text_and_usage() -> None:
    async def test(api: FakeMessagesAPI, client: anthropic.AsyncAnthropic) -> None:
        raw = await client.messages.with_raw_response.create(model=MODEL, max_tokens=1024, messages=USER)
        message = await raw.parse()
        text = text_of(message)
        assert text.startswith(SIMULATED_MARK) and 80 <= len(text.split()) <= 150
        assert text.splitlines()[-1].startswith("Done. ")
        assert message.id.startswith("msg_fake_") and message.model == MODEL and message.role == "assistant"
        assert message.stop_reason == "end_turn" and message.stop_sequence is None
        assert message.usage.input_tokens == round(len(ASK) / 4)
        assert abs(message.usage.output_tokens - len(text) / 4) <= 1
        assert message.usage.cache_creation_input_tokens == 0 and message.usage.cache_read_input_tokens == 0
        assert raw.headers["request-id"].startswith("req_fake_")
        limit = int(raw.headers["anthropic-ratelimit-requests-limit"])
        assert int(raw.headers["anthropic-ratelimit-requests-remaining"]) == limit - 1  # this request counted
        reset = raw.headers["anthropic-ratelimit-requests-reset"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:00Z", reset)

    api = drive(test)
    assert api.responses == Counter({200: 1})


def test_streaming_gives_the_same_message_as_create() -> None:
    async def test(api: FakeMessagesAPI, client: anthropic.AsyncAnthropic) -> None:
        plain, streamed = await create(client), await stream(client)
        assert text_of(streamed) == text_of(plain)
        assert streamed.usage.input_tokens == plain.usage.input_tokens
        assert streamed.usage.output_tokens == plain.usage.output_tokens
        assert streamed.stop_reason == "end_turn"
        async with client.messages.stream(model=MODEL, max_tokens=1024, messages=USER) as events:
            kinds = [event.type async for event in events]
        assert kinds[:2] == ["message_start", "content_block_start"]
        assert kinds[-2:] == ["message_delta", "message_stop"]
        assert kinds.count("text") >= 10  # ~40-character text_delta chunks, each a `text` event in the SDK

    api = drive(test)
    plain_body, stream_body = api.requests[:2]
    assert stream_body.pop("stream") is True and stream_body == plain_body


def test_the_raw_stream_names_every_event() -> None:
    """Without an `event:` line the SDK silently drops an event, so check the bytes, over plain aiohttp."""

    async def test(api: FakeMessagesAPI, client: anthropic.AsyncAnthropic) -> None:
        body = {"model": MODEL, "max_tokens": 1024, "messages": USER, "stream": True}
        async with aiohttp.ClientSession() as session, session.post(
            f"{api.base_url}/v1/messages", json=body, headers={"x-api-key": KEY}
        ) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            raw = await response.text()
        events = [chunk.splitlines() for chunk in raw.strip().split("\n\n")]
        assert all(len(lines) == 2 and lines[0].startswith("event: ") for lines in events)
        assert all(lines[1].startswith('data: {"type": "' + lines[0][7:] + '"') for lines in events)
        names = [lines[0][7:] for lines in events]
        assert names[:3] == ["message_start", "content_block_start", "ping"]
        assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]

    drive(test)


def test_text_is_deterministic_per_request() -> None:
    async def test(api: FakeMessagesAPI, client: anthropic.AsyncAnthropic) -> None:
        first, again = await create(client), await create(client)
        other = await create(client, messages=[{"role": "user", "content": "Something else."}])
        with_system = await create(client, system=[{"type": "text", "text": "Be brief."}])
        assert text_of(first) == text_of(again)
        assert text_of(other) != text_of(first) and text_of(with_system) != text_of(first)

    drive(test)


def test_a_coordinator_prompt_gets_a_summary_that_counts_the_worker_results() -> None:
    async def test(api: FakeMessagesAPI, client: anthropic.AsyncAnthropic) -> None:
        text = text_of(await stream(client, messages=[{"role": "user", "content": COORDINATOR}]))
        found = re.findall(r"<summary>(.*?)</summary>", text, re.DOTALL)
        assert text.startswith(SIMULATED_MARK) and len(found) == 1
        assert 40 <= len(found[0].split()) <= 80
        assert "3 worker results" in found[0]

    drive(test)


def test_max_tokens_cuts_the_text() -> None:
    async def test(api: FakeMessagesAPI, client: anthropic.AsyncAnthropic) -> None:
        for message in (await create(client, max_tokens=5), await stream(client, max_tokens=5)):
            assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 5
            assert len(text_of(message)) == 20

    drive(test)


def test_a_request_without_credentials_is_refused() -> None:
    async def test(api: FakeMessagesAPI, client: anthropic.AsyncAnthropic) -> None:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            await create(client, extra_headers={"Authorization": anthropic.omit})
        body = caught.value.body
        assert isinstance(body, dict) and body["type"] == "error"
        assert body["error"]["type"] == "authentication_error" and body["error"]["message"]
        assert caught.value.response.headers["request-id"].startswith("req_fake_")

    api = drive(test)
    assert api.responses == Counter({401: 1})


@pytest.mark.parametrize(("override", "field"), [
    ({"max_tokens": 0}, "max_tokens"),
    ({"messages": []}, "messages"),
    ({"model": ""}, "model"),
    ({"messages": [{"role": "user", "content": 42}]}, "messages.0.content"),
])
def test_a_bad_body_is_a_bad_request_naming_the_field(override: dict[str, Any], field: str) -> None:
    async def test(api: FakeMessagesAPI, client: anthropic.AsyncAnthropic) -> None:
        with pytest.raises(anthropic.BadRequestError) as caught:
            await create(client, **override)
        error = caught.value.body["error"]  # type: ignore[index]
        assert error["type"] == "invalid_request_error" and error["message"].startswith(f"{field}:")

    drive(test)


def test_injected_errors_have_the_real_shape_and_retry_headers() -> None:
    async def test(api: FakeMessagesAPI, client: anthropic.AsyncAnthropic) -> None:
        # seed 1 draws 429 then 529 (the choice is the seeded RNG's, so a run is reproducible)
        with pytest.raises(anthropic.RateLimitError) as limited:
            await create(client)
        headers = limited.value.response.headers
        assert headers["retry-after-ms"] == "30" and headers["retry-after"] == "1"
        assert headers["request-id"].startswith("req_fake_")
        assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
        with pytest.raises(anthropic.InternalServerError) as overloaded:
            await stream(client)
        assert overloaded.value.status_code == 529
        assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]

    api = drive(test, error_rate=1.0, seed=1, retry_after_ms=30)
    assert api.responses == Counter({429: 1, 529: 1}) and len(api.requests) == 2


def test_the_sdk_retries_on_its_own() -> None:
    async def test(api: FakeMessagesAPI, client: anthropic.AsyncAnthropic) -> None:
        with pytest.raises(anthropic.RateLimitError):
            await create(client)

    # seed 15 draws three 429s, so the SDK waits the 5 ms retry-after-ms instead of its ~0.5 s backoff
    api = drive(test, max_retries=2, error_rate=1.0, seed=15, retry_after_ms=5)
    assert len(api.requests) == 3 and api.responses == Counter({429: 3})


def test_latency_delays_the_response() -> None:
    async def test(api: FakeMessagesAPI, client: anthropic.AsyncAnthropic) -> None:
        started = time.monotonic()
        await create(client)
        assert time.monotonic() - started >= 0.15

    drive(test, latency_ms=150)


def test_tool_use_round_trip() -> None:
    async def test(api: FakeMessagesAPI, client: anthropic.AsyncAnthropic) -> None:
        for call in (create, stream):
            choice = {"type": "tool", "name": "get_weather"}
            message = await call(client, tools=[WEATHER_TOOL], tool_choice=choice)
            (block,) = message.content
            assert message.stop_reason == "tool_use" and block.type == "tool_use"
            assert block.name == "get_weather" and block.id.startswith("toolu_fake_")
            assert block.input == {"city": f"{SIMULATED_MARK} city", "days": 1}  # every required field, by type
            result = {"type": "tool_result", "tool_use_id": block.id, "content": "Sunny, 21 C."}
            follow_up = [*USER, {"role": "assistant", "content": message.content},
                         {"role": "user", "content": [result]}]
            answer = await call(client, tools=[WEATHER_TOOL], messages=follow_up)
            assert answer.stop_reason == "end_turn" and text_of(answer).startswith(SIMULATED_MARK)
            assert "- get_weather: Sunny, 21 C." in text_of(answer)  # the result was read

    drive(test)


def test_requests_records_every_body_in_order() -> None:
    async def test(api: FakeMessagesAPI, client: anthropic.AsyncAnthropic) -> None:
        await create(client, system="Be brief.")
        await stream(client, max_tokens=77)
        with pytest.raises(anthropic.BadRequestError):
            await create(client, messages=[])

    api = drive(test)
    assert [body.get("stream", False) for body in api.requests] == [False, True, False]
    assert api.requests[0]["system"] == "Be brief." and api.requests[1]["max_tokens"] == 77
    assert api.requests[2]["messages"] == []
    assert api.responses == Counter({200: 2, 400: 1})


def test_count_tokens_and_unknown_routes() -> None:
    async def test(api: FakeMessagesAPI, client: anthropic.AsyncAnthropic) -> None:
        counted = await client.messages.count_tokens(model=MODEL, messages=USER)
        assert counted.input_tokens == (await create(client)).usage.input_tokens
        with pytest.raises(anthropic.NotFoundError) as caught:
            await client.get("/v1/nowhere", cast_to=object)
        assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]

    drive(test)


def test_base_url_needs_a_started_server() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = FakeMessagesAPI().base_url


@pytest.mark.parametrize(("window", "max_tokens", "message"), [
    (100, 10, r"prompt is too long: \d+ tokens > 100 maximum"),
    (5_000, 4_990, r"input length and `max_tokens` exceed context limit: \d+ \+ 4990 > 5000"),
])
def test_a_request_over_the_models_context_window_is_a_400_as_from_the_api(
        window: int, max_tokens: int, message: str) -> None:
    long_ask: list[MessageParam] = [{"role": "user", "content": ASK * 20}]

    async def test(api: FakeMessagesAPI, client: anthropic.AsyncAnthropic) -> None:
        with pytest.raises(anthropic.BadRequestError, match=message) as caught:
            await create(client, messages=long_ask, max_tokens=max_tokens)
        assert caught.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
        counted = await client.messages.count_tokens(model=MODEL, messages=long_ask)
        assert counted.input_tokens == round(len(ASK * 20) / 4)  # the count the 400 is measured by

    api = drive(test, context_window=window)
    assert api.responses[400] == 1


def test_every_model_has_its_window_from_the_table_and_a_1m_variant_its_own() -> None:
    huge: list[MessageParam] = [{"role": "user", "content": "word " * 170_000}]  # ~212,500 tokens

    async def test(api: FakeMessagesAPI, client: anthropic.AsyncAnthropic) -> None:
        with pytest.raises(anthropic.BadRequestError, match="> 200000 maximum"):
            await create(client, model="claude-sonnet-5-5", messages=huge)
        answer = await create(client, model="claude-sonnet-5-5[1m]", messages=huge, max_tokens=16)
        assert answer.stop_reason == "max_tokens"

    drive(test)


def test_the_fake_writes_answers_of_the_length_asked_for() -> None:
    async def test(api: FakeMessagesAPI, client: anthropic.AsyncAnthropic) -> None:
        long = await create(client, max_tokens=4096)
        assert long.stop_reason == "end_turn" and 1900 <= long.usage.output_tokens <= 2100
        assert long.content[0].text.rstrip().splitlines()[-1].startswith("Done.")  # it ends as answers do
        capped = await create(client, max_tokens=500)  # never past max_tokens
        assert capped.usage.output_tokens <= 500
        summary = await create(client, max_tokens=4096, messages=[{"role": "user", "content": COORDINATOR}])
        assert "</summary>" in summary.content[0].text and summary.usage.output_tokens >= 1900

    drive(test, output_tokens=2000)


def test_a_prompt_of_megabytes_meets_the_window_not_a_request_size_limit() -> None:
    """The API takes requests up to 32 MB, so a 2 MB prompt is refused for its tokens, as the API does."""
    huge: list[MessageParam] = [{"role": "user", "content": "x" * 2_000_000}]

    async def test(api: FakeMessagesAPI, client: anthropic.AsyncAnthropic) -> None:
        with pytest.raises(anthropic.BadRequestError, match="prompt is too long: 500000 tokens > 200000 maximum"):
            await create(client, messages=huge)

    assert drive(test).responses == {400: 1}
