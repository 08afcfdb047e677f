"""Choosing where agents run (spec, options, environment), the Dask keys and cluster-wide cap, and how the
widget shows the executor. The engine's own behaviour on both executors is in test_engine.py."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import Log, make_spec

import orchestra_magic as om
from orchestra_magic.api import make_executor
from orchestra_magic.engine.executors import LocalExecutor
from orchestra_magic.errors import ConfigError, TransientAgentError
from orchestra_magic.providers import AgentRequest, PythonProvider
from orchestra_magic.results import Run
from orchestra_magic.spec.load import load_spec
from orchestra_magic.state.run import RunState

distributed = pytest.importorskip("distributed")
dask = pytest.importorskip("dask")


def echo(request: AgentRequest) -> str:
    return f"{request.task}\nDone."


def scheduler_keys(client: Any, run_id: str) -> set[str]:
    """Every task key of the run the scheduler has seen (its transition log)."""
    def keys(dask_scheduler: Any) -> list[str]:
        return [str(entry[0]) for entry in dask_scheduler.transition_log]

    return {k for k in client.run_on_scheduler(keys) if run_id in k}


@pytest.mark.parametrize(
    ("spec_keys", "options", "expected"),
    [
        ({}, {}, "local"),
        ({"scheduler": "tcp://10.0.0.5:8786"}, {}, "dask"),  # an address alone means dask
        ({"executor": "dask"}, {}, "dask"),
        ({"executor": "dask", "scheduler": "tcp://10.0.0.5:8786"}, {"executor": "local"}, "local"),  # option wins
        ({}, {"scheduler": "tcp://10.0.0.5:8786"}, "dask"),
        ({}, {"environment": (None, "tcp://10.0.0.5:8786")}, "dask"),  # ORCHESTRA_SCHEDULER alone
        ({}, {"executor": "local", "environment": (None, "tcp://10.0.0.5:8786")}, "local"),  # the option wins
        ({"scheduler": "tcp://10.0.0.5:8786"}, {"environment": ("local", None)}, "local"),  # env over the spec
    ],
)
def test_the_executor_comes_from_options_then_the_spec(spec_keys: dict[str, Any], options: dict[str, Any],
                                                      expected: str) -> None:
    spec = load_spec(make_spec({"a": 1}, **spec_keys))
    assert make_executor(options.pop("executor", None), spec, **options).name == expected


def test_a_scheduler_with_the_local_executor_is_a_clear_mistake() -> None:
    spec = load_spec(make_spec({"a": 1}))
    with pytest.raises(ConfigError, match="a Dask scheduler or client was given but the executor is 'local'"):
        make_executor("local", spec, scheduler="tcp://10.0.0.5:8786")


def test_an_unknown_executor_from_the_environment_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRA_EXECUTOR", "ray")
    with pytest.raises(ConfigError, match="unknown executor 'ray'; choose one of local, dask"):
        om.run(make_spec({"a": 1}), provider=PythonProvider(echo), root=tmp_path)
    assert not tmp_path.exists() or not list(tmp_path.iterdir())


def test_a_bad_executor_in_the_spec_is_a_spec_error() -> None:
    with pytest.raises(om.SpecError, match="executor"):
        load_spec(make_spec({"a": 1}, executor="cluster"))


def test_without_distributed_the_dask_executor_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "orchestra_magic.engine.dask_executor", raising=False)
    with pytest.raises(ConfigError, match=r'pip install "orchestra_magic\[dask\]"'):
        make_executor("dask", load_spec(make_spec({"a": 1})))


@pytest.mark.parametrize("listening", [False, True], ids=["nothing-listens", "no-handshake"])
def test_an_address_with_no_scheduler_is_refused_before_anything_is_written(tmp_path: Path, listening: bool) -> None:
    # Nothing may listen on the port (refused), or a server that accepts the connection and never answers
    # the handshake (a dashboard's port, a web server): the connect timeout alone does not cover that one.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        if listening:
            server.listen()
        port = server.getsockname()[1]
        with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), \
                pytest.raises(ConfigError, match=f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}"):
            om.run(make_spec({"a": 1}), provider=PythonProvider(echo), root=tmp_path / "runs",
                   scheduler=f"tcp://127.0.0.1:{port}")
    assert not (tmp_path / "runs").exists()


def test_a_python_function_that_cannot_travel_to_the_cluster_is_refused_before_the_run(
        tmp_path: Path, threads_cluster: Any) -> None:
    import threading

    lock = threading.Lock()

    def locked(request: AgentRequest) -> str:
        with lock:
            return "Done."

    with pytest.raises(ConfigError, match=r"python provider cannot be sent to the Dask workers \(.*lock"):
        om.run(make_spec({"a": 1}), provider=PythonProvider(locked), root=tmp_path / "runs", client=threads_cluster)
    assert not (tmp_path / "runs").exists()


def test_a_cluster_can_be_given_where_a_client_goes(tmp_path: Path, threads_cluster: Any) -> None:
    cluster = threads_cluster.cluster  # a LocalCluster, not a Client
    run = om.run(make_spec({"a": 2}), provider=PythonProvider(echo), root=tmp_path, client=cluster)
    assert run.status == "done" and run.state.executor.startswith("dask")


def test_the_spec_alone_can_send_a_run_to_a_cluster(tmp_path: Path, threads_cluster: Any) -> None:
    address = threads_cluster.scheduler.address
    result = om.run(make_spec({"a": 2}, scheduler=address), provider=PythonProvider(echo), root=tmp_path)
    assert result.status == "done"
    assert result.state.executor == f"dask ({address}, 2 workers, 16 threads)"
    assert len(scheduler_keys(threads_cluster, result.run_id)) == 3  # two workers and a coordinator


def test_every_attempt_is_its_own_dask_task(tmp_path: Path, threads_cluster: Any) -> None:
    """Dask merges calls with the same key into one task: a retry under the first attempt's key would get
    the first attempt's error back instead of running again."""
    log = Log(tmp_path / "log")

    def flaky(request: AgentRequest) -> str:
        if log.first(request.agent):
            raise TransientAgentError("HTTP 529 overloaded_error", retry_after=0)
        return "Done."

    result = om.run(make_spec({"a": 2}), provider=PythonProvider(flaky), root=tmp_path / "runs",
                    client=threads_cluster)
    assert result.status == "done" and list(result.agents.attempts) == [2, 2, 1]
    keys = scheduler_keys(threads_cluster, result.run_id)
    attempts = {k.split(f"{result.run_id}-")[1].rsplit("-", 1)[0] for k in keys}
    assert attempts == {"a-1-1", "a-1-2", "a-2-1", "a-2-2", "coordinator:a-1"}
    assert all(k.startswith(("worker-", "coordinator-")) for k in keys)  # grouped by role on the dashboard


