"""The run folder: the file bus every agent writes to and every coordinator reads from.

    <root>/<run_id>/spec.yaml              the spec as run (after expansion)
    <root>/<run_id>/workers/<id>.md        each worker's full output
    <root>/<run_id>/synthesis/<domain>.md  each coordinator's full synthesis
    <root>/<run_id>/run.json               the manifest: a snapshot of the run state
    <root>/<run_id>/journal.jsonl          events since that snapshot (folded into run.json, then emptied)

Every file is written atomically (`atomic.write_atomic`: a hidden temporary file in the same folder,
then a rename), so a reader or a killed process never sees half a file. Per-agent changes are one appended journal line,
not a rewrite of run.json, which stays cheap at 10,000 agents.

`RunFolder` owns that layout and the journal's format; a store owns the bytes. `LocalStore` (here) is a
local or mounted folder; a URL root (``s3://``, ``gs://``, ``memory://``; see `storage`) gets a
`RemoteStore` with the same guarantees made of whole-object puts. ``file://`` URLs are local folders.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor
from contextlib import suppress
from pathlib import Path
from typing import Protocol

from filelock import FileLock, Timeout

from ..errors import RunFolderError, shown
from ..state.events import AgentFinished, Event, RunFinished, event_from_dict, event_to_dict
from ..state.run import RunState, agent_row
from .atomic import TEMPORARY, write_atomic
from .layout import JOURNAL, LOCAL_PROTOCOLS, LOCK, MANIFEST, SPEC, URL_PREFIX

_COMPACT = json.JSONEncoder(separators=(",", ":"))


def manifest_chunks(state: RunState) -> Iterator[str]:
    """run.json's text, `state.to_dict()` as compact JSON, in pieces of one agent each, for writing as
    they come. Encoding the whole dict in one call holds every token of the text as its own string
    until the end (about 9x the text), and even a list of every row's dict is about as big as the text:
    at 1,000 agents either was the run's memory peak. Each row is made, encoded and dropped in turn."""
    yield _COMPACT.encode(state.header())[:-1] + ',"agents":['
    for n, agent in enumerate(state.agents.values()):
        yield ("," if n else "") + _COMPACT.encode(agent_row(agent))
    yield "]}"


def new_run_id(name: str) -> str:
    """Readable and sortable by start time; the random tail keeps simultaneous runs apart."""
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"


def is_url(location: str | os.PathLike[str]) -> bool:
    """A root or run folder given as a URL that is not local (``file://`` URLs are local folders)."""
    if not isinstance(location, str):
        return False
    match = URL_PREFIX.match(location)
    return match is not None and match.group(1).lower() not in LOCAL_PROTOCOLS


def local_path(location: str | os.PathLike[str]) -> Path:
    """A plain path, or the path inside a ``file://`` URL."""
    text = os.fspath(location)
    match = URL_PREFIX.match(text)
    return Path(text[match.end():]) if match and match.group(2) == "://" else Path(text)


def join(location: Path | str, name: str) -> Path | str:
    """`name` inside a folder given as a local `Path` or as a URL."""
    return location / name if isinstance(location, Path) else f"{location.rstrip('/')}/{name}"


class Store(Protocol):
    """Where one run folder's bytes live. Relative names are as in the layout above."""

    @property
    def location(self) -> Path | str: ...
    @property
    def writer(self) -> Executor | None: ...  # threads for writes that wait on the network; None: write inline
    def write(self, relative: str, text: str) -> None: ...
    def read_text(self, relative: str) -> str: ...
    def exists(self, relative: str) -> bool: ...
    def append_journal(self, line: str, durable: bool) -> None: ...
    def read_journal(self) -> str: ...
    def save_snapshot(self, manifest: Iterable[str]) -> None: ...
    def lock(self, run_id: str) -> None: ...
    def unlock(self) -> None: ...
    def held(self) -> bool: ...  # whether some live process holds the lock (this one's own claim aside)
    def close(self) -> None: ...


