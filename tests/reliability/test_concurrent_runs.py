"""Runs side by side: the same spec started twice at once gets two folders; two processes resuming
one folder at once cannot both write it, and the second says clearly that the run is in use."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import first_output

from orchestra_magic.runfolder.folder import RunFolder

SPEC = "concurrency: 2\ndomains:\n  - name: a\n    coordinator: c\n    workers:\n" + "".join(
    f"      - task: Task {i}.\n" for i in range(30))


def orchestra(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "orchestra_magic", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def slow_api() -> Iterator[dict[str, str]]:
    server = subprocess.Popen([sys.executable, "-m", "orchestra_magic", "fake-api", "--port", "0",
                               "--latency-ms", "200"], stderr=subprocess.PIPE, text=True)
    assert server.stderr is not None
    url = server.stderr.readline().split(" on ")[1].split()[0]
    yield {**os.environ, "ANTHROPIC_API_KEY": "sk-test", "ANTHROPIC_BASE_URL": url}
    server.terminate()
    server.wait(10)


def test_the_same_spec_started_twice_at_once_gets_two_folders(tmp_path: Path, slow_api: dict[str, str]) -> None:
    (tmp_path / "spec.yaml").write_text(SPEC)
    runs = [orchestra("run", "spec.yaml", cwd=tmp_path, env=slow_api) for _ in range(2)]
    assert [run.wait(120) for run in runs] == [0, 0]
    folders = list((tmp_path / "orchestration").iterdir())
    assert len(folders) == 2
    assert all(len(list(f.glob("workers/*.md"))) == 30 for f in folders)


def test_a_second_resume_of_a_folder_in_use_is_refused(tmp_path: Path, slow_api: dict[str, str]) -> None:
    # One agent at a time: the first run takes over 6 s, ample for the second process to start on a busy machine.
    (tmp_path / "spec.yaml").write_text(SPEC.replace("concurrency: 2", "concurrency: 1"))
    first = orchestra("run", "spec.yaml", cwd=tmp_path, env=slow_api)
    folder = first_output(tmp_path / "orchestration")
    second = orchestra("run", "spec.yaml", "--resume", folder.name, cwd=tmp_path, env=slow_api)
    _, stderr = second.communicate(timeout=60)
    assert second.returncode == 2
    assert f"run {folder.name} is in use by another run" in stderr
    assert first.wait(120) == 0  # the first run was not disturbed
    assert RunFolder.open(folder).read_state().status == "done"
