"""The Python examples in the README and in `docs/` run as written.

One test per page that has ```python blocks. A page's blocks run in order and in one namespace (as the
cells of a notebook would), in a fresh folder holding `examples/` and the README, with top-level `await`
allowed. `provider="anthropic"` reaches the project's fake Messages API over HTTP through
`ANTHROPIC_BASE_URL`, with a made-up key. Only blocks that name a remote machine (a bucket, a Dask
scheduler) are left out: nothing of theirs is here.

The pages run in this process, each in a namespace of its own, so the imports are paid once rather
than once a page; every other line of the page is blanked, so a traceback's line numbers are the page's.
"""

from __future__ import annotations

import ast
import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import fake_api

REPO = Path(__file__).resolve().parent.parent
REMOTE = ("s3://", "gs://", "tcp://")


def blocks(page: Path) -> list[tuple[int, list[str]]]:
    """Each ```python block of the page: the index of its first line, and its lines."""
    found: list[tuple[int, list[str]]] = []
    current: list[str] | None = None
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines()):
        if current is None and line.strip() == "```python":
            current = []
            found.append((number + 1, current))
        elif current is not None and line.startswith("```"):
            current = None
        elif current is not None:
            current.append(line)
    return found


def runnable(lines: list[str]) -> bool:
    return not any(remote in line for line in lines for remote in REMOTE)


def program(page: Path) -> str:
    """The page with every line blanked but those of its runnable Python blocks."""
    out = [""] * len(page.read_text(encoding="utf-8").splitlines())
    for start, lines in blocks(page):
        if runnable(lines):
            out[start:start + len(lines)] = lines
    return "\n".join(out) + "\n"


def pages() -> list[Path]:
    candidates = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    return [page for page in candidates if any(runnable(lines) for _, lines in blocks(page))]


def run_as_written(source: str, filename: str) -> None:
    code = compile(source, filename, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, {"__name__": "__main__"})
    if asyncio.iscoroutine(result):
        asyncio.run(result)


@pytest.fixture(scope="module")
def fake_base_url() -> Iterator[str]:
    """One fake Messages API, in its own process, for every page."""
    with fake_api() as env:
        yield env["ANTHROPIC_BASE_URL"]


def test_the_readme_and_most_docs_pages_have_examples_that_run() -> None:
    names = [page.relative_to(REPO).as_posix() for page in pages()]
    assert "README.md" in names and len(names) >= 8, names


def test_only_examples_that_name_a_remote_machine_are_left_out() -> None:
    left_out = [(page.name, lines[0]) for page in pages() for _, lines in blocks(page) if not runnable(lines)]
    assert len(left_out) <= 3, left_out


@pytest.mark.parametrize("page", pages(), ids=lambda page: page.relative_to(REPO).as_posix())
def test_a_pages_python_examples_run_as_written(page: Path, fake_base_url: str, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", fake_base_url)
    run_as_written(program(page), str(page))
    root = tmp_path / "orchestration"
    runs = [folder for folder in root.iterdir() if folder.is_dir()] if root.exists() else []
    assert all((run / "run.json").is_file() for run in runs), runs