class LocalStore:
    """A run folder on a local or mounted filesystem: atomic renames, an O_APPEND journal, an OS lock."""

    writer = None

    def __init__(self, path: Path) -> None:
        self.location = path.absolute()  # a notebook may change directory while the run goes on
        self._journal_fd: int | None = None
        self._lock = FileLock(self.location / LOCK, timeout=0)

    def write(self, relative: str, text: str) -> None:
        """spec.yaml is durable (fsynced), as run.json is: a resume after a power cut needs both. An output
        is not: its digest on record proves it, so one a power cut lost or cut short is asked again."""
        path = self.location / relative
        try:
            write_atomic(path, text, durable=relative == SPEC)
        except FileNotFoundError:  # a sub-coordinator's first file in `synthesis/<domain>/`
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, text, durable=relative == SPEC)

    def read_text(self, relative: str) -> str:
        return (self.location / relative).read_text(encoding="utf-8")

    def exists(self, relative: str) -> bool:
        return os.path.isfile(self.location / relative)  # False for a name too long, not an OSError

    def append_journal(self, line: str, durable: bool) -> None:
        """One small write, whole lines only (O_APPEND): on record as soon as it returns."""
        if self._journal_fd is None:
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT
            self._journal_fd = os.open(self.location / JOURNAL, flags, 0o644)
        os.write(self._journal_fd, line.encode())

    def read_journal(self) -> str:
        try:
            return (self.location / JOURNAL).read_text(encoding="utf-8")
        except FileNotFoundError:
            return ""

    def save_snapshot(self, manifest: Iterable[str]) -> None:
        """run.json is on the disk (fsync) before the journal it replaces is emptied: after a power cut the
        folder has one or the other, never neither. Snapshots are seconds apart, so this costs little."""
        write_atomic(self.location / MANIFEST, manifest, durable=True)
        if self._journal_fd is not None:
            os.ftruncate(self._journal_fd, 0)
        else:
            with suppress(FileNotFoundError):
                os.truncate(self.location / JOURNAL, 0)

    def lock(self, run_id: str) -> None:
        try:
            self._lock.acquire()
        except Timeout:
            raise RunFolderError(
                f"run {run_id} is in use by another run (it holds {self.location / LOCK}); "
                "wait for it to finish or stop it, then resume"
            ) from None

        self._sweep()

    def _sweep(self) -> None:
        """Remove the temporary files of writes a killed run never finished (it died between write and
        rename). With the lock held, no live writer owns them."""
        synthesis = self.location / "synthesis"
        folders = (self.location, self.location / "workers", synthesis, *synthesis.glob("*/"))
        for folder in folders:
            for path in folder.glob(".*.tmp"):
                if TEMPORARY.fullmatch(path.name):
                    with suppress(OSError):
                        path.unlink()

    def unlock(self) -> None:
        self._lock.release()

    def held(self) -> bool:
        if self._lock.is_locked:
            return True
        probe = FileLock(self.location / LOCK, timeout=0)
        try:
            probe.acquire()
        except (Timeout, OSError):  # held, or it cannot be told (a read-only folder): not known to be free
            return True
        probe.release()
        return False

    def close(self) -> None:
        if self._journal_fd is not None:
            os.close(self._journal_fd)
            self._journal_fd = None


def open_store(location: str | os.PathLike[str]) -> Store:
    if is_url(location):
        from .remote import RemoteStore

        return RemoteStore(str(location))
    return LocalStore(local_path(location))


