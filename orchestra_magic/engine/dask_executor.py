"""The dask executor: each agent attempt is one task on a `distributed` cluster.

What crosses to the cluster is the request and a worker-side copy of the provider
(`Provider.for_workers()`: never an API key, which each worker reads from its own environment); what
comes back is the `Completion`. The engine, in this process, journals it and writes the file, exactly
as with the local executor. That is what makes Dask's retries harmless: when a worker dies, Dask runs
its tasks again elsewhere, and a task run twice costs a second call but can never write a file twice
or record an agent twice, because only the first result to reach the engine is used.

The traps this module exists to avoid:
- Dask merges calls with the same key into one task, so every attempt gets its own key
  (`<role>-<run id>-<agent>-<attempt>-<session>`, `pure=False`); the session part keeps a resumed
  run's keys apart from a finished task the scheduler has not yet forgotten.
- Cancelling a Dask future does not stop a task that is already running; the worker side watches its
  own task and cancels the provider call when the engine gives it up (Stop, a timeout), so a stopped
  run stops paying for calls on the cluster too.
- The engine's event loop runs in its own thread (see `live`), so it talks to the cluster through an
  asynchronous `Client` made on that loop; a user's synchronous `Client` (or one on another loop) only
  tells us which scheduler to connect to.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import urllib.request
from collections.abc import AsyncIterator, Awaitable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext, suppress
from typing import Any, cast

import dask.config
import distributed
from dask.utils import parse_timedelta
from distributed.client import FutureCancelledError
from distributed.deploy.cluster import Cluster
from distributed.deploy.utils import nprocesses_nthreads
from distributed.protocol.pickle import dumps

from ..errors import AgentError, ConfigError, TransientAgentError, leave_spent, spent_on
from ..providers.base import AgentRequest, Completion, Provider
from .executors import Executor
from .tracing import attached, carrier

SEMAPHORE = "orchestra_magic"  # the cluster-wide cap every run on one cluster shares
WATCH_EVERY = 0.2  # seconds between a worker's checks that the engine still wants its call


class DaskExecutor(Executor):
    """Runs calls on a Dask cluster: the one at `scheduler`, the one `client` is connected to, or (with
    neither) a `LocalCluster` of processes started for the run and closed after it.

    `threads` sizes that local cluster: a running agent holds one worker thread while it waits for the
    API, so the cluster needs about as many threads as the run's concurrency. `cluster_concurrency`
    caps agents in flight across every run on the cluster (a `distributed.Semaphore`)."""

    name = "dask"

    def __init__(self, scheduler: str | None = None, client: distributed.Client | None = None, *,
                 cluster_concurrency: int | None = None, threads: int = 8) -> None:
        self.scheduler, self.user_client = scheduler, client
        self.cluster_concurrency, self.threads = cluster_concurrency, threads
        self.client: distributed.Client | None = None
        self._owns_client = False
        self._cluster: distributed.LocalCluster | None = None
        self._semaphore: distributed.Semaphore | None = None
        self._shipped: Provider | None = None
        self._session = ""  # names this run's provider copies and task keys on the cluster
        self._where = ""

    async def start(self, provider: Provider) -> None:
        self._session = secrets.token_hex(4)
        self._shipped = provider.for_workers()
        _check_picklable(self._shipped)  # once, here, rather than failing every agent on the cluster
        self.client = await self._connect()
        if self.cluster_concurrency:
            self._semaphore = await self._cluster_cap(self.cluster_concurrency)
        scheduler = self.client.scheduler
        assert scheduler is not None  # a connected client has one
        info = await scheduler.identity(n_workers=-1)
        if "dashboard" in info.get("services", {}):
            self.dashboard_link = await _answering(str((self.user_client or self.client).dashboard_link))
            self.dashboard_lasts = self._cluster is None  # a cluster made for the run closes with it
        workers = info.get("workers", {})
        threads = sum(w.get("nthreads", 0) for w in workers.values())
        self._where = f"{scheduler.address}, {len(workers)} workers, {threads} threads"

    async def _connect(self) -> distributed.Client:
        address: Any
        security = None
        if isinstance(self.user_client, Cluster):  # a cluster given where a client goes: connect to it
            address, security = self.user_client.scheduler_address, self.user_client.security
        elif self.user_client is not None and self.user_client.asynchronous:
            return self.user_client  # already on this loop: use it as it is
        elif self.user_client is not None:
            if self.user_client.scheduler is None or self.user_client.status != "running":
                raise ConfigError("the Dask client given is not connected to a scheduler (was it closed?)")
            address = self.user_client.scheduler.address
            security = self.user_client.security
        elif self.scheduler:
            address = self.scheduler
        else:
            address = self._cluster = await self._local_cluster()
        client = distributed.Client(address, asynchronous=True, set_as_default=False, security=security)
        # Bounded as a whole: something else listening there (a dashboard's port, a web server) answers
        # the connection but never the handshake, and would otherwise be waited for forever.
        limit = parse_timedelta(dask.config.get("distributed.comm.timeouts.connect")) + 5
        try:
            await asyncio.wait_for(_connected(client), limit)
        except Exception as exc:  # refused, timed out, not an address, or not a Dask scheduler at all
            with suppress(Exception):
                await client.close()  # else its finaliser complains about coroutines never awaited
            timed_out = isinstance(exc, TimeoutError) and not str(exc)
            why = f"no answer to the Dask handshake within {limit:g} s" if timed_out else f"{exc}"
            raise ConfigError(f"cannot reach the Dask scheduler at {address} ({why}). Check the address "
                              "(the scheduler's port, e.g. tcp://10.0.0.5:8786, not its dashboard's) and that "
                              "the scheduler is running.") from None
        self._owns_client = True
        return client

    async def _local_cluster(self) -> distributed.LocalCluster:
        processes, threads = nprocesses_nthreads()
        per_worker = max(threads, math.ceil(self.threads / processes))
        cluster: distributed.LocalCluster = await distributed.LocalCluster(
            n_workers=processes, threads_per_worker=per_worker, processes=True, asynchronous=True)
        return cluster

    async def _cluster_cap(self, leases: int) -> distributed.Semaphore:
        assert self.client is not None
        semaphore = distributed.Semaphore(max_leases=leases, name=SEMAPHORE, scheduler_rpc=self.client.scheduler,
                                          loop=self.client.loop)
        try:
            await semaphore
        except ValueError as exc:  # "Inconsistent max leases": another run set the cap differently
            raise ConfigError(f"this Dask cluster already caps orchestra_magic runs at a different number of "
                              f"agents ({exc}); use the same cluster_concurrency, or restart the scheduler") from None
        return semaphore

    async def complete(self, request: AgentRequest, *, run_id: str, attempt: int,
                       timeout: float) -> Completion:  # noqa: ASYNC109 (it limits the call, not a wait for room)
        """The timeout is kept on the worker, from when the call starts there: waiting for a lease of the
        cluster's cap or for a free worker thread is not the API being slow."""
        assert self.client is not None, "DaskExecutor.start was not called"
        key = f"{request.role}-{run_id}-{request.agent}-{attempt}-{self._session}"
        cap: AbstractAsyncContextManager[Any] = _leased(self._semaphore) if self._semaphore else nullcontext()
        async with cap:
            future = self.client.submit(run_on_worker, key, self._session, self._shipped, request, timeout,
                                        carrier(), key=key, pure=False, retries=0)
            try:
                completion: Completion = await future
            except FutureCancelledError as exc:  # not our doing: the scheduler or another client dropped it
                raise TransientAgentError(f"the Dask cluster cancelled the task ({exc.reason})") from None
            except distributed.KilledWorker as exc:
                raise TransientAgentError(f"the Dask workers running this agent died ({exc})") from None
            except asyncio.CancelledError:  # Stop or the timeout: drop the task on the cluster too
                if not future.done():
                    await asyncio.shield(self.client.cancel([future], reason="stopped by orchestra_magic"))
                raise
        return completion

    async def close(self) -> None:
        if self.client is not None:
            with suppress(Exception):  # best effort: a worker that is gone has nothing left to close
                await asyncio.wait_for(self.client.run(forget_provider, self._session), timeout=10)
            if self._owns_client:
                await self.client.close()
            self.client = None
        if self._semaphore is not None:
            self._semaphore.refresh_callback.stop()
            self._semaphore = None
        if self._cluster is not None:
            await cast(Awaitable[None], self._cluster.close())
            self._cluster = None

    def describe(self) -> str:
        return f"dask ({self._where})" if self._where else "dask"


