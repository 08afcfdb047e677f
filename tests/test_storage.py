"""Run folders under a URL root (fsspec): `memory://` stands in for s3:// and gs:// here.

The store is fsspec's real in-memory filesystem; a recorder wraps its `pipe_file` to check that every
file is one whole put and that an output is on record before it exists.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fsspec.implementations.memory import MemoryFileSystem
from helpers import cell, make_spec

import orchestra_magic as om
from orchestra_magic.engine.planning import initial_state
from orchestra_magic.engine.tree import plan_agents
from orchestra_magic.runfolder.folder import RunFolder, find_run
from orchestra_magic.spec.load import load_spec
from orchestra_magic.state.events import AgentFinished, AgentStarted, event_from_dict
from orchestra_magic.state.run import RunState

MEMORY = MemoryFileSystem()


@pytest.fixture
def root() -> Iterator[str]:
    """A fresh `memory://` root; the process-wide memory store is cleaned afterwards."""
    top = f"t-{uuid.uuid4().hex[:8]}"
    yield f"memory://{top}/runs"
    if MEMORY.exists(f"/{top}"):
        MEMORY.rm(f"/{top}", recursive=True)


def answer(request: om.AgentRequest) -> str:
    return f"Finding for {request.agent}.\nDone. Found it."


def run(root: str, spec: dict[str, Any] | None = None, provider: Any = None, **kwargs: Any) -> om.Run:
    return om.run(spec or make_spec({"a": 3, "b": 2}), provider=provider or om.PythonProvider(answer, answer),
                  root=root, **kwargs)


def stored(url: str) -> list[str]:
    """Every object under a memory:// URL, relative to it."""
    base = url.removeprefix("memory:/")
    return sorted(name.removeprefix(base + "/") for name in MEMORY.find(base))


def test_a_memory_root_round_trips_through_load_run(root: str) -> None:
    result = om.run("examples/quickstart.yaml", provider="offline", root=root)
    assert result.status == "done"
    assert isinstance(result.path, str) and result.path == f"{root}/{result.run_id}"
    loaded = om.load_run(f"{root}/{result.run_id}")
    assert loaded.summaries.equals(result.summaries)
    assert loaded.agents.drop(columns="seconds").equals(result.agents.drop(columns="seconds"))
    assert loaded.summaries.synthesis_path[0].startswith(f"{root}/{result.run_id}/synthesis/")
    assert loaded.synthesis("pricing").startswith("[simulated]")
    files = stored(result.path)
    assert {"run.json", "spec.yaml", "journal.jsonl", "synthesis/pricing.md"} <= set(files)
    assert len([f for f in files if f.startswith("workers/")]) == 21
    assert not [f for f in files if f.endswith(".tmp") or f == ".run.lock"]  # no temporaries, lock released


def test_list_runs_over_a_memory_root(root: str) -> None:
    first = run(root, make_spec({"a": 3, "b": 2}, name="first"))
    second = run(root, make_spec({"a": 3, "b": 2}, name="second"))
    runs = om.list_runs(root)
    assert set(runs.run_id) == {first.run_id, second.run_id}
    assert (runs.status == "done").all() and runs.agents.tolist() == [7, 7]
    assert om.list_runs(root + "/").run_id.tolist() == runs.run_id.tolist()
    assert om.list_runs("memory://nothing-here/runs").empty


def test_resume_on_a_memory_root_redoes_only_what_is_missing(root: str) -> None:
    calls: list[str] = []
    broken = {"a-2"}

    def flaky(request: om.AgentRequest) -> str:
        calls.append(request.agent)
        if request.agent in broken:
            raise ValueError("no luck")
        return answer(request)

    provider = om.PythonProvider(flaky, answer)
    first = run(root, provider=provider)
    assert first.status == "failed" and first.agents.set_index("agent").loc["a-2", "status"] == "failed"
    calls.clear()
    broken.clear()
    again = run(root, provider=provider, resume=first.run_id)
    assert again.status == "done" and again.path == first.path
    assert calls == ["a-2"]  # the other workers were skipped
    agents = again.agents.set_index("agent")
    assert agents.loc["a-1", "status"] == "skipped" and agents.loc["coordinator:a", "status"] == "done"
    assert agents.loc["coordinator:b", "status"] == "skipped"


