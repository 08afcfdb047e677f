"""Planning: one agent's plan, the request it sends, and what its output depends on.

Pure functions of the spec and the prompts (no I/O, no event loop), shared by the engine and by
`om.plan` (a dry run). Which agents there are, and who reads whom, is the reduction tree's (`tree`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from ..errors import RunFolderError
from ..providers.base import AgentRequest, WorkerResult
from ..spec.model import AgentSettings, Domain, Spec, Worker
from ..spec.prompts import Prompts, fence
from ..state.events import Role
from ..state.run import AgentState, RunState
from .estimate import CHARS_PER_TOKEN


@dataclass(frozen=True, slots=True)
class AgentPlan:
    """One agent to run: a worker (keyed by its id), a sub-coordinator (``subcoordinator:<domain>:<tier>-<n>``)
    or a coordinator (``coordinator:<domain>``; the run-level one is ``coordinator:_run``). Worker ids
    cannot contain ':'. `inputs` are the keys of the agents whose results it reads (see `tree`)."""

    key: str
    role: Role
    domain: Domain
    worker: Worker | None  # None for readers
    path: str  # relative to the run folder
    level: int = 0  # 0 for workers; a reader is one above the highest of its inputs
    parent: str = ""  # the agent that reads this one's result
    inputs: tuple[str, ...] = ()
    reads: str = ""  # what its inputs are, in words ("workers", "sub-coordinators", …) for its prompt
    share: int = 0  # tokens of its reader's window its result may take; a longer one is cut (0: no reader)
    settings: AgentSettings | None = None  # its role's, worked out once per role by the tree


def initial_state(plans: list[AgentPlan], spec: Spec, run_id: str, provider: str, now: float,
                  prior: RunState | None, *, executor: str = "local", dashboard: str = "") -> RunState:
    """Fresh pending agents; on resume each keeps its record (hash, tokens, summary). A finished agent's
    record stays `done` (or `skipped`) until this run proves otherwise: run.json is written at once, and a
    resume killed before it reaches an agent must not make the next one forget that agent's output. Only
    what was never finished (pending, running, failed, cancelled) starts again as pending. Records of
    agents the spec no longer has move to `removed`, and come back if a later spec has them again. Each
    agent's place in the tree (`level`, `parent`) is this plan's. A resume carries over the run's first
    start and the time of its earlier sessions. From here on only events change the state."""
    agents: dict[str, AgentState] = {}
    earlier = {**prior.removed, **prior.agents} if prior else {}
    for plan in plans:
        old = earlier.pop(plan.key, None)
        if old is not None and old.path == plan.path:
            status = old.status if old.status in KEPT else "pending"
            agents[plan.key] = dataclasses.replace(old, status=status, attempt_at=None, retries=list(old.retries),
                                                   level=plan.level, parent=plan.parent)
        else:
            agents[plan.key] = AgentState(plan.key, plan.role, plan.domain.name, plan.path, level=plan.level,
                                          parent=plan.parent)
    if prior is None:
        return RunState(run_id=run_id, name=spec.name, provider=provider, started_at=now, agents=agents,
                        removed=earlier, executor=executor, dashboard=dashboard)
    return RunState(run_id=run_id, name=spec.name, provider=provider, started_at=now, agents=agents,
                    removed=earlier, executor=executor, dashboard=dashboard, damage=prior.damage,
                    first_started_at=prior.first_start, resumes=prior.resumes + 1,
                    earlier_seconds=prior.earlier_seconds + max(0.0, prior.last_activity() - prior.started_at))


KEPT = ("done", "skipped")  # statuses whose output a resume may keep, once it has checked it


def check_shares_agents(plans: list[AgentPlan], prior: RunState, where: str) -> None:
    """A resume continues a run: a spec with none of the folder's agents is another run, refused rather
    than silently setting the folder's records aside."""
    if prior.agents and not any(plan.key in prior.agents for plan in plans):
        raise RunFolderError(f"the spec shares no agent with the run in {where} (none of its worker ids or domains "
                             "are there); start a new run instead of resuming this one")


def output_digest(text: str) -> str:
    """What proves a file is the answer its record names: recorded with `done`, checked on resume."""
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def render_request(spec: Spec, prompts: Prompts, plan: AgentPlan, inputs: tuple[WorkerResult, ...]) -> AgentRequest:
    """The request for one agent: its rendered prompt plus the structured task (for code providers)."""
    domain = plan.domain
    base = {"run_name": spec.name, "context": spec.context, "domain": domain.name, "domain_context": domain.context}
    if plan.worker:
        task = plan.worker.task
        system, prompt = prompts.render_worker(
            {**base, "task": task, "worker_id": plan.worker.id, "output_path": plan.path})
    else:
        task = domain.coordinator
        quoted = [{"agent": r.agent, "path": r.path, "missing": r.missing, "error": r.error,
                   "truncated": r.truncated, "text": fence(r.text or "")} for r in inputs]
        context = {**base, "task": task, "results": quoted, "synthesis_path": plan.path, "sources": plan.reads}
        if plan.role == "subcoordinator":
            system, prompt = prompts.render_subcoordinator({**context, "level": plan.level})
        else:
            system, prompt = prompts.render_coordinator({**context, "summary_words": spec.summary_words})
    settings = plan.settings or spec.settings(plan.role)
    return AgentRequest(
        agent=plan.key, role=plan.role, domain=domain.name, task=task, system=system, prompt=prompt,
        model=settings.model, max_tokens=settings.max_tokens, effort=settings.effort,
        thinking=settings.thinking, mode=settings.mode, tools=settings.tools,
        max_tool_turns=settings.max_tool_turns, inputs=inputs, output=settings.output,
    )


def cut_to_share(text: str, share: int, path: str) -> str:
    """A result longer than its share of its reader's window (in tokens, at `CHARS_PER_TOKEN`), cut
    with a visible marker: the reader is told, and the full text stays in its file."""
    limit = share * CHARS_PER_TOKEN
    if share <= 0 or len(text) <= limit:
        return text
    return text[:limit] + f"\n… [cut at ~{share:,} tokens, its share of this context; the full text is in {path}]"


def input_hash(request: AgentRequest, provider: str) -> str:
    """What an agent's output depends on; a resumed run redoes an agent only when this changes."""
    material = [provider, request.model, request.max_tokens, request.effort, request.thinking,
                request.system, request.prompt]
    if request.tools:  # added only when used, so runs without tools keep their hashes
        material += [list(request.tools), request.max_tool_turns]
    if request.output is not None:  # likewise: a typed answer depends on its schema
        material += [request.output]
    return hashlib.sha256(json.dumps(material).encode()).hexdigest()[:32]

