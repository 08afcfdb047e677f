"""Executors: *where* an agent's call runs. The engine keeps deciding *what* runs *when*.

The engine plans, schedules (concurrency cap, waves, coordinators after their workers), retries,
times out, journals and writes every file; for each attempt it hands one `AgentRequest` to its
executor and gets one `Completion` (or an exception) back. So everything that makes a run safe to
stop and resume stays in one process whatever the executor, and an executor is small:

- `local` (the default): the call runs on the engine's own event loop, as it always has.
- `dask`: each attempt is one task on a `distributed` cluster (see `dask_executor`); the worker
  returns the completion and the engine, here, journals it and writes the file.

`distributed` is an optional extra and is imported only when the dask executor is chosen.
"""

from __future__ import annotations

import abc
import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..providers.base import AgentRequest, Completion, Provider

class Executor(abc.ABC):
    """Runs agent calls somewhere. `start` before the run folder exists (so a wrong address is the
    user's mistake, reported as a `ConfigError` before anything is written), `close` after the run."""

    name = "executor"
    dashboard_link = ""  # a page showing the executor's own view of the work, when it has one
    dashboard_lasts = True  # the page is still there once the run is over (not for a cluster made for it)

    async def start(self, provider: Provider) -> None:  # noqa: B027 (optional hook)
        """Get ready to run calls for `provider`, which is already started."""

    @abc.abstractmethod
    async def complete(self, request: AgentRequest, *, run_id: str, attempt: int,
                       timeout: float) -> Completion:  # noqa: ASYNC109 (it limits the call, not a wait for room)
        """One attempt of one agent. Raise what the provider raised; on cancellation stop the call. Raise
        `TimeoutError` when the call itself (not a wait for room to run it) takes over `timeout` seconds."""

    async def close(self) -> None:  # noqa: B027 (optional hook)
        """Release what `start` acquired."""

    def describe(self) -> str:
        """One line for progress views: where the agents run."""
        return self.name


class LocalExecutor(Executor):
    """Today's behaviour: the provider's coroutine on the engine's event loop, nothing in between."""

    name = "local"

    def __init__(self, provider: Provider | None = None) -> None:
        self.provider = provider

    async def start(self, provider: Provider) -> None:
        self.provider = provider

    async def complete(self, request: AgentRequest, *, run_id: str, attempt: int,
                       timeout: float) -> Completion:  # noqa: ASYNC109 (it limits the call, not a wait for room)
        assert self.provider is not None, "LocalExecutor.start was not called"
        async with asyncio.timeout(timeout):
            return await self.provider.complete(request)

    def describe(self) -> str:
        return "local (this process)"
