"""Disk trouble: a read-only root is a clear error before anything runs; a disk that fills up mid-run
fails the agents it hits with a clear error and no torn file, and a later resume with space finishes."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest
from helpers import make_spec

import orchestra_magic as om
from orchestra_magic.runfolder import atomic as runfolder


def test_a_read_only_root_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def read_only(self: Path, *args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(om.RunFolderError, match=r"cannot create a run folder under .*: Read-only file system"):
        om.run(make_spec({"a": 2}), provider=om.PythonProvider(str), root=tmp_path / "runs")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_mid_run_leaves_nothing_torn_and_resumes_later(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    written = 0

    class FullDisk:
        """Worker files are created, then their bytes fail to land once a budget of them is used up (as a
        full disk does: the write fails, not the open), so a half-made temporary file is left to clean up."""

        def __init__(self, files: int) -> None:
            self.files, self.worker_fds = files, set[int]()
            self.real_temporary, self.real_write_all = runfolder._temporary, runfolder._write_all

        def temporary(self, folder: str, name: str) -> tuple[int, str]:
            fd, tmp = self.real_temporary(folder, name)
            if folder.endswith("/workers"):
                self.worker_fds.add(fd)
            return fd, tmp

        def write_all(self, fd: int, data: bytes) -> None:
            nonlocal written
            if fd in self.worker_fds:
                self.worker_fds.discard(fd)
                written += 1
                if written > self.files:
                    raise OSError(errno.ENOSPC, "No space left on device")
            self.real_write_all(fd, data)

    disk = FullDisk(files=5)
    monkeypatch.setattr(runfolder, "_temporary", disk.temporary)
    monkeypatch.setattr(runfolder, "_write_all", disk.write_all)
    calls: list[str] = []

    def worker(request: om.AgentRequest) -> str:
        calls.append(request.agent)
        return f"Finding for {request.agent}.\nDone."

    provider = om.PythonProvider(worker)
    first = om.run(make_spec({"a": 6, "b": 6}), provider=provider, root=tmp_path)
    agents = first.agents
    failed = agents[(agents.status == "failed") & (agents.role == "worker")]
    assert len(failed) == 7 and first.status == "failed"
    assert failed.error.str.startswith("file error: No space left on device").all()
    assert not list(first.path.rglob("*.tmp"))
    done_before = {p.stem for p in first.path.glob("workers/*.md")}
    assert len(done_before) == 5
    for path in first.path.glob("workers/*.md"):
        assert path.read_text().endswith("Done.\n")

    monkeypatch.undo()  # space again
    calls.clear()
    again = om.run(make_spec({"a": 6, "b": 6}), provider=provider, root=tmp_path, resume=first.run_id)
    assert again.status == "done"
    assert not done_before & set(calls)  # what was written before was not redone
    assert len(list(again.path.glob("workers/*.md"))) == 12
