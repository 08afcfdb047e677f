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
from orchestra_magic.runfolder.folder import RunFolder


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

    assert main(["show", str(folder)]) == 0  # every output is whole: the run is done, though cut off twice since
    out = " ".join(capsys.readouterr().out.split())
    counts = out[out.index("30 agents:"):out.index("Tokens:")]
    assert not any(word in counts for word in ("pending", "running", "cancelled", "failed")), out
    assert f"Run {folder.name}: done" in out
    assert launch([*resume, "--provider", "anthropic"], env, tmp_path).wait(120) == 0
    assert fake.count == before  # nothing was asked again


def test_a_run_killed_between_done_on_record_and_its_new_file_never_keeps_the_old_file(
        tmp_path: Path, sessions: tuple[harness.CountingFake, harness.Launcher, dict[str, str]]) -> None:
    fake, launch, env = sessions
    spec = harness.spec_text(5, 1)  # one agent at a time: w0 is started (event 1), then done (event 2)
    edited = spec.replace("task: Task 0.", "task: Task 0, asked another way.")
    expected, _, _ = harness.reference(fake, launch, tmp_path / "reference", edited, env)
    work = tmp_path / "run"
    work.mkdir()
    (work / "spec.yaml").write_text(spec)
    assert launch(["run", "spec.yaml", "--provider", "anthropic"], env, work).wait(120) == 0
    folder = harness.run_folder(work / "orchestration")
    assert folder is not None
    (work / "spec.yaml").write_text(edited)
    resume = ["run", "spec.yaml", "--resume", folder.name]
    assert launch(resume, env, work, die_at=2).wait(120) == -9  # w0's new answer is on record, not on disk
    before = fake.count
    assert launch([*resume, "--provider", "anthropic"], env, work).wait(120) == 0
    assert "w0" in fake.asked(before)
    assert harness.outputs(folder) == expected  # w0's file answers the new task, and so does the synthesis


def test_sigterm_stops_a_run_like_ctrl_c_cancelled_with_the_resume_hint_and_exit_143(
        tmp_path: Path, sessions: tuple[harness.CountingFake, harness.Launcher, dict[str, str]]) -> None:
    fake, launch, env = sessions
    (tmp_path / "spec.yaml").write_text(harness.spec_text(200, 4))
    before = fake.count
    session = launch(["run", "spec.yaml", "--provider", "anthropic"], env, tmp_path)
    while fake.count == before:  # the run is under way (bounded by the test timeout)
        assert session.wait(0.005) is None
    session.terminate()
    assert session.wait(60) == 143
    folder = harness.run_folder(tmp_path / "orchestration")
    assert folder is not None
    assert RunFolder.open(folder).read_state().status == "cancelled"
    assert f"--resume {folder.name}" in (tmp_path / "stderr.log").read_text()
