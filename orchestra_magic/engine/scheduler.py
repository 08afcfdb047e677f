"""The async engine: schedules workers and coordinators, retries, times out, cancels, resumes.

Scheduling works off a ready queue. Workers are ready from the start; a reader (a sub-coordinator of
the reduction tree, a domain's coordinator, the run-level coordinator) becomes ready, ahead of waiting
workers, the moment its own last input finishes: a sub-coordinator starts when its group is done, not
when its domain is (see `tree`). `pool` fills a free
slot at once; `waves` starts the next batch only when the whole previous batch is finished (the method's
"waves of 8"). Every change is an event: the reducer updates `state`, the run folder journals it, and
listeners (progress views) are told. Outputs are files; the engine keeps only summaries and numbers.
Where each call runs is the executor's business (`executors`): here, or as a task on a Dask cluster.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping

from ..errors import spent_on
from ..pricing import dollars
from ..providers.base import AgentRequest, Completion, Provider, WorkerResult
from ..runfolder.folder import RunFolder
from ..runfolder.layout import SPEC, answer_path
from ..spec.model import ROLES, Spec
from ..spec.prompts import Prompts
from ..state.events import AgentFinished, Event, RunFinished, RunStatus
from ..state.run import RunState
from ..tools.catalog import PythonTool
from .attempts import AgentCalls, Ledger, file_error
from .executors import Executor, LocalExecutor
from .planning import KEPT, AgentPlan, cut_to_share, initial_state, input_hash, output_digest, render_request
from .retry import RetryPolicy
from .throttle import Throttle
from .tracing import RunTracing, tracer
from .tree import plan_agents

Listener = Callable[[Event, RunState], None]


class Engine:
    """Runs one spec into one run folder. `await engine.run()`; `engine.stop()` to stop gracefully."""

    def __init__(
        self,
        spec: Spec,
        provider: Provider,
        folder: RunFolder,
        *,
        prior: RunState | None = None,
        concurrency: int | None = None,
        retry: RetryPolicy | None = None,
        listeners: tuple[Listener, ...] = (),
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        snapshot_every: float = 2.0,
        tools: Mapping[str, PythonTool] | None = None,
        executor: Executor | None = None,
        plans: list[AgentPlan] | None = None,
    ) -> None:
        self.spec, self.provider, self.folder = spec, provider, folder
        self.tools = dict(tools or {})  # the Python tools, resolved once (`tools.resolve_tools`)
        self.concurrency = concurrency or spec.concurrency
        self.retry = retry or RetryPolicy(attempts=spec.attempts, max_wait=spec.max_wait)  # given: as given
        self.listeners = list(listeners)
        self.clock, self.sleep = clock, sleep
        self.prompts = Prompts(spec.templates)
        ordered = plans if plans is not None else plan_agents(spec, self.prompts)  # `plans`: planned already
        self.plans = {p.key: p for p in ordered}
        self._checked: dict[str, str] = {}  # kept outputs, read to prove them, until their reader's turn
        self.executor = executor or LocalExecutor(provider)  # where calls run; started by whoever made it
        self.state = initial_state(ordered, spec, folder.run_id, provider.identity, clock(), prior,
                                   executor=self.executor.describe(), dashboard=self.executor.dashboard_link)
        # What each agent's earlier record says (status, input hash, output digest): what a skip must match.
        self.prior = {k: (a.status, a.input_hash, a.output_hash) for k, a in self.state.agents.items()}
        # Wall-clock time stamps the events; the throttle's pauses keep to a monotonic clock and real sleep,
        # unless a clock is given: then with the sleep given too (one that moves that clock, in tests).
        timed = clock is not time.time
        throttle = Throttle(self.concurrency, clock=clock if timed else time.monotonic,
                            sleep=sleep if timed else asyncio.sleep, max_wait=self.retry.max_wait)
        self._stopping = ""
        self._running: dict[asyncio.Task[None], AgentPlan] = {}
        self._ready: deque[AgentPlan] = deque()  # agents that may start, readers at the front
        self._waiting: dict[str, int] = {}  # per reader: inputs not finished yet
        self._idle = asyncio.Event()  # nothing runs and nothing more may start
        self._bug: Exception | None = None  # an error that is not an agent failure, raised by `run`
        self._snapshot_every = snapshot_every
        self._last_snapshot = 0.0
        # Batch mode: agents of these roles wait on a batch, not an open connection (see `attempts`).
        self._batch_roles = frozenset(role for role in ROLES if provider.batches
                                      and spec.settings(role).mode == "batch" and not spec.settings(role).tools)
        self._slots = 0  # agents in flight holding one of the `concurrency` slots
        # Billed per agent, earlier sessions of a resumed run included; the budget reads it too.
        self.ledger = Ledger(self.state.agents)
        self.calls = AgentCalls(spec=spec, provider=provider, executor=self.executor, folder=folder,
                                throttle=throttle, retry=self.retry, ledger=self.ledger, emit=self._emit,
                                clock=clock, sleep=sleep, batch_roles=self._batch_roles)

    @property
    def throttle(self) -> Throttle:
        """What every Messages call passes (see `throttle`); a benchmark may put another in before `run`."""
        return self.calls.throttle

    @throttle.setter
    def throttle(self, throttle: Throttle) -> None:
        self.calls.throttle = throttle

    def stop(self, reason: str = "stopped by the user") -> None:
        """Start no new agents and cancel those in flight; `run()` then returns a `cancelled` state."""
        self._stopping = reason
        for task in self._running:
            task.cancel()

    async def run(self) -> RunState:
        """Run every agent not already done: write spec.yaml and a first run.json, start agents as their
        inputs are ready (within the concurrency, throttle and budget), and end with the run's status
        in the state and in run.json. Cancelled from outside, it stops cleanly first (in-flight agents
        end `cancelled`, the folder stays resumable), then lets the cancellation through."""
        if (found := tracer()) is not None:  # OpenTelemetry is configured: spans from the events and attempts
            tracing = RunTracing(found, self.state)
            self.listeners.append(tracing.on_event)
            self.calls.attempt_span = tracing.attempt
        self.folder.write(SPEC, self.spec.to_yaml())
        self._snapshot()
        try:
            await self._schedule()
        except BaseException as exc:  # cancelled from outside, or a bug: stop cleanly, then let it propagate
            self.stop("cancelled" if isinstance(exc, asyncio.CancelledError) else f"stopped by an error: {exc!r}")
            await asyncio.gather(*self._running, return_exceptions=True)
            self._finish_run()
            raise
        self._finish_run()
        return self.state

    async def _schedule(self) -> None:
        """Start what may start, then wait until nothing runs. The bookkeeping after an agent runs in
        that agent's own last step (`_settle`) rather than in a loop the agent wakes: the next agent then
        starts one turn of the event loop after a call returns, as with a bare semaphore, instead of
        three (at 100 calls in flight a turn takes milliseconds, and a slot left idle is time lost)."""
        self._ready = deque(p for p in self.plans.values() if p.worker)
        self._waiting = {p.key: len(p.inputs) for p in self.plans.values() if p.inputs}
        self._start_ready()
        await self._idle.wait()
        if self._bug is not None:
            raise self._bug  # not an agent failure (those are recorded): a bug, so be loud

    def _start_ready(self) -> None:
        wave_open = self.spec.schedule == "pool" or not self._running
        while (self._ready and wave_open and not self._stopping and self._may_start(self._ready[0])
               and not self._budget_reached()):
            plan = self._ready.popleft()
            task = asyncio.create_task(self._run_and_settle(plan), name=plan.key)
            task.add_done_callback(self._settle)  # settles a task that was cancelled or raised
            self._running[task] = plan
            self._slots += self._takes_slot(plan)
        if not self._running:
            self._idle.set()

    async def _run_and_settle(self, plan: AgentPlan) -> None:
        await self._run_agent(plan)
        if (task := asyncio.current_task()) is not None:
            self._settle(task)

    def _settle(self, task: asyncio.Task[None]) -> None:
        """Once per agent: count it off its reader (which may now be ready), start what may start."""
        plan = self._running.pop(task, None)
        if plan is None:
            return  # settled already, by its own last step
        self._slots -= self._takes_slot(plan)
        try:
            if task.done() and not task.cancelled() and (error := task.exception()) is not None:
                raise error
            if plan.parent:
                self._waiting[plan.parent] -= 1
                if not self._waiting[plan.parent]:
                    self._ready.appendleft(self.plans[plan.parent])
            self._maybe_snapshot()
            self._start_ready()
        except Exception as exc:
            self._bug = self._bug or exc
            self._idle.set()

    def _budget_reached(self) -> bool:
        """True once what was spent, plus what the agents in flight will likely cost (the average so far),
        reaches `budget_usd`; the run then starts nothing new and lets the agents in flight finish."""
        budget = self.spec.budget_usd
        if budget is None:
            return False
        spent = self.state.cost_usd  # the whole run's, earlier sessions of a resumed run included
        likely = spent + len(self._running) * self.ledger.average()
        if likely < budget:
            return False
        self._stopping = (f"the budget of {dollars(budget)} was reached ({dollars(spent)} spent, "
                          f"{len(self._running)} agents still finishing); raise budget_usd and resume to go on")
        return True

    def _takes_slot(self, plan: AgentPlan) -> bool:
        """A batch agent takes none of the `concurrency` slots, so one batch holds every ready agent
        rather than `concurrency` of them."""
        return plan.role not in self._batch_roles

    def _may_start(self, plan: AgentPlan) -> bool:
        if self.spec.budget_usd is not None and not self.ledger.priced:  # no cost known yet to project from:
            return len(self._running) < self.concurrency  # do not send a whole batch on an unknown price
        return not self._takes_slot(plan) or self._slots < self.concurrency

    async def _run_agent(self, plan: AgentPlan) -> None:
        """The agent's request, from its inputs; skipped when a resume proves its output is kept, else
        handed to its attempts (`attempts`), which end it with its one `AgentFinished`."""
        spent: list[Completion] = []
        try:
            request = self._request(plan)
            if request is None:
                return
            digest = input_hash(request, self.provider.identity)
            if await self._kept(plan, request, digest):
                old = self.state.agents[plan.key]
                self._emit(AgentFinished(agent=plan.key, at=self.clock(), status="skipped", usage=old.usage,
                                         cost_usd=old.cost_usd))
                return
            await self.calls.run(plan, request, digest, spent)
        except OSError as exc:  # the run folder could not be read or written (disk full, permissions)
            self._fail(plan, file_error(exc, self.folder.path))
        except asyncio.CancelledError as exc:  # a tool loop cut off here leaves what its turns cost on `exc`
            self.calls.finish(plan.key, "cancelled", self._stopping, [*spent, *spent_on(exc)])
            raise

    async def _kept(self, plan: AgentPlan, request: AgentRequest, digest: str) -> bool:
        """Whether the output an earlier session left is provably the answer to this request: its record is
        finished, for these inputs, and the file is the one recorded (its digest), not an older answer a
        killed run left in place or a file cut short by a power cut. Records from before outputs carried a
        digest can only be checked for the file's presence."""
        status, old_hash, recorded = self.prior.get(plan.key, ("", "", ""))
        if status not in KEPT or old_hash != digest or not self._output_whole(plan, request):
            return False
        if not recorded:
            return True
        try:
            text = await self.folder.read_output(plan.path)
        except (FileNotFoundError, UnicodeDecodeError):
            return False
        if output_digest(text) != recorded:
            return False
        if plan.parent and plan.role != "coordinator":  # its reader reads the file, not a summary
            self._checked[plan.key] = text
        return True

    def _output_whole(self, plan: AgentPlan, request: AgentRequest) -> bool:
        """An agent's output is there: its file, and its JSON too where its role declares an `output`."""
        return self.folder.exists(plan.path) and (request.output is None
                                                  or self.folder.exists(answer_path(plan.path)))

    def _fail(self, plan: AgentPlan, error: str) -> None:
        self.calls.finish(plan.key, "failed", error)

    def _request(self, plan: AgentPlan) -> AgentRequest | None:
        inputs = tuple(self._input(key) for key in plan.inputs)
        if inputs and all(r.missing for r in inputs):
            where = plan.domain.name if plan.role == "coordinator" else plan.path
            self._fail(plan, f"all {len(inputs)} {plan.reads} of {where} failed; nothing to synthesise")
            return None
        request = render_request(self.spec, self.prompts, plan, inputs)
        if not request.tools:
            return request
        functions = {name: self.tools[name] for name in request.tools if name in self.tools}
        return dataclasses.replace(request, tool_functions=functions, run_folder=str(self.folder.path))

    def _input(self, key: str) -> WorkerResult:
        """One result as its reader gets it: a domain coordinator's summary (for the run-level tree), any
        other agent's output (as a resume's check read it, or from its file); cut to its share of the
        reader's window when longer (see `tree`)."""
        agent = self.state.agents[key]
        if agent.status not in KEPT:
            return WorkerResult(key, agent.path, None, agent.error or agent.status)
        text = agent.summary if agent.role == "coordinator" else self._checked.pop(key, None)
        if text is None:
            text = self.folder.read_text(agent.path)
        quoted = cut_to_share(text, self.plans[key].share, agent.path)
        return WorkerResult(key, agent.path, quoted, truncated=agent.truncated or quoted is not text)

    def _emit(self, event: Event) -> None:
        self.state.apply(event)
        self.folder.record(event)
        for listener in self.listeners:
            listener(event, self.state)

    def _maybe_snapshot(self) -> None:
        if self.clock() - self._last_snapshot >= self._snapshot_every:
            self._snapshot()

    def _snapshot(self) -> None:
        started = time.perf_counter()
        self.folder.snapshot(self.state)
        # Keep snapshots under ~2% of the run's time, however large the manifest grows.
        self._snapshot_every = max(self._snapshot_every, 50 * (time.perf_counter() - started))
        self._last_snapshot = self.clock()

    def _end_unstarted(self) -> None:
        """Agents a stopped run never reached end too, saying why, and a resume runs them. One that a
        resumed run had not yet reached was never set back to pending (see `initial_state`): it keeps its
        earlier record, and the next resume checks its inputs and output again before trusting it."""
        for agent in [a for a in self.state.agents.values() if a.status == "pending"]:
            self.calls.finish(agent.agent, "cancelled", f"not started: {self._stopping}")

    def _finish_run(self) -> None:
        if self._stopping:
            self._end_unstarted()
        counts = self.state.counts
        status: RunStatus
        if self._stopping:
            status, reason = "cancelled", self._stopping
        elif counts["failed"]:
            status, reason = "failed", f"{counts['failed']} of {self.state.total} agents failed"
        else:
            status, reason = "done", ""
        # The finished views and run.json link no page that is gone.
        gone = bool(self.state.dashboard) and not self.executor.dashboard_lasts
        try:
            self._emit(RunFinished(at=self.clock(), status=status, reason=reason, dashboard_gone=gone))
            self._snapshot()
        finally:  # the journal's descriptor (or a URL store's writer threads) must not outlive the run
            self.folder.close()
