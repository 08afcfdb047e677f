"""Shared fixtures. Tests never reach the real API: the key is removed and the endpoint is unset."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

# Where the SDK, boto3 and google-auth would find a cloud and its credentials: unset in every test.
CLOUD_SETTINGS = (
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
    "AWS_BEARER_TOKEN_BEDROCK", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE", "ANTHROPIC_BEDROCK_BASE_URL",
    "ANTHROPIC_VERTEX_BASE_URL", "ANTHROPIC_VERTEX_PROJECT_ID", "GOOGLE_CLOUD_PROJECT", "CLOUD_ML_REGION",
    "GOOGLE_OAUTH_ACCESS_TOKEN", "GOOGLE_APPLICATION_CREDENTIALS", "ANTHROPIC_FOUNDRY_API_KEY",
    "ANTHROPIC_FOUNDRY_RESOURCE", "ANTHROPIC_FOUNDRY_BASE_URL", "ORCHESTRA_COMPATIBLE_FEATURES",
)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (pyproject's addopts): one worker more than the machine has cores. About half of the suite's
    time is spent waiting (on kernels, a browser, clusters and subprocesses starting, on answers from a
    fake API that is slow on purpose), so a worker per core alone leaves the cores idle that long."""
    return (os.cpu_count() or 1) + 1


@pytest.fixture(autouse=True)
def _no_real_api(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ORCHESTRA_PROVIDER",
                 "ORCHESTRA_ROOT", "ORCHESTRA_CONCURRENCY", "ORCHESTRA_EXECUTOR", "ORCHESTRA_SCHEDULER",
                 *CLOUD_SETTINGS):
        monkeypatch.delenv(name, raising=False)
    # boto3 must never read ~/.aws nor ask an instance-metadata address for credentials.
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


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
