"""Runs side by side: the same spec started twice at once gets two folders; two processes resuming
one folder at once cannot both write it, and the second says clearly that the run is in use."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import Orchestra, fake_on_a_thread, first_output

from orchestra_magic.fake.server import FakeMessagesAPI
from orchestra_magic.runfolder.folder import RunFolder

SPEC = "concurrency: 2\ndomains:\n  - name: a\n    coordinator: c\n    workers:\n" + "".join(
    f"      - task: Task {i}.\n" for i in range(30))


@pytest.fixture
def slow_api() -> Iterator[FakeMessagesAPI]:
    """The fake API at 200 ms an answer, on a thread of this process: a test makes it fast once the runs
    have overlapped, so they finish in a moment rather than in seconds."""
    with fake_on_a_thread(latency_ms=200) as api:
        yield api


def env_of(api: FakeMessagesAPI) -> dict[str, str]:
    return {**os.environ, "ANTHROPIC_API_KEY": "sk-test", "ANTHROPIC_BASE_URL": api.base_url}


def until_two_folders_have_an_output(root: Path, runs: list[Orchestra], timeout: float = 60) -> None:
    """Wait (bounded) until two run folders under `root` each have a finished worker, or every run ended."""
    deadline = time.monotonic() + timeout
    while len({p.parent.parent for p in root.glob("*/workers/*.md")}) < 2 and time.monotonic() < deadline:
        if all(run.poll() is not None for run in runs):
            return
        time.sleep(0.02)


def test_the_same_spec_started_twice_at_once_gets_two_folders(tmp_path: Path, slow_api: FakeMessagesAPI) -> None:
    (tmp_path / "spec.yaml").write_text(SPEC)
    runs = [Orchestra(["run", "spec.yaml"], cwd=tmp_path, env=env_of(slow_api)) for _ in range(2)]
    until_two_folders_have_an_output(tmp_path / "orchestration", runs)  # both have run at once ...
    slow_api.latency_ms = 0  # ... so the rest may go fast
    assert [run.wait(120) for run in runs] == [0, 0]
    folders = list((tmp_path / "orchestration").iterdir())
    assert len(folders) == 2
    assert all(len(list(f.glob("workers/*.md"))) == 30 for f in folders)


def test_a_second_resume_of_a_folder_in_use_is_refused(tmp_path: Path, slow_api: FakeMessagesAPI) -> None:
    # One agent at a time: the first run takes over 6 s, ample for the second process to start on a busy
    # machine; once the second is refused, the fake goes fast and the first run ends in a moment.
    (tmp_path / "spec.yaml").write_text(SPEC.replace("concurrency: 2", "concurrency: 1"))
    first = Orchestra(["run", "spec.yaml"], cwd=tmp_path, env=env_of(slow_api))
    folder = first_output(tmp_path / "orchestration")
    second = Orchestra(["run", "spec.yaml", "--resume", folder.name], cwd=tmp_path, env=env_of(slow_api))
    _, stderr = second.communicate(timeout=60)
    assert second.returncode == 2
    assert f"run {folder.name} is in use by another run" in stderr
    slow_api.latency_ms = 0
    assert first.wait(120) == 0  # the first run was not disturbed
    assert RunFolder.open(folder).read_state().status == "done"
