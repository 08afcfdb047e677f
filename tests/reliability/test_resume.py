"""A resume never forgets what is on disk: damaged journal lines cost only the agents they were about, an
edited spec keeps the records of every agent it still has (and of those it dropped, set aside), and a
spec that shares nothing with the folder is refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from helpers import make_spec

import orchestra_magic as om
from orchestra_magic.cli import main
from orchestra_magic.errors import RunFolderError

EVENT_KEYS = ("agent", "status", "input_tokens", "output_tokens", "input_hash", "output_hash", "summary", "note")


def answering(calls: list[str]) -> om.PythonProvider:
    def answer(request: om.AgentRequest) -> str:
        calls.append(request.agent)
        return f"Finding for {request.agent}.\nDone. Found it."

    def synthesise(request: om.AgentRequest) -> str:
        calls.append(request.agent)
        return "<summary>All found.</summary>"

    return om.PythonProvider(answer, synthesise)


def crashed_with_journal(tmp_path: Path, damage: str) -> tuple[Path, list[str]]:
    """A finished run turned into the folder a crash leaves: run.json from before the agents finished
    (all pending), and their `done` events in the journal, the second line damaged by `damage`."""
    calls: list[str] = []
    run = om.run(make_spec({"a": 4}), provider=answering(calls), root=tmp_path)
    manifest = json.loads((run.path / "run.json").read_text())
    lines = []
    for row in manifest["agents"]:
        event = {"event": "AgentFinished", "at": row["finished_at"], **{k: row[k] for k in EVENT_KEYS if k in row}}
        lines.append(json.dumps(event))
        row["status"] = "pending"
    wrong_type = json.dumps({**json.loads(lines[1]), "input_tokens": "x"})
    lines[1] = {"garbage": "{not json at all", "wrong type": wrong_type, "zero bytes": "\0" * 40}[damage]
    (run.path / "run.json").write_text(json.dumps({**manifest, "status": "running"}))
    (run.path / "journal.jsonl").write_text("\n".join(lines) + "\n")
    return run.path, calls


@pytest.mark.parametrize("damage", ["garbage", "wrong type", "zero bytes"])
def test_a_damaged_journal_line_costs_only_its_agent_and_is_named_in_one_line(
        tmp_path: Path, damage: str, capsys: pytest.CaptureFixture[str]) -> None:
    folder, calls = crashed_with_journal(tmp_path, damage)
    assert main(["show", str(folder)]) == 1  # no traceback: the run was cut off
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "journal.jsonl: skipped 1 damaged line (2)" in err, err
    calls.clear()
    again = om.run(make_spec({"a": 4}), provider=answering(calls), root=tmp_path, resume=folder.name)
    assert again.status == "done" and calls == ["a-2"]  # the lines after the damaged one still count


def test_a_line_torn_by_a_crash_at_the_end_of_the_journal_is_not_damage(tmp_path: Path) -> None:
    folder, _ = crashed_with_journal(tmp_path, "garbage")
    journal = folder / "journal.jsonl"
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join([lines[0], *lines[2:]]) + '\n{"event":"AgentFini')
    state = om.load_run(folder).state
    assert state.damage == "" and state.counts["done"] == 4


def test_an_edited_spec_keeps_its_agents_records_and_sets_aside_those_it_dropped(tmp_path: Path) -> None:
    calls: list[str] = []
    first = om.run(make_spec({"a": 3, "b": 2}), provider=answering(calls), root=tmp_path)
    calls.clear()
    edited = om.run(make_spec({"a": 3, "c": 1}), provider=answering(calls), root=tmp_path, resume=first.run_id)
    assert edited.status == "done" and calls == ["c-1", "coordinator:c"]
    manifest = json.loads((first.path / "run.json").read_text())
    removed = {row["agent"]: row["status"] for row in manifest["removed"]}
    assert removed == {"b-1": "done", "b-2": "done", "coordinator:b": "done"}
    kept = {"a-1", "a-2", "a-3", "coordinator:a", "c-1", "coordinator:c"}
    assert {row["agent"] for row in manifest["agents"]} == kept

    calls.clear()  # back to the first spec: b's records come back and its outputs are kept; c's are set aside
    again = om.run(make_spec({"a": 3, "b": 2}), provider=answering(calls), root=tmp_path, resume=first.run_id)
    assert again.status == "done" and calls == []
    assert {row["agent"] for row in json.loads((first.path / "run.json").read_text())["removed"]} == {
        "c-1", "coordinator:c"}


def test_a_spec_that_shares_no_agent_with_the_folder_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    first = om.run(make_spec({"a": 2}), provider=answering([]), root=tmp_path)
    before = (first.path / "run.json").read_bytes()
    with pytest.raises(RunFolderError, match="shares no agent with the run in"):
        om.run(make_spec({"other": 2}), provider=answering([]), root=tmp_path, resume=first.run_id)
    assert (first.path / "run.json").read_bytes() == before


def test_the_cli_refuses_an_unrelated_spec_in_one_line_with_exit_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = om.run(make_spec({"a": 2}), provider="offline", root=tmp_path / "orchestration")
    other: dict[str, Any] = make_spec({"other": 1})
    (tmp_path / "other.yaml").write_text(json.dumps(other))
    assert main(["run", "other.yaml", "--provider", "offline", "--resume", first.run_id]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("orchestra: the spec shares no agent") and len(err.splitlines()) == 1


def test_show_calls_a_run_whose_process_is_gone_cut_off_not_running(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder, _ = crashed_with_journal(tmp_path, "garbage")  # on record as running; nothing holds it
    assert main(["show", str(folder)]) == 1
    out = " ".join(capsys.readouterr().out.split())
    assert f"Run {folder.name}: cancelled" in out and "cut off: the process running it stopped" in out


@pytest.mark.parametrize("left", ["", "Finding for a-"])  # what a power cut can leave of a renamed file
def test_an_output_left_empty_or_short_is_asked_again_not_kept(tmp_path: Path, left: str) -> None:
    calls: list[str] = []
    first = om.run(make_spec({"a": 3}), provider=answering(calls), root=tmp_path)
    (first.path / "workers" / "a-2.md").write_text(left)
    calls.clear()
    again = om.run(make_spec({"a": 3}), provider=answering(calls), root=tmp_path, resume=first.run_id)
    assert again.status == "done" and calls == ["a-2"]
    assert (first.path / "workers" / "a-2.md").read_text() == "Finding for a-2.\nDone. Found it.\n"
