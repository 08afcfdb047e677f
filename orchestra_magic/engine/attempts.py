"""One agent's calls, from its request to its finished event: the attempt loop and its bill.

The scheduler (`scheduler`) decides when an agent runs and what it reads; from there this module owns
the agent: each attempt passes the throttle and the executor, a failure worth retrying waits out its
backoff, and the agent ends as one `AgentFinished` event carrying what all its calls were billed for.
The seam is small: the scheduler hands over a plan, its request and input digest, and gets events back
through `emit`; it reads the `Ledger` for the budget.
"""

from __future__ import annotations

import dataclasses
import json
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from ..errors import AgentError, BatchEntryError, TransientAgentError, spent_on
from ..pricing import cost_usd
from ..providers.base import AgentRequest, Completion, Provider
from ..runfolder.folder import RunFolder
from ..runfolder.layout import answer_path
from ..spec.model import Spec
from ..spec.prompts import extract_summary, worker_note
from ..state.events import AgentFinished, AgentRetrying, AgentStarted, Event, Status
from ..state.run import AgentState
from ..state.usage import NO_USAGE
from .estimate import CHARS_PER_TOKEN
from .executors import Executor
from .planning import AgentPlan, output_digest
from .retry import RetryPolicy
from .throttle import Throttle
from .tracing import UNTRACED
from .typed import answer_text, summary_source, typed_answer


class Ledger:
    """What the agents were billed for. An agent's bill covers every call it made: this session's
    attempts (whose cost also feeds the budget's projection: `spent`, over `priced` agents), plus what
    earlier sessions of a resumed run recorded for it, so running an agent again never makes money
    already spent disappear."""

    def __init__(self, agents: Mapping[str, AgentState]) -> None:
        self._earlier = {key: (a.usage, a.cost_usd) for key, a in agents.items()
                         if a.usage.input_tokens or a.usage.output_tokens}
        self.spent, self.priced = 0.0, 0  # what this session's answers cost, and how many were priced

    def bill(self, key: str, parts: Sequence[Completion]) -> dict[str, Any]:
        """`usage` and `cost_usd` of one agent over `parts` (its calls this session), as `AgentFinished`
        takes them."""
        costs = [_cost(part) for part in parts]
        cost = None if not parts or None in costs else sum(c for c in costs if c is not None)
        if cost is not None:
            self.spent, self.priced = self.spent + cost, self.priced + 1
        usage = sum((part.usage for part in parts), NO_USAGE)
        if (earlier := self._earlier.get(key)) is None:
            return {"usage": usage, "cost_usd": cost}
        earlier_usage, earlier_cost = earlier
        if earlier_cost is not None and (cost is not None or not parts):
            cost = earlier_cost + (cost or 0.0)
        return {"usage": usage + earlier_usage, "cost_usd": cost}

    def average(self) -> float:
        """What an agent of this session cost, on average so far (0 before any was priced)."""
        return self.spent / self.priced if self.priced else 0.0