async def _answering(link: str) -> str:
    """`link` if a dashboard answers there, else "". The scheduler lists its HTTP server as "dashboard"
    even when the dashboard is off or bokeh is missing, and a dead link in the widget misleads."""
    if not link.startswith(("http://", "https://")):
        return link  # a proxied, relative link (jupyter-server-proxy): only the browser can follow it
    try:
        await asyncio.to_thread(_fetch, link)
    except (OSError, ValueError):
        return ""
    return link


def _fetch(link: str) -> None:
    with urllib.request.urlopen(link, timeout=3):  # the scheduler's own http(s) address
        pass


# ---- on the worker ---------------------------------------------------------------------------------

_STARTED: dict[tuple[str, int], asyncio.Task[Provider]] = {}  # (session, loop) -> the started provider


def _check_picklable(provider: Provider) -> None:
    try:
        dumps(provider)
    except Exception as exc:
        raise ConfigError(f"the {provider.name} provider cannot be sent to the Dask workers ({exc}). Its "
                          "functions, and what they use from outside (globals, closures), must pickle: make "
                          "locks, clients and open files inside the function instead") from None


_RELEASING: set[asyncio.Future[Any]] = set()  # releases of leases granted after their agent gave up


@asynccontextmanager
async def _leased(semaphore: distributed.Semaphore) -> AsyncIterator[None]:
    """One slot of the cluster-wide cap. distributed does not withdraw an acquire cancelled while it
    waits (a Stop): the scheduler grants it later, and the slot stays taken until its lease times out,
    stalling every run on the cluster. So a cancelled acquire is left to finish and released at once."""
    acquiring = asyncio.ensure_future(semaphore.acquire())
    try:
        await asyncio.shield(acquiring)
    except asyncio.CancelledError:
        acquiring.add_done_callback(lambda done: _give_back(semaphore, done))
        raise
    try:
        yield
    finally:
        await semaphore.release()


