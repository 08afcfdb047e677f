"""The dask executor on a real cluster of processes (`LocalCluster`, 2 worker processes): the quickstart
gives what a local run gives, a worker killed mid-run costs nothing but time, and Stop cancels the
cluster's tasks. One cluster serves the whole module; it starts in a second or two."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import Log, make_spec

import orchestra_magic as om
from orchestra_magic.providers import AgentRequest, PythonProvider
from orchestra_magic.state.events import AgentFinished, Event
from orchestra_magic.state.run import RunState

distributed = pytest.importorskip("distributed")

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = REPO / "examples" / "quickstart.yaml"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Two worker processes with four threads each, as `LocalCluster` makes them (spawned, so every task
    and provider really is pickled and rebuilt in another process)."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=4, processes=True, dashboard_address=":0") as lc, \
            distributed.Client(lc, set_as_default=False) as client:
        yield client


def scheduler_tasks(client: Any, run_id: str) -> dict[str, str]:
    """The scheduler's tasks of one run, key → state (processing, memory, …); forgotten ones are absent."""
    def tasks(dask_scheduler: Any) -> dict[str, str]:
        return {str(key): task.state for key, task in dask_scheduler.tasks.items()}

    return {k: v for k, v in client.run_on_scheduler(tasks).items() if run_id in k}


def scheduler_keys(client: Any, run_id: str) -> set[str]:
    """Every task key of the run the scheduler has seen (its transition log)."""
    def keys(dask_scheduler: Any) -> list[str]:
        return [str(entry[0]) for entry in dask_scheduler.transition_log]

    return {k for k in client.run_on_scheduler(keys) if run_id in k}


def files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text() for p in sorted(folder.rglob("*.md"))}


def test_the_quickstart_on_a_cluster_gives_the_same_folder_and_summaries_as_locally(tmp_path: Path,
                                                                                    cluster: Any) -> None:
    local = om.run(QUICKSTART, provider="offline", root=tmp_path / "local")
    remote = om.run(QUICKSTART, provider="offline", root=tmp_path / "cluster", client=cluster)

    assert remote.status == local.status == "done"
    where = remote.state.executor
    assert where.startswith("dask (tcp://127.0.0.1:") and where.endswith(", 2 workers, 8 threads)")
    assert remote.state.dashboard.startswith("http://") and remote.state.dashboard.endswith("/status")
    assert len(scheduler_keys(cluster, remote.run_id)) == 25  # every agent ran as a task on the cluster
    assert len(files(local.path)) == 25 and files(remote.path) == files(local.path)
    same = ["domain", "summary", "status", "workers", "failed", "missing", "summary_cut", "output_tokens"]
    assert remote.summaries[same].equals(local.summaries[same])
    # Which agent writes the prompt cache first is a race, so compare what each agent was billed for in all.
    billed = ["input_tokens", "cache_write_tokens", "cache_read_tokens"]
    assert (remote.agents[billed].sum(axis=1) == local.agents[billed].sum(axis=1)).all()


def test_a_worker_killed_mid_run_still_ends_with_every_agent_done_once(tmp_path: Path, cluster: Any) -> None:
    log = Log(tmp_path / "log")

    def worker(request: AgentRequest) -> str:
        import os
        import time

        log.add(f"{request.agent} {os.getpid()}")
        time.sleep(0.5)
        return f"Done. {request.agent}"

    finished: Counter[str] = Counter()

    def count(event: Event, state: RunState) -> None:
        if isinstance(event, AgentFinished):
            finished[f"{event.agent} {event.status}"] += 1

    cluster.wait_for_workers(2, timeout=60)
    run = om.start(make_spec({"a": 8, "b": 8}, concurrency=8), provider=PythonProvider(worker),
                   root=tmp_path / "runs", client=cluster, listeners=(count,))
    victim = int(log.wait_until(lambda lines: bool(lines), "a worker started")[0].split()[1])
    os.kill(victim, signal.SIGKILL)  # mid-call: that agent's task is still sleeping
    run.wait()

    assert run.status == "done"
    assert finished == Counter({f"{agent} done": 1 for agent in run.state.agents})  # each recorded once
    assert set(run.agents.attempts) == {1}  # Dask re-ran the lost tasks; the engine saw no failure
    calls = Counter(line.split()[0] for line in log.lines())
    assert any(n > 1 and f"{agent} {victim}" in log.lines() for agent, n in calls.items())  # a call ran twice
    assert sorted(p.name for p in (run.path / "workers").iterdir()) == sorted(f"{a}.md" for a in calls)
    cluster.wait_for_workers(2, timeout=60)  # the nanny restarts the killed process


def test_stop_cancels_the_cluster_tasks(tmp_path: Path, cluster: Any) -> None:
    log = Log(tmp_path / "log")

    async def worker(request: AgentRequest) -> str:
        log.add(f"started {request.agent}")
        try:
            await asyncio.sleep(120)
        except asyncio.CancelledError:
            log.add(f"cancelled {request.agent}")  # on the worker: the call itself was stopped
            raise
        return "Done."

    run = om.start(make_spec({"a": 6}, concurrency=3), provider=PythonProvider(worker), root=tmp_path / "runs",
                   client=cluster)
    log.wait_until(lambda lines: len(lines) == 3, "three agents started")
    assert sorted(scheduler_tasks(cluster, run.run_id).values()) == ["processing"] * 3
    run.stop()
    run.wait()

    assert run.status == "cancelled"
    never_started = [a for a in run.state.agents.values() if a.error.startswith("not started")]
    assert (run.state.counts["cancelled"], len(never_started)) == (7, 4)  # 3 in flight, 4 never started
    lines = log.wait_until(lambda lines: sum(ln.startswith("cancelled") for ln in lines) == 3, "calls cancelled")
    assert sorted(ln.split()[1] for ln in lines if ln.startswith("cancelled")) == ["a-1", "a-2", "a-3"]
    assert scheduler_tasks(cluster, run.run_id) == {}  # nothing of the run is left on the scheduler


def test_the_cli_runs_the_quickstart_on_a_cluster_it_starts_itself(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "orchestra_magic", "run", str(QUICKSTART), "--provider", "offline",
                           "--executor", "dask"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "25 agents: 25 done" in done.stdout
    assert "Agents run on dask (tcp://127.0.0.1:" in done.stderr  # the progress says where, once
    (folder,) = (tmp_path / "orchestration").iterdir()
    manifest = json.loads((folder / "run.json").read_text())
    assert manifest["executor"].startswith("dask") and manifest["dashboard"] == ""  # its cluster is gone
