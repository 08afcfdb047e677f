"""One agent call as a plain (non-streamed) Messages request, read straight from its JSON body.

Why: at a thousand calls the client is CPU-bound, and a stream costs about twice a plain request per call
(an event per text chunk, each parsed and accumulated into SDK objects) for nothing the engine uses: it
shows no partial text and waits for the whole answer either way. So a call is streamed only where it
must be (`must_stream`), and a plain answer is read with `json.loads` into the few fields a `Completion`
holds, building no SDK objects. The SDK still does HTTP, auth, errors and its (switched-off) retries.

A plain answer cut off keeps the guarantees a stream has: a connection dropped mid-body fails in the SDK
as a transport error (transient); a `200` whose body is not a whole message (not JSON, cut short, fields
missing or of the wrong type) is a transient fault of the wire here, never recorded as an answer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeVar

from anthropic.types import Message

from ...errors import TransientAgentError

_T = TypeVar("_T")

# The SDK refuses a plain request whose answer could take over ten minutes, reckoning an hour per
# 128,000 output tokens (`_calculate_nonstreaming_timeout`), and a few models have a lower ceiling.
_SECONDS_PER_TOKEN = 60 * 60 / 128_000
_MAX_PLAIN_SECONDS = 10 * 60
try:
    from anthropic._constants import MODEL_NONSTREAMING_TOKENS as _MODEL_LIMITS
except ImportError:  # a later SDK may move it; its own check then still refuses what it must
    _MODEL_LIMITS = {}


def must_stream(model: str, max_tokens: int, timeout: float) -> bool:
    """Stream when the answer may take longer than the SDK allows a plain request, or longer than the
    client's read `timeout`: a plain answer sends nothing until it is whole, so a long one would time
    out where a stream, whose bytes keep arriving, does not."""
    seconds = max_tokens * _SECONDS_PER_TOKEN
    # Bedrock's ids carry a cross-region prefix (`global.`, `us.`) the SDK's table does not
    limit = _MODEL_LIMITS.get(model) or _MODEL_LIMITS.get(model.partition(".")[2])
    return seconds > min(_MAX_PLAIN_SECONDS, timeout) or (limit is not None and max_tokens > limit)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the engine keeps of a message: its text blocks joined, its usage, model and stop reason."""

    text: str
    input_tokens: int
    output_tokens: int
    model: str
    stop_reason: str
    cache_write_tokens: int
    cache_read_tokens: int

    @classmethod
    def of_message(cls, message: Message) -> Answer:
        """The same fields from a message the SDK built (a stream's, a batch entry's)."""
        usage = message.usage
        return cls("".join(block.text for block in message.content if block.type == "text"), usage.input_tokens,
                   usage.output_tokens, message.model, message.stop_reason or "",
                   usage.cache_creation_input_tokens or 0, usage.cache_read_input_tokens or 0)


def answer_of(body: bytes) -> Answer:
    """The answer in a plain response's body, or `TransientAgentError` when the body is not a whole message."""
    try:
        message = json.loads(body)
        return _answer(message)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        what = "was not valid JSON" if isinstance(exc, json.JSONDecodeError) else "was not a whole message"
        raise TransientAgentError(f"the API's answer {what} ({_first_line(exc)}); it was not kept") from None


def _answer(message: Any) -> Answer:
    if not isinstance(message, dict) or message.get("type") != "message":
        raise TypeError("the body is no message object")
    usage, content = message["usage"], message["content"]
    if not isinstance(content, list) or not isinstance(message["stop_reason"], str):
        raise TypeError("a message's content is a list and a whole message has a stop_reason")
    texts = [block["text"] for block in content if block["type"] == "text"]
    return Answer("".join(_of(str, t, "text") for t in texts), _of(int, usage["input_tokens"], "input_tokens"),
                  _of(int, usage["output_tokens"], "output_tokens"), _of(str, message["model"], "model"),
                  message["stop_reason"], _tokens(usage, "cache_creation_input_tokens"),
                  _tokens(usage, "cache_read_input_tokens"))


def _of(kind: type[_T], value: Any, name: str) -> _T:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TypeError(f"{name} is {type(value).__name__}, not {kind.__name__}")
    return value


def _tokens(usage: dict[str, Any], name: str) -> int:
    """A cache figure: absent or null means none."""
    value = usage.get(name)
    return 0 if value is None else _of(int, value, name)


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:200]
