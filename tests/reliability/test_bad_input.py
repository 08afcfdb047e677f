"""Every bad input to the `orchestra` command gets one line on stderr, naming the problem, and exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import orchestra

SPEC = "domains:\n  - name: a\n    coordinator: c\n    workers:\n      - task: t\n"
LONG = "x" * 5_000


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "spec.yaml").write_text(SPEC)
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00")
    return tmp_path


@pytest.mark.parametrize(("args", "message"), [
    (["run", "missing"], "no such file: missing"),
    (["run", "missing.yaml"], "no such file: missing.yaml"),
    (["run", LONG], "no such file: xxx"),
    (["run", "."], ". is a folder, not a spec file"),
    (["run", "binary.yaml"], "binary.yaml is not UTF-8 text"),
    (["run", "spec.yaml", "--provider", "offline", "--resume", LONG], "characters) is not a run folder"),
    (["show", LONG], "characters) is not a run folder"),
    (["run", "spec.yaml", "--executor", "nope"], "orchestra run: argument --executor: invalid choice: 'nope'"),
    (["run"], "orchestra: run needs a SPEC file, or --resume RUN_ID to continue a run as it was run"),
], ids=["no-file", "no-yaml-file", "a-5000-character-name", "a-folder", "not-text", "a-5000-character-run-id",
        "show-a-5000-character-id", "an-unknown-choice", "no-spec"])
def test_bad_input_is_one_line_naming_the_problem_and_exit_2(folder: Path, args: list[str], message: str) -> None:
    result = orchestra(*args, cwd=folder)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr, result.stderr
    assert message in result.stderr and len(result.stderr) < 400, result.stderr


def test_a_spec_file_without_a_yaml_suffix_is_read_as_a_file(folder: Path) -> None:
    (folder / "myspec").write_text(SPEC.replace("task:", "taks:"))  # read as a file, its error has a line
    result = orchestra("run", "myspec", cwd=folder)
    assert result.returncode == 2
    assert "spec error at domains[0].workers[0].taks (line 5): unknown key 'taks'" in result.stderr, result.stderr