def _give_back(semaphore: distributed.Semaphore, acquired: asyncio.Future[Any]) -> None:
    if acquired.cancelled() or acquired.exception() is not None or not acquired.result():
        return
    release = asyncio.ensure_future(semaphore.release())
    _RELEASING.add(release)
    release.add_done_callback(_RELEASING.discard)


async def _connected(client: distributed.Client) -> None:
    await client


async def run_on_worker(key: str, session: str, provider: Provider, request: AgentRequest,
                        timeout: float,  # noqa: ASYNC109 (limits the call, not the wait for it)
                        trace_context: dict[str, str] | None = None) -> Completion:
    """One attempt, as a Dask task on a worker's event loop. Gives the call up after `timeout` seconds
    (raising `TimeoutError`, as the local executor does) or as soon as the engine has (the task was
    cancelled), since Dask itself would let it run to the end."""
    started = await _provider(session, provider)
    worker, loop = distributed.get_worker(), asyncio.get_running_loop()
    deadline = loop.time() + timeout
    with attached(trace_context or {}):  # the call's task (and the SDK's span) inherit the engine's trace
        call = asyncio.ensure_future(started.complete(request))
    while True:
        done, _ = await asyncio.wait({call}, timeout=max(0.0, min(WATCH_EVERY, deadline - loop.time())))
        if done:
            return call.result()
        task = worker.state.tasks.get(key)
        wanted = task is not None and task.state != "cancelled"
        if wanted and loop.time() < deadline:
            continue
        call.cancel()
        try:
            await call
        except BaseException as exc:  # a tool loop cut off leaves what its turns cost on its cancellation
            spent = spent_on(exc)
        else:
            spent = []
        if wanted:
            timed_out = TimeoutError(f"no answer within {timeout:g} s")
            for part in spent:
                leave_spent(timed_out, part)
            raise timed_out
        raise AgentError("cancelled: the engine no longer wants this call")


async def _provider(session: str, provider: Provider) -> Provider:
    """This run's provider in this worker process, started once (concurrent first tasks share it)."""
    slot = (session, id(asyncio.get_running_loop()))
    if slot not in _STARTED:
        _STARTED[slot] = asyncio.ensure_future(_start(provider))
    try:
        return await asyncio.shield(_STARTED[slot])
    except AgentError:
        _STARTED.pop(slot, None)  # let the next task try again (the key may have been set meanwhile)
        raise


async def _start(provider: Provider) -> Provider:
    try:
        await provider.start()
    except Exception as exc:
        where = distributed.get_worker().address
        raise AgentError(f"the {provider.name} provider could not start on Dask worker {where}: {exc}") from None
    return provider


async def forget_provider(session: str) -> None:
    """Close this run's provider copies in this worker process (run on every worker when the run ends)."""
    for slot in [s for s in _STARTED if s[0] == session]:
        task = _STARTED.pop(slot)
        if task.done() and not task.cancelled() and task.exception() is None:
            await task.result().close()
