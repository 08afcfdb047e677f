"""An error storm: a run through the real SDK against the fake Messages API answering 30 % of requests
with 429 (with `retry-after`), 529 or 500, cutting 5 % of answers off halfway and stalling 3 % past the
0.5 s timeout. Every agent must end done; `attempts` shows the retries it took.

    python benchmarks/error_storm.py                    # 300 agents: 5 domains of 59 workers + 5 coordinators
    python benchmarks/error_storm.py --per-domain 19 --domains 2 --cut-rate 0.1 --stall-rate 0.1

`tests/reliability/test_error_storm.py` runs a small storm through `storm` below (fewer agents, more of
the rarer faults, so that each kind still happens) and asserts the same.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import orchestra_magic as om
from orchestra_magic.engine.retry import RetryPolicy
from orchestra_magic.fake.server import FakeMessagesAPI
from orchestra_magic.providers.anthropic.provider import AnthropicProvider


@dataclass(frozen=True)
class Storm:
    """How hard it blows: `domains` of `per_domain` workers each (one coordinator per domain, no tree)."""

    domains: int = 5
    per_domain: int = 59
    error_rate: float = 0.3
    cut_rate: float = 0.05
    stall_rate: float = 0.03
    seed: int = 11


def spec_of(storm: Storm) -> dict[str, object]:
    return {"concurrency": 32, "attempts": 12, "timeout": 0.5, "fan_in": storm.per_domain,
            "roles": {"worker": {"max_tokens": 1024}},
            "domains": [{"name": f"d{d}", "coordinator": f"Synthesise d{d}.",
                         "workers": [{"task": f"Task {i} of d{d}."} for i in range(1, storm.per_domain + 1)]}
                        for d in range(storm.domains)]}


def storm(storm: Storm, root: Path) -> tuple[om.Run, FakeMessagesAPI]:
    """Run the storm's spec under `root` (the API key must be set); the run and the fake that served it."""
    fake = FakeMessagesAPI(error_rate=storm.error_rate, cut_rate=storm.cut_rate, stall_rate=storm.stall_rate,
                           stall_ms=3000, seed=storm.seed, retry_after_ms=5)

    async def main() -> om.Run:
        await fake.start()
        try:
            return await om.arun(spec_of(storm), provider=AnthropicProvider(base_url=fake.base_url), root=root,
                                 retry=RetryPolicy(attempts=12, base=0.01, cap=0.2))
        finally:
            await fake.stop()

    return asyncio.run(main()), fake


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = Storm()
    for name, value in vars(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    the_storm = Storm(**vars(parser.parse_args(argv)))
    os.environ.setdefault("ANTHROPIC_API_KEY", "sk-ant-benchmark")
    with tempfile.TemporaryDirectory() as root:
        run, fake = storm(the_storm, Path(root))
        agents = run.agents
        print(f"{len(agents)} agents: {run.status}, {int((agents.status == 'done').sum())} done; "
              f"{int(agents.attempts.sum())} attempts (most for one agent: {int(agents.attempts.max())}); "
              f"the server sent {dict(sorted(fake.responses.items()))}, faults {dict(fake.faults)}")
        return 0 if run.status == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