class RunFolder:
    """One run's folder, local or at a URL. Create it with `RunFolder.create`, reopen it with
    `RunFolder.open`. `path` is a `Path` for a local folder and the URL (a `str`) otherwise."""

    def __init__(self, path: str | os.PathLike[str], *, store: Store | None = None) -> None:
        self.store = store or open_store(path)
        self.path: Path | str = self.store.location

    def lock(self) -> None:
        """Claim the folder for this process, so two runs never write it at once. Locally the OS drops
        the claim if the process dies, so a killed run never leaves the folder locked."""
        self.store.lock(self.run_id)

    def unlock(self) -> None:
        self.store.unlock()

    def read_outcome(self) -> RunState:
        """`read_state` for looking at a run: one on record as running that no process holds any more was
        cut off (killed, or its machine went down), and is shown as what its records say it is."""
        state = self.read_state()
        if state.status == "running" and not self.store.held():
            state.cut_off()
        return state

    @property
    def run_id(self) -> str:
        return self.path.name if isinstance(self.path, Path) else self.path.rsplit("/", 1)[-1]

    @property
    def root(self) -> Path | str:
        """The folder (or URL) this run folder sits in."""
        return self.path.parent if isinstance(self.path, Path) else self.path.rsplit("/", 1)[0]

    @classmethod
    def create(cls, root: str | os.PathLike[str], name: str) -> RunFolder:
        if is_url(root):
            return cls._create_remote(str(root), name)
        root_path = local_path(root)
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
    def _create_remote(cls, root: str, name: str) -> RunFolder:
        from .remote import RemoteStore

        while True:
            try:
                store = RemoteStore.create(root, new_run_id(name))
            except FileExistsError:
                continue
            return cls(store.location, store=store)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> RunFolder:
        folder = cls(path)
        if not folder.exists(MANIFEST):
            raise RunFolderError(f"{shown(str(folder.path))} is not a run folder (it has no {MANIFEST})")
        return folder

    def where(self, relative: str) -> str:
        """A file of the run folder as a path or URL to show (or to open with fsspec)."""
        return str(join(self.path, relative))

    def worker_path(self, worker_id: str) -> Path | str:
        return join(self.path, f"workers/{worker_id}.md")

    def synthesis_path(self, domain: str) -> Path | str:
        return join(self.path, f"synthesis/{domain}.md")

    def write(self, relative: str, text: str) -> None:
        self.store.write(relative, text)

    async def write_output(self, relative: str, text: str) -> None:
        """Write an agent's output. A store whose writes wait on the network (a URL root) writes from a
        worker thread, so the run's other agents go on; a local write (microseconds) stays on the loop.
        A stop that arrives meanwhile lets the write finish and is not passed on: the agent is already on
        record as done, and its output must land rather than leave it done with no file."""
        writer = self.store.writer
        if writer is None:
            self.store.write(relative, text)
            return
        put = asyncio.get_running_loop().run_in_executor(writer, self.store.write, relative, text)
        try:
            await asyncio.shield(put)
        except asyncio.CancelledError:
            await put

    async def read_output(self, relative: str) -> str:
        """Read an agent's output; from a worker thread where reads wait on the network (see `write_output`)."""
        reader = self.store.writer
        if reader is None:
            return self.store.read_text(relative)
        return await asyncio.get_running_loop().run_in_executor(reader, self.store.read_text, relative)

    def exists(self, relative: str) -> bool:
        return self.store.exists(relative)

    def read_state(self) -> RunState:
        """The state as of the last event written: the snapshot plus the journal replayed over it. Journal
        lines that cannot be read (torn by a crash, damaged) are skipped, each alone: the lines after one
        still count, and an agent whose `done` was lost is simply not proven done, so a resume asks it
        again. `state.damage` says in one line what was skipped."""
        try:
            state = RunState.from_dict(json.loads(self.store.read_text(MANIFEST)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RunFolderError(f"cannot read {join(self.path, MANIFEST)}: {exc}") from None
        events, skipped = self._journal_events()
        for event in events:
            if getattr(event, "agent", None) in state.agents or not hasattr(event, "agent"):
                state.apply(event)
        if skipped:
            where = ", ".join(str(n) for n in skipped[:5]) + (", …" if len(skipped) > 5 else "")
            state.damage = (f"{join(self.path, JOURNAL)}: skipped {len(skipped)} damaged "
                            f"line{'s' if len(skipped) > 1 else ''} ({where}); agents not proven done run again")
        return state

    def _journal_events(self) -> tuple[list[Event], list[int]]:
        """The journal's events, and the numbers of the lines that are not events (a torn last line is
        not damage: a crash mid-append leaves one, and it was never acknowledged)."""
        events: list[Event] = []
        skipped: list[int] = []
        text = self.store.read_journal()
        lines = text.split("\n")
        for number, line in enumerate(lines, 1):
            if not line:
                continue
            try:
                events.append(event_from_dict(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                if number < len(lines):  # the last piece has no newline: a write a crash cut short
                    skipped.append(number)
        return events, skipped

    def record(self, event: Event) -> None:
        """Append one event to the journal. A store that batches its journal (a URL root) puts it before
        the next file anyway, which covers an agent that finished `done` (its output follows at once);
        a finish with no file to follow (failed, skipped, cancelled, the run's end) is `durable`: put
        without waiting for one."""
        line = json.dumps(event_to_dict(event), separators=(",", ":")) + "\n"
        durable = isinstance(event, RunFinished) or (isinstance(event, AgentFinished) and event.status != "done")
        self.store.append_journal(line, durable)

    def snapshot(self, state: RunState) -> None:
        """Fold the journal into run.json. Replaying old lines over a newer snapshot is harmless."""
        self.store.save_snapshot(manifest_chunks(state))

    def close(self) -> None:
        self.store.close()

    def read_text(self, relative: str) -> str:
        return self.store.read_text(relative)


def find_run(root: str | os.PathLike[str], run: str | os.PathLike[str]) -> RunFolder:
    """`run` is a run id under `root`, or the path or URL of a run folder."""
    if is_url(run):
        return RunFolder.open(run)
    name = os.fspath(run)
    if URL_PREFIX.match(name):  # a file:// URL: a local run folder
        return RunFolder.open(local_path(name))
    if is_url(root):
        candidate = RunFolder(join(str(root), name))
        if candidate.exists(MANIFEST) or not Path(name).exists():
            return RunFolder.open(candidate.path)
    elif os.path.isdir(local_path(root) / name) or not os.path.exists(name):  # a missing one is named under root
        return RunFolder.open(local_path(root) / name)
    return RunFolder.open(Path(name))


def run_folders(root: str | os.PathLike[str]) -> list[Path] | list[str]:
    """The run folders directly under `root` (those with a run.json), as paths or URLs."""
    if is_url(root):
        from .remote import run_folders as remote_run_folders

        return remote_run_folders(str(root))
    return [manifest.parent for manifest in local_path(root).glob(f"*/{MANIFEST}")]
