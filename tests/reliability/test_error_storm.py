"""A run through an error storm ends with every agent done; `attempts` shows the retries. The small
version of benchmarks/error_storm.py (300 agents there)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
from error_storm import Storm, storm

# 40 agents; the rarer faults made commoner (10 % cut, 10 % stalled) so that each kind happens in fewer requests
SMALL = Storm(domains=2, per_domain=19, cut_rate=0.1, stall_rate=0.1)


def test_agents_survive_errors_cut_streams_and_stalls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    run, fake = storm(SMALL, tmp_path)
    agents = run.agents
    assert len(agents) == 40
    assert run.status == "done", agents[agents.status != "done"][["agent", "error"]]
    assert fake.responses[429] and fake.responses[529] and fake.responses[500]
    assert fake.faults["cut"] > 0 and fake.faults["stall"] > 0
    assert int(agents.attempts.sum()) > 40 and int(agents.attempts.max()) >= 3
    assert len(list(run.path.glob("workers/*.md"))) == 38
