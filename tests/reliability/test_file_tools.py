"""The built-in file tools under attack: a folder swapped for a link mid-call, a workspace filled up."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from orchestra_magic.providers.base import AgentRequest
from orchestra_magic.tools.context import tool_context
from orchestra_magic.tools.files import (
    MAX_WORKSPACE_BYTES,
    MAX_WORKSPACE_FILES,
    MAX_WRITE_CHARS,
    Refused,
    read_file,
    write_file,
)

CALLS = 2_000  # of each tool, against a thread that keeps swapping the folder they use for a link


@pytest.fixture
def run_folder(tmp_path: Path) -> Iterator[Path]:
    """A run folder, with the tool context of worker `w1` in it."""
    run = tmp_path / "run"
    run.mkdir()
    request = AgentRequest(agent="w1", role="worker", domain="d", task="", system="", prompt="", model="m",
                           max_tokens=1, run_folder=str(run))
    with tool_context(request):
        yield run


def keep_swapping(folder: Path, outside: Path, stop: threading.Event) -> None:
    """Put a link to `outside` where `folder` was, then the folder back, until told to stop. A write
    may make the folder again while it is away (tools create the folders a path needs): that one goes."""
    away, link = folder.with_name("away"), folder.with_name("link")
    link.symlink_to(outside, target_is_directory=True)
    while not stop.is_set():
        folder.rename(away)
        with suppress(OSError):
            link.rename(folder)
        if folder.is_symlink():
            folder.rename(link)
        while True:
            shutil.rmtree(folder, ignore_errors=True)
            try:
                away.rename(folder)
                break
            except OSError:
                continue


def test_a_folder_swapped_for_a_link_during_the_calls_never_lets_one_out(run_folder: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "note.md").write_text("outside")
    folder = run_folder / "workspace/workers/w1/sub"
    folder.mkdir(parents=True)
    (folder / "note.md").write_text("inside")
    read, stop = [], threading.Event()
    swapper = threading.Thread(target=keep_swapping, args=(folder, outside, stop))
    swapper.start()
    try:
        for n in range(CALLS):
            with suppress(Refused):
                write_file("sub/written.md", f"written {n}")
            with suppress(Refused):
                read.append(read_file("workspace/workers/w1/sub/note.md"))
    finally:
        stop.set()
        swapper.join()
    assert sorted(p.name for p in outside.iterdir()) == ["note.md"]  # no written.md, no temporary file
    assert (outside / "note.md").read_text() == "outside" and "outside" not in read
    assert read.count("inside") > 0  # the calls did run while the folder was in its place


def test_a_workspace_holds_at_most_its_quota_of_bytes(run_folder: Path) -> None:
    text = "x" * MAX_WRITE_CHARS
    fits = MAX_WORKSPACE_BYTES // MAX_WRITE_CHARS
    for n in range(fits):
        write_file(f"part-{n}.md", text)
    write_file("part-0.md", text)  # replacing a file does not count it twice
    with pytest.raises(Refused, match=f"the limit is {MAX_WORKSPACE_BYTES:,}"):
        write_file(f"part-{fits}.md", text)
    workspace = run_folder / "workspace/workers/w1"
    assert sum(p.stat().st_size for p in workspace.rglob("*")) == fits * MAX_WRITE_CHARS
    assert not list(workspace.glob(".*"))  # the refused write left no temporary file


def test_a_workspace_holds_at_most_its_quota_of_files_counted_on_disk(run_folder: Path) -> None:
    notes = run_folder / "workspace/workers/w1/notes"
    notes.mkdir(parents=True)
    for n in range(MAX_WORKSPACE_FILES - 1):  # as a Python tool (or an earlier run) might have left them
        (notes / f"{n}.md").write_text("x")
    write_file("notes/last.md", "x")
    write_file("notes/last.md", "replaced")
    with pytest.raises(Refused, match=f"the limit is {MAX_WORKSPACE_FILES:,}"):
        write_file("one-more.md", "x")
    assert len(os.listdir(notes)) == MAX_WORKSPACE_FILES and not (notes.parent / "one-more.md").exists()
