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
import json
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from ..errors import AgentError, BatchEntryError, TransientAgentError, spent_on
from ..pricing import cost_usd, dollars
from ..providers.base import AgentRequest, Completion, Provider, WorkerResult
from ..runfolder.folder import RunFolder
from ..runfolder.layout import SPEC, answer_path
from ..spec.model import ROLES, Spec
from ..spec.prompts import Prompts, extract_summary, worker_note
from ..state.events import (
    AgentFinished,
    AgentRetrying,
    AgentStarted,
    Event,
    RunFinished,
    RunState,
    RunStatus,
)
from ..tools.catalog import PythonTool
from .estimate import CHARS_PER_TOKEN
from .executors import Executor, LocalExecutor
from .planning import KEPT, AgentPlan, cut_to_share, initial_state, input_hash, output_digest, render_request
from .retry import RetryPolicy
from .throttle import Throttle
from .tracing import UNTRACED, RunTracing, tracer
from .tree import plan_agents
from .typed import answer_text, summary_source, typed_answer

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
        self.state = initial_state(ordered, spec, folder.run_id, provider.identity, clock(), prior)
        # What each agent's earlier record says (status, input hash, output digest): what a skip must match.
        self.prior = {k: (a.status, a.input_hash, a.output_hash) for k, a in self.state.agents.items()}
        # What earlier sessions of a resumed run were billed for, per agent: an agent that runs again adds to it.
        self._earlier = {k: dataclasses.replace(a) for k, a in self.state.agents.items()
                         if a.input_tokens or a.output_tokens}
        self.executor = executor or LocalExecutor(provider)  # where calls run; started by whoever made it
        self.state.executor, self.state.dashboard = self.executor.describe(), self.executor.dashboard_link
        self.rng = random.Random()
        # Wall-clock time stamps the events; the throttle's pauses keep to a monotonic clock and real sleep,
        # unless a clock is given: then with the sleep given too (one that moves that clock, in tests).
        timed = clock is not time.time
        self.throttle = Throttle(self.concurrency, clock=clock if timed else time.monotonic,
                                 sleep=sleep if timed else asyncio.sleep, max_wait=self.retry.max_wait)
        self._stopping = ""
        self._running: dict[asyncio.Task[None], AgentPlan] = {}
        self._ready: deque[AgentPlan] = deque()  # agents that may start, readers at the front
        self._waiting: dict[str, int] = {}  # per reader: inputs not finished yet
        self._idle = asyncio.Event()  # nothing runs and nothing more may start
        self._bug: Exception | None = None  # an error that is not an agent failure, raised by `run`
        self._snapshot_every = snapshot_every
        self._last_snapshot = 0.0
        self._spent, self._priced = 0.0, 0  # what this session's answers cost, and how many were priced
        # Batch mode: agents of these roles wait on a batch, not an open connection (see `_attempt`).
        self._batch_roles = frozenset(role for role in ROLES if provider.batches
                                      and spec.settings(role).mode == "batch" and not spec.settings(role).tools)
        self._slots = 0  # agents in flight holding one of the `concurrency` slots
        self._attempt_span: Callable[[str, int], AbstractContextManager[Any]] = _untraced

    def stop(self, reason: str = "stopped by the user") -> None:
        """Start no new agents and cancel those in flight; `run()` then returns a `cancelled` state."""
        self._stopping = reason
        for task in self._running:
            task.cancel()

    async def run(self) -> RunState:
        if (found := tracer()) is not None:  # OpenTelemetry is configured: spans from the events and attempts
            tracing = RunTracing(found, self.state)
            self.listeners.append(tracing.on_event)
            self._attempt_span = tracing.attempt
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
        likely = spent + len(self._running) * (self._spent / self._priced if self._priced else 0.0)
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
        if self.spec.budget_usd is not None and not self._priced:  # no cost known yet to project from:
            return len(self._running) < self.concurrency  # do not send a whole batch on an unknown price
        return not self._takes_slot(plan) or self._slots < self.concurrency

    async def _run_agent(self, plan: AgentPlan) -> None:
        spent: list[Completion] = []
        try:
            request = self._request(plan)
            if request is None:
                return
            digest = input_hash(request, self.provider.identity)
            if await self._kept(plan, request, digest):
                old = self.state.agents[plan.key]
                self._emit(AgentFinished(agent=plan.key, at=self.clock(), status="skipped",
                                         input_tokens=old.input_tokens, output_tokens=old.output_tokens,
                                         cache_write_tokens=old.cache_write_tokens,
                                         cache_read_tokens=old.cache_read_tokens, cost_usd=old.cost_usd))
                return
            await self._attempts(plan, request, digest, spent)
        except OSError as exc:  # the run folder could not be read or written (disk full, permissions)
            self._fail(plan, _file_error(exc, self.folder.path))
        except asyncio.CancelledError as exc:  # a tool loop cut off here leaves what its turns cost on `exc`
            self._emit(AgentFinished(agent=plan.key, at=self.clock(), status="cancelled", error=self._stopping,
                                     **self._usage(plan.key, [*spent, *spent_on(exc)])))
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

    async def _attempts(self, plan: AgentPlan, request: AgentRequest, digest: str, spent: list[Completion]) -> None:
        """Retry what is worth retrying: other failures up to `attempts` in all, refusals for rate or load
        (which the throttle also answers by slowing the run) up to `rate_limit_retries` more. `spent`
        collects what failed attempts were billed for (a tool loop's turns)."""
        error, attempt, failures, refusals = "", 0, 0, 0
        while True:
            attempt, refused = attempt + 1, False
            try:
                completion = await self._attempt(plan, request, attempt)
                answer = typed_answer(request, completion)
            except BatchEntryError as exc:  # retried at once as a Messages call, not in another batch round
                error, retry_after = str(exc), exc.retry_after
                failures += 1
                request = dataclasses.replace(request, mode="messages")
            except TransientAgentError as exc:
                error, retry_after = str(exc), exc.retry_after
                refused = exc.rate_limited
                refusals += refused
                failures += not refused
                spent += spent_on(exc)
            except TimeoutError as exc:
                error, retry_after = f"no answer within the {self.spec.timeout:g} s timeout", None
                failures += 1
                spent += spent_on(exc)
            except AgentError as exc:
                return self._fail(plan, str(exc), [*spent, *spent_on(exc)])
            except Exception as exc:  # a python-provider function raised: the agent fails, the run goes on
                return self._fail(plan, f"{type(exc).__name__}: {exc}", spent)
            else:
                return await self._succeed(plan, completion, digest, spent, answer)
            tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
            if too_long := self.retry.too_long(retry_after):
                return self._fail(plan, f"gave up after {tries}: {too_long}. Last error: {error}", spent)
            if failures >= self.retry.attempts or refusals > self.retry.rate_limit_retries:
                return self._fail(plan, f"gave up after {tries}; last error: {error}", spent)
            delay = self.retry.delay(attempt, retry_after, self.rng)
            self._emit(AgentRetrying(agent=plan.key, at=self.clock(), attempt=attempt, error=error, delay=delay,
                                     rate_limited=refused))
            await self.sleep(delay)

    async def _attempt(self, plan: AgentPlan, request: AgentRequest, attempt: int) -> Completion:
        """One call. A Messages call passes the throttle (which holds it back while the API is limiting
        us; it also caps Messages retries of batch agents, which hold no slot) and gets the spec's
        `timeout`. A batch attempt gets neither: it is no open connection, and though the API may take
        hours, it ends every batch within 24 hours (an unanswered entry comes back expired and is
        retried) and each of the batch's HTTP calls has the client's own timeout."""
        if request.mode == "batch" and plan.role in self._batch_roles:
            self._emit(AgentStarted(agent=plan.key, at=self.clock(), attempt=attempt))
            with self._attempt_span(plan.key, attempt):  # here, not on a cluster: waiting needs no worker
                return await self.provider.complete(request)
        # About 4 characters a token: enough for pacing on the input-token bucket.
        token = await self.throttle.acquire((len(request.system) + len(request.prompt)) // 4)
        try:
            self._emit(AgentStarted(agent=plan.key, at=self.clock(), attempt=attempt))
            with self._attempt_span(plan.key, attempt):
                completion = await self.executor.complete(request, run_id=self.folder.run_id, attempt=attempt,
                                                          timeout=self.spec.timeout)
        except TransientAgentError as exc:
            self.throttle.release(token, ok=False, rate_limited=exc.rate_limited, retry_after=exc.retry_after)
            raise
        except BaseException:
            self.throttle.release(token, ok=False)
            raise
        prompt = completion.input_tokens + completion.cache_write_tokens + completion.cache_read_tokens
        self.throttle.release(token, ok=True, rate_limit=completion.rate_limit,
                              used=(prompt, completion.output_tokens))
        return completion

    async def _succeed(self, plan: AgentPlan, completion: Completion, digest: str, spent: list[Completion],
                       answer: dict[str, Any] | None = None) -> None:
        """Journal first, then the files: if the process dies in between, a file is missing (or is an older
        answer, whose digest is not the one recorded) and a resume redoes the agent; an output on disk is
        therefore always recorded, and never paid for twice. A typed answer's JSON is written before its
        readable `.md`, which is the file a resume looks for and checks: a `.md` with the recorded digest
        means the JSON before it was written too."""
        text = answer_text(completion, answer, coordinator=plan.role == "coordinator")
        usage = self._usage(plan.key, [*spent, completion])
        summary, cut, note = "", False, ""
        if plan.role == "coordinator":
            summary, cut = extract_summary(summary_source(text, answer), self.spec.summary_words, plan.path)
        else:
            note = worker_note(text)
        over = plan.share > 0 and plan.role != "coordinator" and len(text) > plan.share * CHARS_PER_TOKEN
        done = AgentFinished(
            agent=plan.key, at=self.clock(), status="done", **usage, input_hash=digest,
            output_hash=output_digest(text), summary=summary,
            summary_cut=cut, note=note, batch=completion.batch, truncated=completion.truncated or over,
        )
        self._emit(done)
        try:
            if answer is not None:
                await self.folder.write_output(answer_path(plan.path), json.dumps(answer, ensure_ascii=False) + "\n")
            await self.folder.write_output(plan.path, text)
        except OSError as exc:  # the answer was paid for: the failure keeps its tokens and cost
            self._emit(dataclasses.replace(done, at=self.clock(), status="failed", input_hash="", output_hash="",
                                           summary="", error=_file_error(exc, self.folder.path)))

    def _output_whole(self, plan: AgentPlan, request: AgentRequest) -> bool:
        """An agent's output is there: its file, and its JSON too where its role declares an `output`."""
        return self.folder.exists(plan.path) and (request.output is None
                                                  or self.folder.exists(answer_path(plan.path)))

    def _fail(self, plan: AgentPlan, error: str, spent: Sequence[Completion] = ()) -> None:
        self._emit(AgentFinished(agent=plan.key, at=self.clock(), status="failed", error=error,
                                 **self._usage(plan.key, spent)))

    def _usage(self, key: str, parts: Sequence[Completion]) -> dict[str, Any]:
        """An agent's tokens, cost and tool calls over every call it was billed for: this session's
        attempts (whose cost also feeds the budget's projection), plus what earlier sessions of a resumed
        run recorded for it, so running an agent again never makes money already spent disappear."""
        costs = [_cost(part) for part in parts]
        cost = None if not parts or None in costs else sum(c for c in costs if c is not None)
        if cost is not None:
            self._spent, self._priced = self._spent + cost, self._priced + 1
        usage = {name: sum(getattr(part, name) for part in parts) for name in _COUNTED}
        earlier = self._earlier.get(key)
        if earlier is None:
            return {**usage, "cost_usd": cost}
        usage = {name: count + getattr(earlier, name) for name, count in usage.items()}
        if earlier.cost_usd is not None and (cost is not None or not parts):
            cost = earlier.cost_usd + (cost or 0.0)
        return {**usage, "cost_usd": cost}

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
            self._emit(AgentFinished(agent=agent.agent, at=self.clock(), status="cancelled",
                                     error=f"not started: {self._stopping}", **self._usage(agent.agent, [])))

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
        if not self.executor.dashboard_lasts:  # the finished views and run.json link no page that is gone
            self.state.dashboard = ""
        try:
            self._emit(RunFinished(at=self.clock(), status=status, reason=reason))
            self._snapshot()
        finally:  # the journal's descriptor (or a URL store's writer threads) must not outlive the run
            self.folder.close()


def _untraced(agent: str, attempt: int) -> AbstractContextManager[Any]:
    return UNTRACED


def _file_error(exc: OSError, folder: object) -> str:
    return f"file error: {exc.strerror or exc} ({exc.filename or folder})"


# What `_usage` adds up over an agent's calls, as `AgentFinished` names it.
_COUNTED = ("input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens", "tool_calls",
            "server_tool_calls")


def _cost(completion: Completion, regional: bool = False) -> float | None:
    """Priced by the model that answered (the API reports it); code providers name none, so cost None.
    A tool loop's calls are priced one by one: a long-prompt rate applies to a request, not to a sum."""
    regional = regional or completion.regional
    if completion.turns:
        costs = [_cost(turn, regional) for turn in completion.turns]
        return None if None in costs else sum(c for c in costs if c is not None)
    if not completion.model:
        return None
    return cost_usd(completion.model, completion.input_tokens, completion.output_tokens,
                    completion.cache_write_tokens, completion.cache_read_tokens, batch=completion.batch,
                    regional=regional)
