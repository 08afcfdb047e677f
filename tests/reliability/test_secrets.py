"""The API key never reaches the run folder, the journal, the manifest, or anything printed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import make_spec

MARKER = "sk-ant-MARKER-7f3a9c-never-written"


def test_a_marker_key_appears_nowhere_after_a_run_with_errors(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(make_spec({"a": 4, "b": 4}, attempts=2)))
    server = subprocess.Popen([sys.executable, "-m", "orchestra_magic", "fake-api", "--port", "0",
                               "--error-rate", "0.5", "--seed", "4"], stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        url = server.stderr.readline().split(" on ")[1].split()[0]
        env = {**os.environ, "ANTHROPIC_API_KEY": MARKER, "ANTHROPIC_BASE_URL": url}
        result = subprocess.run([sys.executable, "-m", "orchestra_magic", "run", str(spec)], cwd=tmp_path,
                                env=env, capture_output=True, text=True, timeout=120)
    finally:
        server.terminate()
        server.wait(10)
    assert "failed" in result.stdout or "done" in result.stdout  # the run happened, with retries or failures
    assert MARKER not in result.stdout + result.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 10
    for path in written:
        assert MARKER not in path.read_text(errors="replace"), path
