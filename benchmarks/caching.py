"""Input tokens billed at full price for the quickstart, with and without prompt caching.

Runs examples/quickstart.yaml (25 agents) against the fake Messages API, which caches a prefix marked
with `cache_control` the way the API does (at least 1,024 tokens, written once, then read), with the
spec's shared context lengthened to about 2,000 tokens, as a real brief would be.

    python benchmarks/caching.py
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from pathlib import Path

import yaml

import orchestra_magic as om
from orchestra_magic.fake.server import FakeMessagesAPI
from orchestra_magic.providers.anthropic.provider import AnthropicProvider

QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart.yaml"


async def measure(cache: bool) -> om.Run:
    spec = yaml.safe_load(QUICKSTART.read_text())
    spec["context"] += "Our requirements, constraints and prior decisions in detail. " * 130
    fake = FakeMessagesAPI()
    await fake.start()
    try:
        with tempfile.TemporaryDirectory() as root:
            provider = AnthropicProvider(api_key="benchmark", base_url=fake.base_url, cache_prompts=cache)
            return await om.arun(spec, provider=provider, root=root)
    finally:
        await fake.stop()


def main() -> None:
    os.environ.pop("ANTHROPIC_BASE_URL", None)
    for cache in (False, True):
        agents = asyncio.run(measure(cache)).agents
        full, written, read = (int(agents[c].sum()) for c in ("input_tokens", "cache_write_tokens",
                                                                "cache_read_tokens"))
        print(f"caching {'on ' if cache else 'off'}: {full:>7,} input tokens at full price, "
              f"{written:>6,} written to the cache (1.25x), {read:>7,} read from it (0.1x); "
              f"full-price equivalent {full + 1.25 * written + 0.1 * read:>9,.0f}")


if __name__ == "__main__":
    main()
