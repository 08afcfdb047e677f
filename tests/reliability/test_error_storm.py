"""A 300-agent run through an error storm ends with every agent done; `attempts` shows the retries."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers import make_spec

import orchestra_magic as om
from orchestra_magic.engine.retry import RetryPolicy
from orchestra_magic.fake.server import FakeMessagesAPI
from orchestra_magic.providers.anthropic.provider import AnthropicProvider


def test_300_agents_survive_errors_cut_streams_and_stalls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    # 30% 429/529/500, 5% of answers cut off halfway, 3% of answers slower than the 0.5 s timeout.
    fake = FakeMessagesAPI(error_rate=0.3, cut_rate=0.05, stall_rate=0.03, stall_ms=3000, seed=11,
                           retry_after_ms=5)
    spec = make_spec({f"d{i}": 59 for i in range(5)}, concurrency=32, attempts=12, timeout=0.5,
                     fan_in=59, roles={"worker": {"max_tokens": 1024}})  # two levels: 295 workers, 5 coordinators

    async def main() -> om.Run:
        await fake.start()
        try:
            return await om.arun(spec, provider=AnthropicProvider(base_url=fake.base_url), root=tmp_path,
                                 retry=RetryPolicy(attempts=12, base=0.01, cap=0.2))
        finally:
            await fake.stop()

    run = asyncio.run(main())
    agents = run.agents
    assert len(agents) == 300
    assert run.status == "done", agents[agents.status != "done"][["agent", "error"]]
    assert fake.responses[429] and fake.responses[529] and fake.responses[500]
    assert fake.faults["cut"] > 0 and fake.faults["stall"] > 0
    assert int(agents.attempts.sum()) > 300 and int(agents.attempts.max()) >= 3
    assert len(list(run.path.glob("workers/*.md"))) == 295
    print(f"\n300 agents: {int(agents.attempts.sum())} attempts; server sent {dict(fake.responses)}, "
          f"faults {dict(fake.faults)}")
