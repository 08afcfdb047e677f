"""Shared fixtures. Tests never reach the real API: the key is removed and the endpoint is unset."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _no_real_api(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ORCHESTRA_PROVIDER",
                 "ORCHESTRA_ROOT", "ORCHESTRA_CONCURRENCY", "ORCHESTRA_EXECUTOR", "ORCHESTRA_SCHEDULER"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def shell(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A real IPython shell with the extension loaded, working in `tmp_path`; run cells with `helpers.cell`."""
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.chdir(tmp_path)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "orchestra_magic")
    yield ip
    ip.run_line_magic("unload_ext", "orchestra_magic")
    InteractiveShell.clear_instance()


@pytest.fixture(scope="session")
def threads_cluster() -> Iterator[Any]:
    """An in-process Dask cluster (2 workers, 8 threads each) shared by the whole session: it starts in
    milliseconds, and its tasks still travel the way they do on a real cluster (pickled with cloudpickle,
    run on the workers' own event loop), so it exercises the dask executor's whole path."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=8, processes=False, dashboard_address=None)
    with cluster, distributed.Client(cluster, set_as_default=False) as client:
        yield client


@dataclass
class On:
    """One executor for the parametrised engine tests: `options` go to `om.run`/`om.arun`, `started`
    makes a started executor for tests that build an `Engine` by hand."""

    name: str
    options: dict[str, Any]

    @asynccontextmanager
    async def started(self, provider: Any) -> AsyncIterator[Any]:
        from orchestra_magic.engine.executors import LocalExecutor

        if self.name == "local":
            yield LocalExecutor(provider)
            return
        from orchestra_magic.engine.dask_executor import DaskExecutor

        executor = DaskExecutor(client=self.options["client"])
        await executor.start(provider)
        try:
            yield executor
        finally:
            await executor.close()


@pytest.fixture(params=["local", "dask"])
def on(request: pytest.FixtureRequest) -> On:
    """Each engine test runs once per executor: the same behaviour is promised on both."""
    if request.param == "local":
        return On("local", {})
    client = request.getfixturevalue("threads_cluster")
    return On("dask", {"executor": "dask", "client": client})
