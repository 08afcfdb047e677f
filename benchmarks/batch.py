"""The quickstart with and without batch mode: tokens, agents answered through a batch, and cost.

Runs examples/quickstart.yaml (21 workers + 4 coordinators) three times against the fake API with the
offline provider's settings: as plain Messages calls, with `mode: batch`, and with `mode: batch` where
10% of batch entries error (seeded), which are then retried as Messages calls at full price. Prints
`cost_usd` totals when `run.agents` has that column (the price table adds it), tokens otherwise.

    python benchmarks/batch.py
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

import orchestra_magic as om
from orchestra_magic.fake.server import FakeMessagesAPI
from orchestra_magic.providers.anthropic.provider import OFFLINE_BATCHES, AnthropicProvider

QUICKSTART = Path(__file__).resolve().parent.parent / "examples" / "quickstart.yaml"
CASES = (("messages", "messages", 0.0), ("batch", "batch", 0.0), ("batch, 10% entries err", "batch", 0.1))


async def measure(mode: str, error_rate: float) -> tuple[om.Run, FakeMessagesAPI, float]:
    spec: dict[str, Any] = {**yaml.safe_load(QUICKSTART.read_text()), "mode": mode}
    # Entries error at `error_rate`; the Messages calls that retry them always succeed (`entry_error`
    # only touches batch entries), so each case ends with every agent done.
    fake = FakeMessagesAPI(seed=7, entry_error=_seeded(error_rate))
    await fake.start()
    started = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as root:
            provider = AnthropicProvider(api_key="benchmark", base_url=fake.base_url, batch=OFFLINE_BATCHES)
            run = await om.arun(spec, provider=provider, root=root)
    finally:
        await fake.stop()
    return run, fake, time.perf_counter() - started


def _seeded(rate: float) -> Any:
    rng = random.Random(11)
    return lambda params: "overloaded_error" if rng.random() < rate else None


def main() -> None:
    os.environ.pop("ANTHROPIC_BASE_URL", None)
    print(f"{'mode':<24}{'done':>6}{'via batch':>11}{'batches':>9}{'input':>9}{'output':>9}"
          f"{'billed as in/out':>19}{'cost_usd':>11}{'seconds':>9}")
    for label, mode, rate in CASES:
        run, fake, seconds = asyncio.run(measure(mode, rate))
        agents = run.agents
        cost = f"{agents['cost_usd'].sum():.4f}"
        done = int((agents.status == "done").sum())
        weight = agents.batch.map({True: 0.5, False: 1.0})  # a batch's tokens are billed at half price
        billed = f"{(agents.input_tokens * weight).sum():,.0f}/{(agents.output_tokens * weight).sum():,.0f}"
        print(f"{label:<24}{done:>6}{int(agents.batch.sum()):>11}{len(fake.batches.created):>9}"
              f"{int(agents.input_tokens.sum()):>9,}{int(agents.output_tokens.sum()):>9,}{billed:>19}{cost:>11}"
              f"{seconds:>9.2f}")
    print("billed as: full-price-equivalent tokens (a batch's at half). cost_usd: the price table, claude-sonnet-5-5.")


if __name__ == "__main__":
    main()