def test_a_resume_lists_the_folder_once_instead_of_asking_about_each_output(
        root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    first = run(root, make_spec({"a": 6, "b": 6}))
    MEMORY.rm(f"{first.path.removeprefix('memory:/')}/workers/a-3.md")  # lost: the resume redoes it
    asked: list[str] = []  # the store's look-ups of its outputs and of the folders that hold them
    inside = threading.local()  # the filesystem's calls to itself (a put checks its parents) are not the store's
    lookups = ("isfile", "exists", "info", "find")

    def recorded(method: Any) -> Any:
        def call(fs: Any, path: str, *args: Any, **kwargs: Any) -> Any:
            if getattr(inside, "call", False):
                return method(fs, path, *args, **kwargs)
            if method.__name__ in lookups and path.endswith((".md", "/workers", "/synthesis")):
                asked.append(f"{method.__name__} {path.rsplit('/', 1)[-1]}")
            inside.call = True
            try:
                return method(fs, path, *args, **kwargs)
            finally:
                inside.call = False
        return call

    for name in (*lookups, "pipe_file", "cat_file"):
        monkeypatch.setattr(MemoryFileSystem, name, recorded(getattr(MemoryFileSystem, name)))
    again = run(root, make_spec({"a": 6, "b": 6}), resume=first.run_id)
    assert asked == ["find workers", "find synthesis"]
    agents = again.agents.set_index("agent")
    assert agents.loc["a-3", "status"] == "done"
    # a-3 wrote the same text again, so its coordinator's inputs are unchanged: everything else is skipped
    assert (agents.status == "skipped").sum() == 14 - 1
    assert "workers/a-3.md" in stored(again.path)


def test_retry_failed_reruns_a_url_run_in_place(root: str) -> None:
    broken = {"a-2"}

    def flaky(request: om.AgentRequest) -> str:
        if request.agent in broken:
            raise ValueError("no luck")
        return answer(request)

    first = run(root, make_spec({"a": 3}), provider=om.PythonProvider(flaky, answer))
    broken.clear()
    again = om.retry_failed(first, provider=om.PythonProvider(flaky, answer)).wait()
    assert again.status == "done" and again.path == first.path
    assert again.state.counts["skipped"] == 2 and again.output("a-2").startswith("Finding for a-2.")


@pytest.fixture
def puts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bytes]]:
    """Every `pipe_file` on the memory store, and a failure if anything is written another way."""
    recorded: list[tuple[str, bytes]] = []
    real_pipe, real_open = MemoryFileSystem.pipe_file, MemoryFileSystem._open
    inside: list[bool] = []

    def pipe_file(self: MemoryFileSystem, path: str, value: bytes, *args: Any, **kwargs: Any) -> None:
        recorded.append((path, bytes(value)))
        inside.append(True)
        try:
            real_pipe(self, path, value, *args, **kwargs)
        finally:
            inside.pop()

    def _open(self: MemoryFileSystem, path: str, mode: str = "rb", *args: Any, **kwargs: Any) -> Any:
        assert "r" in mode or inside, f"{path} opened for writing ({mode}) outside a single put"
        return real_open(self, path, mode, *args, **kwargs)

    monkeypatch.setattr(MemoryFileSystem, "pipe_file", pipe_file)
    monkeypatch.setattr(MemoryFileSystem, "_open", _open)
    return recorded


def test_every_file_is_one_whole_put_and_each_output_is_on_record_first(root: str, puts: list[Any]) -> None:
    result = run(root)
    base = result.path.removeprefix("memory:/")  # type: ignore[union-attr]
    on_record: dict[str, str] = {}
    journal, manifest = "", ""
    for path, data in puts:
        name = path.removeprefix(base + "/")
        if name == "journal.jsonl":
            journal = data.decode()
        elif name == "run.json":
            manifest = data.decode()
        elif name.startswith(("workers/", "synthesis/")):  # what a crash right now would leave on record
            agent = f"coordinator:{name[10:-3]}" if name.startswith("synthesis/") else name[8:-3]
            on_record[agent] = recorded(manifest, journal).agents[agent].status
    assert on_record == dict.fromkeys(result.state.agents, "done")
    outputs = [(p, d) for p, d in puts if "/workers/" in p or "/synthesis/" in p]
    assert len(outputs) == len({p for p, _ in outputs}) == 7  # one put per output, never rewritten
    for path, data in outputs:
        assert MEMORY.cat_file(path) == data and data.decode().endswith("\n")


