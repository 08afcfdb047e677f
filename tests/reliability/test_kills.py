"""SIGKILLs at random and at the worst moments: no finished agent is asked again (requests counted at the
fake Messages API), and the outputs end byte-identical to an unkilled run's. The small version of
benchmarks/kill_harness.py, whose sessions are `orchestra run` in processes forked from a server that
has the package imported (so a session starts in milliseconds)."""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
import kill_harness as harness

from orchestra_magic.cli import main


@pytest.fixture(scope="module")
def sessions() -> Iterator[tuple[harness.CountingFake, harness.Launcher, dict[str, str]]]:
    with harness.CountingFake(latency_ms=20) as fake, harness.forked_sessions() as launch:
        env = {**os.environ, "ANTHROPIC_API_KEY": "sk-ant-made-up", "ANTHROPIC_BASE_URL": fake.api.base_url}
        yield fake, launch, env


@pytest.mark.parametrize("seed", [1, 2])
def test_random_kills_never_re_ask_a_finished_agent_and_end_as_an_unkilled_run(
        tmp_path: Path, sessions: tuple[harness.CountingFake, harness.Launcher, dict[str, str]], seed: int) -> None:
    fake, launch, env = sessions
    report = harness.killed_run(fake, launch, tmp_path, harness.spec_text(30, 8), env, kills=5,
                                rng=random.Random(seed), latency=0.04)
    assert report.kills == 5
    assert not report.reasked, f"finished agents asked again: {dict(report.reasked)}"
    assert report.identical


def test_a_finished_run_resumed_and_killed_twice_forgets_no_finished_agent(
        tmp_path: Path, sessions: tuple[harness.CountingFake, harness.Launcher, dict[str, str]],
        capsys: pytest.CaptureFixture[str]) -> None:
    fake, launch, env = sessions
    (tmp_path / "spec.yaml").write_text(harness.spec_text(30, 8))
    assert launch(["run", "spec.yaml", "--provider", "anthropic"], env, tmp_path).wait(120) == 0
    folder = harness.run_folder(tmp_path / "orchestration")
    assert folder is not None
    resume = ["run", "spec.yaml", "--resume", folder.name]
    before = fake.count
    for _ in range(2):  # each resume dies the moment its first event is on record
        assert launch(resume, env, tmp_path, die_at=1).wait(120) == -9

    assert main(["show", str(folder)]) in (0, 1)
    out = " ".join(capsys.readouterr().out.split())
    counts = out[out.index("30 agents:"):out.index("Tokens:")]
    assert not any(word in counts for word in ("pending", "running", "cancelled", "failed")), out
    assert launch([*resume, "--provider", "anthropic"], env, tmp_path).wait(120) == 0
    assert fake.count == before  # nothing was asked again