def test_a_cluster_wide_cap_holds_across_runs(tmp_path: Path, threads_cluster: Any) -> None:
    flying, log = tmp_path / "in-flight", Log(tmp_path / "log")
    flying.mkdir()

    async def worker(request: AgentRequest) -> str:
        import asyncio

        marker = flying / f"{request.domain}-{request.agent}"
        marker.mkdir()
        log.add(str(len(list(flying.iterdir()))))
        await asyncio.sleep(0.05)
        marker.rmdir()
        return "Done."

    capped = {"concurrency": 4, "cluster_concurrency": 2}
    runs = [om.start(make_spec({name: 6}, **capped), provider=PythonProvider(worker), root=tmp_path / "runs",
                     client=threads_cluster) for name in ("x", "y")]  # two runs at once, 8 slots asked for
    assert [r.wait().status for r in runs] == ["done", "done"]
    assert max(int(n) for n in log.lines()) == 2

    with pytest.raises(ConfigError, match="already caps orchestra_magic runs at a different number"):
        om.run(make_spec({"z": 1}, cluster_concurrency=3), provider=PythonProvider(worker), root=tmp_path,
               client=threads_cluster)


def test_a_stop_gives_back_the_slots_its_agents_were_waiting_for(tmp_path: Path, threads_cluster: Any) -> None:
    """distributed does not withdraw a cancelled wait for a lease: it grants it later, and unless that lease
    is given back at once, the slot stays taken for every run on the cluster until the lease times out."""
    log = Log(tmp_path / "log")

    async def worker(request: AgentRequest) -> str:
        import asyncio

        log.add(request.agent)
        await asyncio.sleep(3600)
        return "Done."

    run = om.start(make_spec({"a": 6}, concurrency=6, cluster_concurrency=2), provider=PythonProvider(worker),
                   root=tmp_path, client=threads_cluster)
    log.wait_until(lambda lines: len(lines) == 2, "two agents holding the cluster's two slots")
    run.stop()
    assert run.wait().status == "cancelled"

    def leases(dask_scheduler: Any) -> int:
        return len(dask_scheduler.extensions["semaphores"].leases["orchestra_magic"])

    deadline = time.monotonic() + 10  # the scheduler's lease timeout is 30 s: held leases would still be there
    while (held := threads_cluster.run_on_scheduler(leases)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert held == 0 and len(log.lines()) == 2  # and none of the four that waited ever ran


def test_waiting_for_the_cluster_wide_cap_is_not_counted_against_the_timeout(tmp_path: Path,
                                                                               threads_cluster: Any) -> None:
    async def worker(request: AgentRequest) -> str:
        import asyncio

        await asyncio.sleep(0.2)
        return "Done."

    # Two at a time, twelve agents: the last two wait ~1 s for a lease, longer than the 0.8 s timeout,
    # but each call takes only 0.2 s of it.
    spec = make_spec({"a": 12}, concurrency=12, cluster_concurrency=2, timeout=0.8)
    run = om.run(spec, provider=PythonProvider(worker), root=tmp_path, client=threads_cluster)
    assert run.status == "done" and set(run.agents.attempts) == {1}


def test_a_call_that_runs_too_long_on_the_cluster_times_out_there(tmp_path: Path, threads_cluster: Any) -> None:
    log = Log(tmp_path / "log")

    async def worker(request: AgentRequest) -> str:
        import asyncio

        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            log.add("the call was cancelled on the worker")
            raise
        return "Done."

    spec = make_spec({"a": 1}, timeout=0.3, attempts=1)
    run = om.run(spec, provider=PythonProvider(worker), root=tmp_path, client=threads_cluster)
    assert run.agents.set_index("agent").loc["a-1", "error"] == (
        "gave up after 1 attempt; last error: no answer within the 0.3 s timeout")
    assert log.lines() == ["the call was cancelled on the worker"]


def test_the_widget_shows_where_agents_run_and_links_the_dashboard(tmp_path: Path) -> None:
    from orchestra_magic.display.text import status_line
    from orchestra_magic.display.widget import RunView

    state = RunState(run_id="r-1", name="r", provider="offline", started_at=time.time(), agents={},
                     executor="dask (tcp://10.0.0.5:8786, 2 workers, 8 threads)",
                     dashboard="http://10.0.0.5:8787/status")
    view = RunView(Run(tmp_path, state), on_stop=lambda: None, on_retry=lambda: None)
    assert "Agents run on: dask (tcp://10.0.0.5:8786, 2 workers, 8 threads)" in view.header.value
    assert "<a href='http://10.0.0.5:8787/status' target='_blank'" in view.header.value
    assert status_line(state, time.time()).endswith("· on dask")

    state.executor, state.dashboard = LocalExecutor().describe(), ""
    view.render()
    assert "Agents run on: local (this process)" in view.header.value and "<a href" not in view.header.value
    assert "on local" not in status_line(state, time.time())


def test_the_executor_is_recorded_in_the_manifest(tmp_path: Path) -> None:
    result = om.run(make_spec({"a": 1}), provider=PythonProvider(echo), root=tmp_path)
    assert om.load_run(result.path).state.executor == "local (this process)"


def test_a_run_started_locally_resumes_on_a_cluster_without_redoing_anything(tmp_path: Path,
                                                                              threads_cluster: Any) -> None:
    """Where an agent ran is not part of what its output depends on, so a resume may change executor."""
    calls = Log(tmp_path / "log")

    def worker(request: AgentRequest) -> str:
        calls.add(request.agent)
        return f"{request.task}\nDone."

    provider, spec = PythonProvider(worker), make_spec({"a": 2, "b": 1})
    first = om.run(spec, provider=provider, root=tmp_path / "runs")
    calls.clear()
    again = om.run(spec, provider=provider, root=tmp_path / "runs", resume=first.run_id, client=threads_cluster)
    assert again.state.executor.startswith("dask") and set(again.agents.status) == {"skipped"}
    assert calls.lines() == []


def test_the_provider_sent_to_workers_carries_no_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    import cloudpickle

    from orchestra_magic.providers.anthropic.provider import AnthropicProvider

    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-ENV-MARKER")
    provider = AnthropicProvider(api_key="sk-ant-ARG-MARKER", base_url="https://api.example.com")
    shipped = cloudpickle.dumps(provider.for_workers())
    assert b"MARKER" not in shipped and b"https://api.example.com" in shipped


def test_an_asynchronous_client_on_the_runs_loop_is_used_as_it_is_and_left_open(tmp_path: Path,
                                                                                 threads_cluster: Any) -> None:
    import asyncio

    from orchestra_magic.api import prepared

    async def main() -> tuple[RunState, bool, str]:
        async with distributed.Client(threads_cluster.scheduler.address, asynchronous=True,
                                      set_as_default=False) as client:
            async with prepared(make_spec({"a": 2}), provider=PythonProvider(echo), root=tmp_path,
                                client=client) as engine:
                state = await engine.run()
                same = engine.executor.client is client
            return state, same, client.status

    state, same, status = asyncio.run(main())
    assert state.status == "done" and state.executor.startswith("dask")
    assert same and status == "running"  # the caller's own client, not closed by the run
