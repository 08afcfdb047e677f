"""`om.plan` and `--dry-run`: what a spec would run, drawn as its tree, with the estimator's figures.

Nothing is called or written. The tree is the one the engine would run (`engine.tree`), and the
figures come from the one estimator (`engine.estimate`, whose assumptions the text repeats): tokens
and dollars per level, the most inputs any context receives, and the largest prompt against its window.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .engine.estimate import CHARS_PER_TOKEN, PER_INPUT, Estimate, LevelEstimate, levels_of, summary_tokens, tokens
from .engine.planning import AgentPlan, render_request
from .engine.tree import bare_prompt_tokens, plan_agents, wide_run_warning
from .pricing import dollars
from .providers.base import WorkerResult
from .spec.load import load_spec
from .spec.model import ROLES, RoleName, Spec
from .spec.prompts import Prompts
from .tools.catalog import ToolsArg, resolve_tools

SpecSource = Any  # str | Path | Mapping | Spec, as `om.run` takes
_PLACEHOLDER = "(result)"


@dataclass(frozen=True, slots=True)
class Plan:
    """What a spec would run, without running it: for `--dry-run` and for checking a spec by eye."""

    spec: Spec
    plans: tuple[AgentPlan, ...]
    estimate: Estimate
    worker_prompt: tuple[str, str]  # (system, user) of the first worker
    coordinator_prompt: tuple[str, str]  # of the first coordinator, with placeholder results
    warning: str = ""  # e.g. more domains than fan_in and no run-level coordinator

    @property
    def agents(self) -> int:
        return len(self.plans)

    @property
    def input_tokens(self) -> int:
        return self.estimate.input_tokens

    @property
    def max_output_tokens(self) -> int:
        """Output tokens if every agent writes `max_tokens` (the ceiling; see `estimate` for the assumption)."""
        return sum(self.spec.settings(p.role).max_tokens for p in self.plans)

    @property
    def levels(self) -> tuple[LevelEstimate, ...]:
        return self.estimate.levels

    @property
    def max_inputs(self) -> int:
        """The most results any one context receives."""
        return max((level.max_inputs for level in self.levels), default=0)

    def text(self) -> str:
        """The tree and its estimate as plain text (what `--dry-run` prints)."""
        return "\n".join([*_summary_lines(self), *_budget_lines(self), "", *_level_table(self), "",
                          *_domain_lines(self), "", f"Assumptions: {self.estimate.assumption}."])

    def _repr_markdown_(self) -> str:
        return (
            f"```text\n{self.text()}\n```\n\n"
            f"**First worker's prompt**\n\n```text\n{self.worker_prompt[0]}\n\n{self.worker_prompt[1]}\n```\n\n"
            f"**First coordinator's prompt** (results stand in as placeholders)\n\n"
            f"```text\n{self.coordinator_prompt[0]}\n\n{self.coordinator_prompt[1]}\n```\n"
        )

    def __repr__(self) -> str:
        return self.text()


def plan(spec: SpecSource, variables: Mapping[str, Any] | None = None, tools: ToolsArg | None = None, *,
         output_tokens: int | None = None) -> Plan:
    """Validate a spec (and the tools it names), plan its tree and estimate it; nothing is called or
    written. `output_tokens`: size every answer at this average instead of at its `max_tokens`."""
    loaded = load_spec(spec, variables)
    resolve_tools(loaded, tools, variables)
    prompts = Prompts(loaded.templates)
    prompts.check()
    plans = plan_agents(loaded, prompts)
    rows, samples = _estimate_rows(loaded, prompts, plans, output_tokens)
    sized = ("its max_tokens" if output_tokens is None else
             f"{output_tokens:,} tokens (or its max_tokens if less)")
    assumption = (f"{CHARS_PER_TOKEN} characters a token; every agent writes {sized}; summaries at 4/3 of "
                  "summary_words; no prompt caching or batch discount")
    estimate = Estimate(tuple(levels_of(rows)), assumption)
    return Plan(loaded, tuple(plans), estimate, samples["worker"], samples["coordinator"], wide_run_warning(loaded))


def _estimate_rows(spec: Spec, prompts: Prompts, plans: list[AgentPlan], average: int | None
                   ) -> tuple[list[tuple[int, str, str, int, int, int]], dict[str, tuple[str, str]]]:
    """One (level, role, model, prompt, output, inputs) row per agent, and the first prompt of each role.
    Workers' prompts are rendered (their task text counts); readers are their bare prompt plus their
    inputs at the estimated size, so 10,000 agents take a fraction of a second."""
    ceilings = {role: spec.settings(role).max_tokens for role in ROLES}

    def output_of(role: RoleName) -> int:
        return ceilings[role] if average is None else min(average, ceilings[role])

    by_key = {p.key: p for p in plans}
    bare: dict[tuple[str, str], int] = {}
    samples: dict[str, tuple[str, str]] = {}
    rows: list[tuple[int, str, str, int, int, int]] = []
    for p in plans:
        model = (p.settings or spec.settings(p.role)).model
        if p.worker:
            request = render_request(spec, prompts, p, ())
            prompt = tokens(request.system + request.prompt)
            samples.setdefault("worker", (request.system, request.prompt))
        else:
            if (p.domain.name, p.role) not in bare:
                bare[p.domain.name, p.role] = bare_prompt_tokens(spec, prompts, p.role, p.domain)
            sizes = [summary_tokens(spec.summary_words) if by_key[k].role == "coordinator"
                     else output_of(by_key[k].role) for k in p.inputs]
            prompt = bare[p.domain.name, p.role] + sum(sizes) + PER_INPUT * len(sizes)
            if p.role == "coordinator" and "coordinator" not in samples:
                samples["coordinator"] = _sample(spec, prompts, p)
        rows.append((p.level, p.role, model, prompt, output_of(p.role), len(p.inputs)))
    return rows, samples


def _sample(spec: Spec, prompts: Prompts, p: AgentPlan) -> tuple[str, str]:
    inputs = tuple(WorkerResult(k, f"{k}.md", _PLACEHOLDER) for k in p.inputs[:3])
    request = render_request(spec, prompts, p, inputs)
    return request.system, request.prompt


def _summary_lines(plan: Plan) -> list[str]:
    spec, estimate = plan.spec, plan.estimate
    domains = len(spec.domains)
    cost = dollars(estimate.cost_usd) + (f" + {estimate.unpriced} agents unpriced" if estimate.unpriced else "")
    worst = max(plan.levels, key=lambda level: level.max_prompt_tokens / max(1, level.window))
    lines = [
        f"Plan for {spec.name}: {plan.agents:,} agents in {domains:,} domain{'s' if domains != 1 else ''}, "
        f"{len(plan.levels)} levels; fan_in {spec.fan_in}: no context reads more than {plan.max_inputs:,} results.",
        f"Estimate: {estimate.input_tokens:,} input tokens, {estimate.output_tokens:,} output tokens, {cost}. "
        f"Largest prompt ~{worst.max_prompt_tokens:,} tokens (level {worst.level}, window {worst.window:,}).",
    ]
    return lines + ([f"Warning: {plan.warning}."] if plan.warning else [])


def _level_table(plan: Plan) -> list[str]:
    lines = [f"{'level':>5}  {'role':<28} {'agents':>8} {'most inputs':>11} {'input tok':>13} "
             f"{'output tok':>13} {'cost':>11}"]
    for level in plan.levels:
        cost = dollars(level.cost_usd) + ("+?" if level.unpriced else "")
        lines.append(f"{level.level:>5}  {level.role:<28} {level.agents:>8,} {level.max_inputs or '-':>11} "
                     f"{level.input_tokens:>13,} {level.output_tokens:>13,} {cost:>11}")
    return lines


def _domain_lines(plan: Plan, most: int = 12) -> list[str]:
    """Each domain's shape, bottom-up: `pricing: 1,000 workers → 125 → 16 → 2 → coordinator`."""
    tiers: dict[str, list[int]] = {}
    for p in plan.plans:
        if p.role == "subcoordinator":
            tier = int(p.key.rsplit(":", 1)[1].split("-")[0])
            counts = tiers.setdefault(p.domain.name, [])
            counts.extend([0] * (tier - len(counts)))
            counts[tier - 1] += 1
    names = [d.name for d in plan.spec.domains] + (["_run"] if plan.spec.coordinator else [])
    lines = []
    for name in names[:most]:
        below = "domain summaries" if name == "_run" else "workers"
        size = len(plan.spec.domains) if name == "_run" else next(len(d.workers) for d in plan.spec.domains
                                                                  if d.name == name)
        steps = "".join(f" → {n:,}" for n in tiers.get(name, []))
        lines.append(f"  {name}: {size:,} {below if size != 1 else below[:-1]}{steps} → coordinator")
    if len(names) > most:
        lines.append(f"  … and {len(names) - most:,} more domains")
    return ["Tree (results per level, bottom-up):", *lines]


def _budget_lines(plan: Plan) -> list[str]:
    """Whether the spec's `budget_usd` is likely to hold, against this estimate."""
    budget = plan.spec.budget_usd
    if budget is None:
        return []
    cost = plan.estimate.cost_usd
    if cost <= budget:
        return [f"Budget {dollars(budget)}: likely to hold (this estimate is {dollars(cost)})."]
    return [f"Budget {dollars(budget)}: may not hold: this estimate is {dollars(cost)}; the run stops starting "
            f"agents once it has spent {dollars(budget)} (agents in flight finish)."]
