"""What a tool loop costs: wall time, Messages calls and input tokens, against the same run without tools.

40 workers in 5 domains against the fake Messages API (no latency), first with no tools, then with one
and with three Python tools (the fake calls each offered tool once, so three tools are three tool turns
and four Messages calls per worker). Every tool turn sends the whole conversation again, which the
input-token ratio shows; the time ratio shows what our loop (SDK parse, thread hop, result) adds.

    python benchmarks/tools.py
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from typing import Any

import orchestra_magic as om
from orchestra_magic.fake.server import FakeMessagesAPI
from orchestra_magic.providers.anthropic.provider import AnthropicProvider


def price(vendor: str) -> str:
    """A vendor's list price."""
    return f"{vendor}: $42 a month"


def region(vendor: str) -> str:
    """Where a vendor hosts."""
    return f"{vendor}: eu-west-1"


def support(vendor: str) -> str:
    """A vendor's support hours."""
    return f"{vendor}: 24/7"


TOOLS = [price, region, support]


def spec(tools: int) -> dict[str, Any]:
    names = [t.__name__ for t in TOOLS[:tools]]
    return {"roles": {"worker": {"tools": names}} if names else {}, "concurrency": 8,
            "domains": [{"name": f"d{d}", "coordinator": "Compare.",
                         "workers": [{"task": f"Vendor {d}-{w}."} for w in range(8)]} for d in range(5)]}


async def measure(tools: int) -> tuple[float, int, int]:
    fake = FakeMessagesAPI()
    await fake.start()
    try:
        with tempfile.TemporaryDirectory() as root:
            started = time.perf_counter()
            run = await om.arun(spec(tools), provider=AnthropicProvider(api_key="benchmark", base_url=fake.base_url),
                                root=root, tools=TOOLS[:tools] or None)
            seconds = time.perf_counter() - started
            assert run.status == "done", run.agents.error.tolist()
            workers = run.agents[run.agents.role == "worker"]
            return seconds, len(fake.requests), int(workers.input_tokens.sum())
    finally:
        await fake.stop()


def main() -> None:
    os.environ.pop("ANTHROPIC_BASE_URL", None)
    asyncio.run(measure(0))  # warm up imports and the first connection
    base_seconds, base_calls, base_tokens = asyncio.run(measure(0))
    print(f"no tools:    {base_seconds:.2f} s, {base_calls} Messages calls "
          f"({1000 * base_seconds / base_calls:.1f} ms each), {base_tokens:,} worker input tokens")
    for tools in (1, 3):
        seconds, calls, tokens = asyncio.run(measure(tools))
        print(f"{tools} tool{'s' if tools > 1 else ' '}:     {seconds:.2f} s ({seconds / base_seconds:.2f}x), "
              f"{calls} Messages calls ({1000 * seconds / calls:.1f} ms each), "
              f"{tokens:,} worker input tokens ({tokens / base_tokens:.2f}x)")


if __name__ == "__main__":
    main()
