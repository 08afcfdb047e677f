"""The run folder: the file bus every agent writes to and every coordinator reads from.

    <root>/<run_id>/spec.yaml              the spec as run (after expansion)
    <root>/<run_id>/workers/<id>.md        each worker's full output
    <root>/<run_id>/synthesis/<domain>.md  each coordinator's full synthesis
    <root>/<run_id>/run.json               the manifest: a snapshot of the run state
    <root>/<run_id>/journal.jsonl          events since that snapshot (folded into run.json, then emptied)

Every file is written atomically (a hidden temporary file in the same folder, then a rename), so a
reader or a killed process never sees half a file. Per-agent changes are one appended journal line,
not a rewrite of run.json, which stays cheap at 10,000 agents.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from contextlib import suppress
from pathlib import Path

from filelock import FileLock, Timeout

from .errors import RunFolderError
from .events import Event, RunState, event_from_dict, event_to_dict

DEFAULT_ROOT = "orchestration"
MANIFEST = "run.json"
JOURNAL = "journal.jsonl"
SPEC = "spec.yaml"
LOCK = ".run.lock"


def write_atomic(path: Path, text: str | Iterable[str]) -> None:
    """Write `text` (or its pieces, in order) to `path` so that the file appears whole or not at all."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text) if isinstance(text, str) else f.writelines(text)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            tmp.unlink()
        raise


_COMPACT = json.JSONEncoder(separators=(",", ":"))


def manifest_chunks(state: RunState) -> Iterator[str]:
    """run.json's text, `state.to_dict()` as compact JSON, in pieces of one agent each, for writing as
    they come. Encoding the whole dict in one call holds every token of the text as its own string
    until the end (about 9x the text): at 1,000 agents each snapshot was the run's memory peak."""
    data = state.to_dict()
    agents = data.pop("agents")
    agents.reverse()  # popped from the end in the original order, each dict freed once written
    yield _COMPACT.encode(data)[:-1] + ',"agents":['
    while agents:
        yield _COMPACT.encode(agents.pop()) + ("," if agents else "")
    yield "]}"


def new_run_id(name: str) -> str:
    """Readable and sortable by start time; the random tail keeps simultaneous runs apart."""
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


class RunFolder:
    """One run's folder on disk. Create it with `RunFolder.create`, reopen it with `RunFolder.open`."""

    def __init__(self, path: Path) -> None:
        self.path = path.absolute()  # a notebook may change directory while the run goes on
        self._journal_fd: int | None = None
        self._lock = FileLock(self.path / LOCK, timeout=0)

    def lock(self) -> None:
        """Claim the folder for this process, so two runs never write it at once. The OS drops the
        claim if the process dies, so a killed run never leaves the folder locked."""
        try:
            self._lock.acquire()
        except Timeout:
            raise RunFolderError(
                f"run {self.run_id} is in use by another run (it holds {self.path / LOCK}); "
                "wait for it to finish or stop it, then resume"
            ) from None

    def unlock(self) -> None:
        self._lock.release()

    @property
    def run_id(self) -> str:
        return self.path.name

    @classmethod
    def create(cls, root: str | os.PathLike[str], name: str) -> RunFolder:
        root_path = Path(root)
        try:
            root_path.mkdir(parents=True, exist_ok=True)
            while True:
                path = root_path / new_run_id(name)
                try:
                    path.mkdir()  # exclusive: two runs started at once cannot share a folder
                    break
                except FileExistsError:
                    continue
            (path / "workers").mkdir()
            (path / "synthesis").mkdir()
        except OSError as exc:
            raise RunFolderError(f"cannot create a run folder under {root_path}: {exc.strerror or exc}") from None
        return cls(path)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunFolder:
        folder = cls(Path(path))
        if not (folder.path / MANIFEST).is_file():
            raise RunFolderError(f"{folder.path} is not a run folder (it has no {MANIFEST})")
        return folder

    def worker_path(self, worker_id: str) -> Path:
        return self.path / "workers" / f"{worker_id}.md"

    def synthesis_path(self, domain: str) -> Path:
        return self.path / "synthesis" / f"{domain}.md"

    def write(self, relative: str, text: str) -> None:
        write_atomic(self.path / relative, text)

    def read_state(self) -> RunState:
        """The state as of the last event written: the snapshot plus the journal replayed over it."""
        try:
            state = RunState.from_dict(json.loads((self.path / MANIFEST).read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RunFolderError(f"cannot read {self.path / MANIFEST}: {exc}") from None
        for event in self._journal_events():
            if getattr(event, "agent", None) in state.agents or not hasattr(event, "agent"):
                state.apply(event)
        return state

    def _journal_events(self) -> list[Event]:
        try:
            lines = (self.path / JOURNAL).read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []
        events = []
        for line in lines:
            try:
                events.append(event_from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                break  # a line torn by a crash ends the journal; nothing after it was acknowledged
        return events

    def record(self, event: Event) -> None:
        """Append one event to the journal: one small write, whole lines only (O_APPEND)."""
        if self._journal_fd is None:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            self._journal_fd = os.open(self.path / JOURNAL, flags, 0o644)
        os.write(self._journal_fd, (json.dumps(event_to_dict(event), separators=(",", ":")) + "\n").encode())

    def snapshot(self, state: RunState) -> None:
        """Fold the journal into run.json. Replaying old lines over a newer snapshot is harmless."""
        write_atomic(self.path / MANIFEST, manifest_chunks(state))
        if self._journal_fd is not None:
            os.ftruncate(self._journal_fd, 0)
        else:
            with suppress(FileNotFoundError):
                os.truncate(self.path / JOURNAL, 0)

    def close(self) -> None:
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None

    def read_text(self, relative: str) -> str:
        return (self.path / relative).read_text(encoding="utf-8")
