"""run.json: the state as compact JSON, written without a memory spike at 1,000 agents."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

from orchestra_magic.runfolder.folder import RunFolder, manifest_chunks
from orchestra_magic.state.run import AgentState, RunState
from orchestra_magic.state.usage import Usage


def finished_state(agents: int) -> RunState:
    rows = {f"w{i}": AgentState(f"w{i}", "worker", f"d{i % 5}", f"workers/w{i}.md", status="done", attempts=1,
                                usage=Usage(120, 150), started_at=1.5, finished_at=2.25,
                                input_hash="0" * 32, note='Done. Found "4" patterns — één caveat.')
            for i in range(agents)}
    return RunState("run-1", "bench", "anthropic", 1.0, rows, status="done", finished_at=9.0)


def test_run_json_is_the_state_as_compact_json_byte_for_byte(tmp_path: Path) -> None:
    state = finished_state(3)
    folder = RunFolder.create(tmp_path, "bench")
    folder.snapshot(state)
    text = (folder.path / "run.json").read_text(encoding="utf-8")
    assert text == json.dumps(state.to_dict(), separators=(",", ":"))
    assert folder.read_state().agents == state.agents
    assert "".join(manifest_chunks(finished_state(0))) == json.dumps(finished_state(0).to_dict(), separators=(",", ":"))


def test_a_snapshot_of_1000_agents_needs_little_memory_beyond_its_text(tmp_path: Path) -> None:
    state = finished_state(1000)
    folder = RunFolder.create(tmp_path, "bench")
    tracemalloc.start()
    try:
        folder.snapshot(state)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    size = (folder.path / "run.json").stat().st_size
    # Encoding the whole dict in one call peaks at about 9x the text (every token its own string).
    assert peak < 1.5 * size, f"peak {peak:,} bytes for a {size:,}-byte run.json"