@dataclasses.dataclass(kw_only=True)
class AgentCalls:
    """Runs one agent's attempts and ends it with one event (`run`); `finish` ends one that never called."""

    spec: Spec
    provider: Provider
    executor: Executor
    folder: RunFolder
    throttle: Throttle
    retry: RetryPolicy
    ledger: Ledger
    emit: Callable[[Event], None]
    clock: Callable[[], float]
    sleep: Callable[[float], Awaitable[None]]
    batch_roles: frozenset[str]  # agents of these roles wait on a batch, not an open connection
    rng: random.Random = dataclasses.field(default_factory=random.Random)
    attempt_span: Callable[[str, int], AbstractContextManager[Any]] = lambda agent, attempt: UNTRACED

    async def run(self, plan: AgentPlan, request: AgentRequest, digest: str, spent: list[Completion]) -> None:
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
                return self.finish(plan.key, "failed", str(exc), [*spent, *spent_on(exc)])
            except Exception as exc:  # a python-provider function raised: the agent fails, the run goes on
                return self.finish(plan.key, "failed", f"{type(exc).__name__}: {exc}", spent)
            else:
                return await self._succeed(plan, completion, digest, spent, answer)
            tries = f"{attempt} attempt{'s' if attempt > 1 else ''}"
            if too_long := self.retry.too_long(retry_after):
                return self.finish(plan.key, "failed", f"gave up after {tries}: {too_long}. Last error: {error}", spent)
            if failures >= self.retry.attempts or refusals > self.retry.rate_limit_retries:
                return self.finish(plan.key, "failed", f"gave up after {tries}; last error: {error}", spent)
            delay = self.retry.delay(attempt, retry_after, self.rng)
            self.emit(AgentRetrying(agent=plan.key, at=self.clock(), attempt=attempt, error=error, delay=delay,
                                    rate_limited=refused))
            await self.sleep(delay)

    async def _attempt(self, plan: AgentPlan, request: AgentRequest, attempt: int) -> Completion:
        """One call. A Messages call passes the throttle (which holds it back while the API is limiting
        us; it also caps Messages retries of batch agents, which hold no slot) and gets the spec's
        `timeout`. A batch attempt gets neither: it is no open connection, and though the API may take
        hours, it ends every batch within 24 hours (an unanswered entry comes back expired and is
        retried) and each of the batch's HTTP calls has the client's own timeout."""
        if request.mode == "batch" and plan.role in self.batch_roles:
            self.emit(AgentStarted(agent=plan.key, at=self.clock(), attempt=attempt))
            with self.attempt_span(plan.key, attempt):  # here, not on a cluster: waiting needs no worker
                return await self.provider.complete(request)
        # About 4 characters a token: enough for pacing on the input-token bucket.
        token = await self.throttle.acquire((len(request.system) + len(request.prompt)) // 4)
        try:
            self.emit(AgentStarted(agent=plan.key, at=self.clock(), attempt=attempt))
            with self.attempt_span(plan.key, attempt):
                completion = await self.executor.complete(request, run_id=self.folder.run_id, attempt=attempt,
                                                          timeout=self.spec.timeout)
        except TransientAgentError as exc:
            self.throttle.release(token, ok=False, rate_limited=exc.rate_limited, retry_after=exc.retry_after)
            raise
        except BaseException:
            self.throttle.release(token, ok=False)
            raise
        used = completion.usage
        self.throttle.release(token, ok=True, rate_limit=completion.rate_limit,
                              used=(used.prompt_tokens, used.output_tokens))
        return completion

    async def _succeed(self, plan: AgentPlan, completion: Completion, digest: str, spent: list[Completion],
                       answer: dict[str, Any] | None = None) -> None:
        """Journal first, then the files: if the process dies in between, a file is missing (or is an older
        answer, whose digest is not the one recorded) and a resume redoes the agent; an output on disk is
        therefore always recorded, and never paid for twice. A typed answer's JSON is written before its
        readable `.md`, which is the file a resume looks for and checks: a `.md` with the recorded digest
        means the JSON before it was written too."""
        text = answer_text(completion, answer, coordinator=plan.role == "coordinator")
        summary, cut, note = "", False, ""
        if plan.role == "coordinator":
            summary, cut = extract_summary(summary_source(text, answer), self.spec.summary_words, plan.path)
        else:
            note = worker_note(text)
        over = plan.share > 0 and plan.role != "coordinator" and len(text) > plan.share * CHARS_PER_TOKEN
        done = AgentFinished(
            agent=plan.key, at=self.clock(), status="done", **self.ledger.bill(plan.key, [*spent, completion]),
            input_hash=digest, output_hash=output_digest(text), summary=summary,
            summary_cut=cut, note=note, batch=completion.batch, truncated=completion.truncated or over,
        )
        self.emit(done)
        try:
            if answer is not None:
                await self.folder.write_output(answer_path(plan.path), json.dumps(answer, ensure_ascii=False) + "\n")
            await self.folder.write_output(plan.path, text)
        except OSError as exc:  # the answer was paid for: the failure keeps its tokens and cost
            self.emit(dataclasses.replace(done, at=self.clock(), status="failed", input_hash="", output_hash="",
                                          summary="", error=file_error(exc, self.folder.path)))

    def finish(self, key: str, status: Status, error: str, spent: Sequence[Completion] = ()) -> None:
        """End an agent that did not succeed (failed, cancelled, never started), billed for `spent`."""
        self.emit(AgentFinished(agent=key, at=self.clock(), status=status, error=error,
                                **self.ledger.bill(key, spent)))


def file_error(exc: OSError, folder: object) -> str:
    return f"file error: {exc.strerror or exc} ({exc.filename or folder})"


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
