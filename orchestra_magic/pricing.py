"""What a call costs and how much it can read: per model, a price (US dollars per million tokens) and a
context window (tokens).

These two tables are the one place to update when Anthropic changes prices or windows. Source: the pricing page and the
model overview pages of platform.claude.com, checked 2026-11-25 (Sonnet 5.5's cache-read cut of
2026-10-07 applied). Models missing here cost `None` (shown as unknown, never as $0); a spec with
`budget_usd` refuses to start with a model it cannot price.

Bedrock, Vertex AI and Foundry list the same per-token prices for these models; a cloud id is priced by
the model behind it (`cloud_models.base_model`). What differs on Bedrock and Vertex AI is where the
request is served: a regional (or geographic) endpoint costs `REGIONAL_PREMIUM` times the global one,
as both clouds list it for Claude models since the 4.5 generation; the provider marks such answers.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cloud_models import base_model


@dataclass(frozen=True, slots=True)
class Price:
    """USD per million tokens. `cache_write` is the 5-minute cache (the kind the providers request)."""

    input: float
    output: float
    cache_write: float
    cache_read: float
    long_prompt: Price | None = None  # rates for a request whose prompt is over `LONG_PROMPT` tokens


LONG_PROMPT = 100_000
BATCH_DISCOUNT = 0.5  # the Message Batches API bills every token at half price; it stacks with caching
REGIONAL_PREMIUM = 1.10  # Bedrock's geographic inference profiles and Vertex AI's regional endpoints

_OPUS_4_5 = Price(5.0, 25.0, 6.25, 0.50)
_SONNET_4 = Price(3.0, 15.0, 3.75, 0.30)
PRICES: dict[str, Price] = {
    "claude-fable-5-1": Price(10.0, 50.0, 12.50, 0.25),
    "claude-mythos-5-1": Price(10.0, 50.0, 12.50, 0.25),
    "claude-fable-5": Price(10.0, 50.0, 12.50, 1.00),
    "claude-mythos-5": Price(10.0, 50.0, 12.50, 1.00),
    "claude-opus-5-5": Price(4.0, 20.0, 5.00, 0.20),
    "claude-opus-5": _OPUS_4_5,
    "claude-opus-4-8": _OPUS_4_5,
    "claude-opus-4-7": _OPUS_4_5,
    "claude-opus-4-6": _OPUS_4_5,
    "claude-opus-4-5": _OPUS_4_5,
    "claude-sonnet-5-5": Price(2.0, 10.0, 2.50, 0.10),
    "claude-sonnet-5": Price(2.0, 10.0, 2.50, 0.20),
    "claude-sonnet-4-6": _SONNET_4,
    "claude-sonnet-4-5": _SONNET_4,
    "claude-haiku-5-5": Price(0.10, 0.50, 0.125, 0.01, long_prompt=Price(0.50, 2.50, 0.625, 0.05)),
    "claude-haiku-4-5": Price(1.0, 5.0, 1.25, 0.10),
}


def price_of(model: str) -> Price | None:
    """The price of a model id; dated ids (`claude-haiku-4-5-20251001`), `[1m]` variants and cloud ids
    (`global.anthropic.claude-haiku-4-5-20251001-v1:0`, `claude-haiku-4-5@20251001`) share their model's price."""
    base = base_model(model.removesuffix("[1m]"))
    if base in PRICES:
        return PRICES[base]
    undated = base.rsplit("-", 1)[0] if base[-8:].isdigit() else base
    return PRICES.get(undated)


# The context window of each model: prompt plus `max_tokens` must fit in it (the API answers 400
# otherwise). The standard window is 200,000 tokens; a `[1m]` id names the 1M-token variant. A model
# missing here is assumed to have `DEFAULT_WINDOW`, the smallest current window, so a plan never
# assumes more room than there is.
DEFAULT_WINDOW = 200_000
LONG_WINDOW = 1_000_000
CONTEXT_WINDOWS: dict[str, int] = {model: DEFAULT_WINDOW for model in PRICES}


def window_of(model: str) -> int:
    """The context window of a model id, in tokens (dated ids share their model's window)."""
    if model.endswith("[1m]"):
        return LONG_WINDOW
    undated = model.rsplit("-", 1)[0] if model[-8:].isdigit() else model
    return CONTEXT_WINDOWS.get(model, CONTEXT_WINDOWS.get(undated, DEFAULT_WINDOW))


def cost_usd(model: str, input_tokens: int, output_tokens: int, cache_write_tokens: int = 0,
             cache_read_tokens: int = 0, *, batch: bool = False, regional: bool = False) -> float | None:
    """The dollar cost of one answer, or None when the model has no known price. `regional`: served by a
    cloud's regional endpoint, at its premium."""
    price = price_of(model)
    if price is None:
        return None
    prompt = input_tokens + cache_write_tokens + cache_read_tokens
    if price.long_prompt is not None and prompt > LONG_PROMPT:
        price = price.long_prompt
    total = (input_tokens * price.input + output_tokens * price.output
             + cache_write_tokens * price.cache_write + cache_read_tokens * price.cache_read) / 1e6
    return total * (BATCH_DISCOUNT if batch else 1.0) * (REGIONAL_PREMIUM if regional else 1.0)


def dollars(amount: float) -> str:
    """An amount as people read it: cents matter below a dollar, so four places there, two above."""
    return f"${amount:,.4f}" if abs(amount) < 1 else f"${amount:,.2f}"