def recorded(manifest: str, journal: str) -> RunState:
    state = RunState.from_dict(json.loads(manifest))
    for line in journal.splitlines():
        state.apply(event_from_dict(json.loads(line)))
    return state


def test_a_burst_of_finished_agents_is_one_journal_put_at_the_end_of_the_loop_turn(
        root: str, puts: list[Any]) -> None:
    spec = load_spec(make_spec({"a": 3}))

    async def main() -> None:
        folder = RunFolder.create(root, "j")
        folder.snapshot(initial_state(plan_agents(spec), spec, folder.run_id, "p", 0.0, None))
        puts.clear()
        folder.record(AgentStarted(agent="a-1", at=1.0, attempt=1))
        assert puts == []  # a start is not worth a put on its own
        for agent in ("a-1", "a-2", "a-3"):
            folder.record(AgentFinished(agent=agent, at=2.0, status="failed", error="boom"))
        assert puts == []
        await asyncio.sleep(0)  # one turn of the loop
        assert [p.rsplit("/", 1)[-1] for p, _ in puts] == ["journal.jsonl"]
        state = RunFolder.open(folder.path).read_state()  # what a resume after a crash would see
        assert [a.status for a in state.agents.values()] == ["failed", "failed", "failed", "pending"]
        folder.close()

    asyncio.run(main())


