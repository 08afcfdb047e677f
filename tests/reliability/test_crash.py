"""A run killed with SIGKILL mid-flight leaves only whole files, and resuming it never asks the API
again for an agent whose output was already on disk (requests counted at the fake server)."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import Orchestra, fake_on_a_thread, first_output, orchestra

from orchestra_magic.fake.server import FakeMessagesAPI

SPEC = "concurrency: 4\ndomains:\n" + "".join(
    f"  - name: d{d}\n    coordinator: Sum up.\n    workers:\n"
    + "".join(f"      - task: Task {i} of d{d}.\n" for i in range(12))
    for d in range(2)
)
OUTPUT_FILE = re.compile(r"Your output file: workers/(\S+)\.md")


@pytest.fixture
def fake() -> Iterator[FakeMessagesAPI]:
    """The fake API on its own thread, so this process can count what a CLI subprocess asks it."""
    with fake_on_a_thread(latency_ms=150) as api:
        yield api


def asked_workers(bodies: list[dict[str, Any]]) -> set[str]:
    """The workers these Messages API requests were for (their prompt names their output file)."""
    return {m.group(1) for body in bodies if (m := OUTPUT_FILE.search(body["messages"][0]["content"]))}


def test_sigkill_mid_run_then_resume_redoes_nothing_already_on_disk(tmp_path: Path, fake: FakeMessagesAPI) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    env = {**os.environ, "ANTHROPIC_API_KEY": "sk-test", "ANTHROPIC_BASE_URL": fake.base_url}
    victim = Orchestra(["run", str(spec)], cwd=tmp_path, env=env)
    folder = first_output(tmp_path / "orchestration")
    deadline = time.monotonic() + 30
    while len(list(folder.glob("workers/*.md"))) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)  # let a few more finish, so the kill lands mid-flight
    victim.send_signal(signal.SIGKILL)
    victim.wait(10)

    on_disk = {p.stem for p in folder.glob("workers/*.md")}
    for path in folder.glob("workers/*.md"):  # a write the kill cut short left a hidden temporary, never a torn file
        assert path.read_text().rstrip().endswith("."), f"{path.name} is not whole"
    before = len(fake.requests)
    fake.latency_ms = 0  # the kill has landed: the resume need not be slow

    resumed = orchestra("run", str(spec), "--resume", folder.name, cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert on_disk and not on_disk & asked_workers(fake.requests[before:])
    assert len({p.stem for p in folder.glob("workers/*.md")}) == 24
    assert not list(folder.rglob(".*.tmp"))  # the resume swept what the killed run left half-written


def test_a_kernel_restarted_mid_run_leaves_a_folder_that_resumes_without_repeats(
        tmp_path: Path, fake: FakeMessagesAPI) -> None:
    from jupyter_client.manager import start_new_kernel

    env = {**os.environ, "ANTHROPIC_API_KEY": "sk-test", "ANTHROPIC_BASE_URL": fake.base_url}
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path), env=env)
    try:
        kc.execute_interactive("%load_ext orchestra_magic", timeout=60)
        kc.execute(f"%%orchestrate --provider anthropic\n{SPEC}")
        folder = first_output(tmp_path / "orchestration")
        deadline = time.monotonic() + 30
        while len(list(folder.glob("workers/*.md"))) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        km.restart_kernel(now=True)  # the kernel process is killed, as a crash or a forced restart would
        on_disk = {p.stem for p in folder.glob("workers/*.md")}
        before = len(fake.requests)
        fake.latency_ms = 0
        kc.wait_for_ready(timeout=60)
        kc.execute_interactive("%load_ext orchestra_magic", timeout=60)
        reply = kc.execute_interactive(f"%%orchestrate --provider anthropic --resume {folder.name} -o again\n{SPEC}",
                                       timeout=120)
        assert reply["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert not list(folder.rglob(".*.tmp"))
    assert on_disk and not on_disk & asked_workers(fake.requests[before:])
    assert len(list(folder.glob("workers/*.md"))) == 24