class GatedPuts:
    """Holds the put of one file until `release` is set; records when a put of another file arrives."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, held: str) -> None:
        self.held = held
        self.release, self.reached, self.other = threading.Event(), threading.Event(), threading.Event()
        real = MemoryFileSystem.pipe_file

        def pipe_file(fs: MemoryFileSystem, path: str, value: bytes, *args: Any, **kwargs: Any) -> None:
            if path.endswith(self.held):
                self.reached.set()
                assert self.release.wait(10), "the held put was never released"
            elif "/workers/" in path:
                self.other.set()
            real(fs, path, value, *args, **kwargs)

        monkeypatch.setattr(MemoryFileSystem, "pipe_file", pipe_file)


def test_a_slow_output_put_does_not_hold_up_the_other_agents(root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = GatedPuts(monkeypatch, "/workers/a-1.md")

    def worker(request: om.AgentRequest) -> str:
        if request.agent == "a-2":
            assert gate.reached.wait(10)  # a-1 is being put
        return answer(request)

    def release_once_another_output_lands() -> None:
        gate.release.set() if gate.other.wait(10) else None

    threading.Thread(target=release_once_another_output_lands, daemon=True).start()
    result = run(root, make_spec({"a": 2}, concurrency=2), provider=om.PythonProvider(worker, answer))
    assert result.status == "done"
    assert gate.other.is_set()  # a-2's output landed while a-1's put was still held: puts are off the loop


def test_a_stop_during_an_output_put_keeps_the_agent_done_with_its_file(
        root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = GatedPuts(monkeypatch, "/workers/a-1.md")
    started = om.start(make_spec({"a": 3}, concurrency=1), provider=om.PythonProvider(answer, answer), root=root)
    assert gate.reached.wait(10)
    started.stop()
    gate.release.set()
    result = started.wait()
    agents = result.agents.set_index("agent")
    assert result.status == "cancelled" and agents.loc["a-1", "status"] == "done"
    assert result.output("a-1").endswith("Done. Found it.\n")
    assert om.load_run(result.path).agents.set_index("agent").loc["a-1", "status"] == "done"


def test_a_coordinator_reads_what_this_run_put_from_memory_and_older_outputs_from_the_store(
        root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    gets: list[str] = []
    real = MemoryFileSystem.cat_file

    def cat_file(fs: MemoryFileSystem, path: str, *args: Any, **kwargs: Any) -> bytes:
        gets.append(path.rsplit("/", 2)[-2])
        return bytes(real(fs, path, *args, **kwargs))

    monkeypatch.setattr(MemoryFileSystem, "cat_file", cat_file)
    failing = [True]

    def coordinator(request: om.AgentRequest) -> str:
        assert [r.text for r in request.inputs] == [f"Finding for a-{i}.\nDone. Found it.\n" for i in (1, 2, 3)]
        if failing[0]:
            raise ValueError("not yet")
        return "<summary>all three</summary>"

    first = run(root, make_spec({"a": 3}), provider=om.PythonProvider(answer, coordinator))
    assert first.status == "failed" and gets.count("workers") == 0
    failing[0] = False
    again = run(root, make_spec({"a": 3}), provider=om.PythonProvider(answer, coordinator), resume=first.run_id)
    assert again.status == "done" and gets.count("workers") == 3  # skipped workers: read back from the store


def test_a_crashed_runs_journal_is_kept_by_the_resume(root: str) -> None:
    first = run(root, make_spec({"a": 2}))
    journal = f"{first.path}/journal.jsonl".removeprefix("memory:/")
    late = {"event": "AgentFinished", "agent": "a-1", "at": 1.0, "status": "failed", "error": "late"}
    MEMORY.pipe_file(journal, (json.dumps(late) + "\n" + '{"event": "AgentFini').encode())  # torn last line
    assert om.load_run(first.path).agents.set_index("agent").loc["a-1", "error"] == "late"
    folder = RunFolder.open(first.path)
    folder.record(AgentStarted(agent="a-2", at=3.0, attempt=2))  # no loop: appended to what was there
    folder.close()
    kept = MEMORY.cat_file(journal).decode().splitlines()
    assert kept == [json.dumps(late), '{"event":"AgentStarted","agent":"a-2","at":3.0,"attempt":2}']


def test_a_file_url_root_is_a_local_folder(tmp_path: Path) -> None:
    result = run(f"file://{tmp_path}/runs")
    assert isinstance(result.path, Path) and result.path.parent == tmp_path / "runs"
    assert (result.path / "run.json").is_file() and (result.path / "workers" / "a-1.md").is_file()
    assert om.load_run(f"file://{result.path}").summaries.equals(result.summaries)
    assert om.list_runs(f"file://{tmp_path}/runs").run_id.tolist() == [result.run_id]
    assert run(f"file://{tmp_path}/runs", resume=result.run_id).state.counts["skipped"] == 7
    resumed = run("memory://elsewhere/runs", resume=f"file://{result.path}")  # a run folder as a file:// URL
    assert resumed.path == result.path and resumed.state.counts["skipped"] == 7


@pytest.mark.parametrize("url", ["memory://", "s3://", "memory:///"])
def test_a_url_root_with_no_path_is_a_clear_error(url: str) -> None:
    with pytest.raises(om.ConfigError, match=f"{url!r} names no place for run folders: add a path"):
        run(url)
    with pytest.raises(om.ConfigError, match="names no place for run folders"):
        om.load_run(url)


@pytest.mark.skipif(bool(__import__("importlib.util").util.find_spec("s3fs")), reason="s3fs is installed")
def test_an_s3_root_without_s3fs_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(om.ConfigError, match=r"run folders at s3://bucket/runs need the s3fs package, "
                                             r"which is not installed: pip install s3fs"):
        run("s3://bucket/runs")
    with pytest.raises(om.ConfigError, match="s3fs"):
        om.load_run("s3://bucket/runs/x")
    with pytest.raises(om.ConfigError, match=r"simplecache::s3://bucket/runs need the s3fs package"):
        om.list_runs("simplecache::s3://bucket/runs")  # the package the inner protocol needs, not the cache's


def test_a_filesystem_that_fails_when_made_is_a_clear_error() -> None:
    with socket.socket() as probe:  # a port nothing listens on: fsspec's ftp connects when the filesystem is made
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(om.ConfigError, match=rf"cannot use ftp://127.0.0.1:{port}/runs for run folders: "
                                             r"ConnectionRefusedError"):
        om.list_runs(f"ftp://127.0.0.1:{port}/runs")


def test_an_unknown_protocol_is_a_clear_error() -> None:
    with pytest.raises(om.ConfigError, match=r"cannot use nope://x/runs for run folders: Protocol not known: nope"):
        run("nope://x/runs")


@pytest.mark.parametrize(("url", "install"), [
    ("memory://x/runs", r"need fsspec \(not installed\): pip install fsspec"),
    ("gs://bucket/runs", r"need fsspec and gcsfs \(not installed\): pip install gcsfs"),
])
def test_a_url_root_without_fsspec_says_what_to_install(monkeypatch: pytest.MonkeyPatch, url: str,
                                                        install: str) -> None:
    monkeypatch.setitem(sys.modules, "fsspec.core", None)  # as if fsspec were not installed
    with pytest.raises(om.ConfigError, match=install):
        om.list_runs(url)


def test_a_run_folder_in_use_at_a_url_cannot_be_resumed(root: str) -> None:
    first = run(root, make_spec({"a": 1}))
    holder = RunFolder.open(first.path)
    holder.lock()
    try:
        with pytest.raises(om.RunFolderError, match=rf"is in use by another run: process {os.getpid()} on "):
            run(root, make_spec({"a": 1}), resume=first.run_id)
    finally:
        holder.unlock()
    assert run(root, make_spec({"a": 1}), resume=first.run_id).status == "done"


def test_a_lock_left_by_a_dead_process_is_taken_over_and_one_from_elsewhere_is_not(root: str) -> None:
    first = run(root, make_spec({"a": 1}))
    lock = f"{first.path}/.run.lock".removeprefix("memory:/")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    MEMORY.pipe_file(lock, json.dumps({"host": socket.gethostname(), "pid": dead.pid, "at": 0}).encode())
    assert run(root, make_spec({"a": 1}), resume=first.run_id).status == "done"
    assert not MEMORY.exists(lock)
    MEMORY.pipe_file(lock, json.dumps({"host": "another-machine", "pid": 1, "at": 0}).encode())
    with pytest.raises(om.RunFolderError, match=r"process 1 on another-machine.*delete memory://.*/\.run\.lock"):
        run(root, make_spec({"a": 1}), resume=first.run_id)


def test_find_run_takes_a_run_id_under_a_url_root_or_a_url(root: str) -> None:
    first = run(root, make_spec({"a": 1}))
    assert find_run(root, first.run_id).path == first.path
    assert find_run("orchestration", first.path).path == first.path
    with pytest.raises(om.RunFolderError, match=rf"{root}/nope is not a run folder \(it has no run.json\)"):
        find_run(root, "nope")


def test_the_cli_shows_a_run_at_a_url(root: str, capsys: pytest.CaptureFixture[str]) -> None:
    from orchestra_magic.cli import main

    first = run(root, make_spec({"a": 1}))
    assert main(["show", str(first.path)]) == 0
    assert first.run_id in capsys.readouterr().out


def test_a_local_run_never_imports_fsspec(tmp_path: Path) -> None:
    code = ("import sys, orchestra_magic as om; "
            f"om.run({{'domains': [{{'name': 'a', 'coordinator': 'c', 'workers': [{{'task': 't'}}]}}]}}, "
            f"provider=om.PythonProvider(str), root={str(tmp_path)!r}); print('fsspec' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ---- the notebook ----------------------------------------------------------------------------------


@pytest.fixture
def shell(shell: Any) -> Any:
    shell.user_ns["mine"] = om.PythonProvider(answer, answer)
    return shell


SPEC = "name: nb\ndomains:\n  - name: a\n    coordinator: Sum up.\n    workers:\n      - task: One\n      - task: Two\n"


def test_the_magics_run_list_and_load_at_a_url_root(shell: Any, root: str, tmp_path: Path) -> None:
    cell(shell, f"%%orchestrate --provider mine --root {root} -o first\n{SPEC}")
    first = shell.user_ns["first"]
    assert first.path.startswith(root) and not (tmp_path / "orchestration").exists()
    assert cell(shell, f"%orchestrate_runs {root}").run_id.tolist() == [first.run_id]
    assert cell(shell, f"%orchestrate_load {first.path}").summaries.equals(first.summaries)
    cell(shell, f"%config OrchestraMagics.root = {root!r}")
    assert cell(shell, f"%orchestrate_load {first.run_id}").summaries.equals(first.summaries)
    assert cell(shell, "%orchestrate_runs").run_id.tolist() == [first.run_id]


def test_a_bad_url_root_in_the_magic_is_one_usage_error(shell: Any) -> None:
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="Protocol not known"):
        cell(shell, "%orchestrate_runs nope://x")
    with pytest.raises(UsageError, match="Protocol not known"):
        cell(shell, f"%%orchestrate --provider mine --root nope://x\n{SPEC}")


def test_the_built_in_file_tools_are_refused_at_a_url_root_before_anything_runs() -> None:
    from orchestra_magic.errors import ConfigError

    spec = {"tools": ["write_file"], "domains": [{"name": "a", "coordinator": "c", "workers": [{"task": "t"}]}]}
    with pytest.raises(ConfigError, match="built-in file tools \\(write_file\\) work in a local run folder"):
        om.run(spec, provider="offline", root="memory://refused-file-tools")
