"""The reduction tree: no context reads more than `fan_in` results, or more tokens than its window holds.

A domain whose workers would not all fit one coordinator's context gets sub-coordinators: the workers,
in spec order, are cut into consecutive groups, each read by one sub-coordinator (tier 1), whose
results are grouped again (tier 2), and so on until the domain's coordinator can read them all. A
group holds at most the reader's `fan_in` results and at most as many as fit its model's window, with
room for the reader's own prompt and `max_tokens`, each input sized at the `max_tokens` of the level
below (see `estimate` for the assumptions). With a run-level coordinator (the spec's top-level
`coordinator:`) the domains' summaries are reduced the same way into ``coordinator:_run``.

Only the spec decides the tree (never actual outputs), so it is the same on every resume: editing one
worker changes the inputs of its own sub-coordinators and coordinator, and of no sibling branch.
Sub-coordinators are keyed ``subcoordinator:<domain>:<tier>-<n>`` and write
``synthesis/<domain>/<tier>-<n>.md`` (n from 1, four digits, so names sort and never depend on the
group count).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

from ..errors import SpecError
from ..runfolder.layout import RUN_DOMAIN
from ..spec.model import ROLES, Domain, RoleName, Spec
from ..spec.prompts import Prompts
from ..spec.source import format_path
from .estimate import PER_INPUT, summary_tokens, tokens, usable_window
from .planning import AgentPlan, render_request

Reader = Literal["subcoordinator", "coordinator"]
_READS = {"worker": "workers", "subcoordinator": "sub-coordinators", "coordinator": "domain coordinators"}


def run_domain(spec: Spec) -> Domain:
    """The run-level coordinator's domain: its task is the spec's top-level `coordinator:`."""
    return Domain.model_construct(name=RUN_DOMAIN, coordinator=spec.coordinator or "", context="", workers=())


def plan_agents(spec: Spec, prompts: Prompts | None = None) -> list[AgentPlan]:
    """Every agent of the run, workers first (in spec order), then each domain's readers bottom-up, then
    the run-level ones. Raises `SpecError` (naming the key) when a window cannot hold what must be read."""
    return _Tree(spec, prompts or Prompts(spec.templates)).plans()


def bare_prompt_tokens(spec: Spec, prompts: Prompts, role: RoleName, domain: Domain) -> int:
    """Estimated tokens of a reader's prompt before any input is quoted in it."""
    bare = AgentPlan("", role, domain, None, f"synthesis/{domain.name}/0-0000.md", 1, reads="workers")
    request = render_request(spec, prompts, bare, ())
    return tokens(request.system + request.prompt)


def wide_run_warning(spec: Spec) -> str:
    """"" or why the parent would read more summaries than `fan_in` allows (no run-level coordinator)."""
    fan_in = spec.fan_in_of("coordinator")
    if spec.coordinator or len(spec.domains) <= fan_in:
        return ""
    return (f"the parent will read {len(spec.domains)} domain summaries, more than fan_in ({fan_in}); add a "
            "top-level `coordinator:` to reduce them to one run summary (synthesis/_run.md)")


class _Tree:
    def __init__(self, spec: Spec, prompts: Prompts) -> None:
        self.spec, self.prompts = spec, prompts
        self.readers: list[AgentPlan] = []
        self.parent: dict[str, str] = {}
        self.share: dict[str, int] = {}

    def plans(self) -> list[AgentPlan]:
        spec = self.spec
        tops = []
        for domain in spec.domains:
            inputs = [(w.id, 0, "worker") for w in domain.workers]
            tops.append(self._reduce(domain, inputs, spec.settings("worker").max_tokens,
                                     spec.key_of("worker", "max_tokens")))
        if spec.coordinator:
            inputs = [(key, level, "coordinator") for key, level, _ in tops]
            self._reduce(run_domain(spec), inputs, summary_tokens(spec.summary_words), ("summary_words",))
        parent, share = self.parent, self.share
        settings = {role: spec.settings(role) for role in ROLES}
        workers = [AgentPlan(w.id, "worker", d, w, f"workers/{w.id}.md", 0, parent[w.id], share=share[w.id],
                             settings=settings["worker"]) for d, w in spec.workers]
        return workers + [dataclasses.replace(r, parent=parent.get(r.key, ""), share=share.get(r.key, 0),
                                              settings=settings[r.role]) for r in self.readers]

    def _reduce(self, domain: Domain, nodes: list[tuple[str, int, str]], size: int,
                size_key: tuple[str, ...]) -> tuple[str, int, str]:
        """Group `nodes` (key, level, role) tier by tier until the coordinator can read them all; each
        input is at most `size` tokens (the `size_key` of the spec)."""
        top_room, tier = self._room("coordinator", domain), 1
        while len(nodes) > self._capacity("coordinator", top_room, size, size_key, need=1):
            room = self._room("subcoordinator", domain)
            group = self._capacity("subcoordinator", room, size, size_key, need=2)
            nodes = [self._reader("subcoordinator", domain, nodes[at : at + group], room,
                                  f"subcoordinator:{domain.name}:{tier}-{n:04d}",
                                  f"synthesis/{domain.name}/{tier}-{n:04d}.md")
                     for n, at in enumerate(range(0, len(nodes), group), start=1)]
            # From here on the inputs are sub-coordinators' texts, at most their max_tokens each.
            size = self.spec.settings("subcoordinator").max_tokens
            size_key, tier = self.spec.key_of("subcoordinator", "max_tokens"), tier + 1
        return self._reader("coordinator", domain, nodes, top_room, f"coordinator:{domain.name}",
                            f"synthesis/{domain.name}.md")

    def _reader(self, role: RoleName, domain: Domain, inputs: Sequence[tuple[str, int, str]], room: int,
                key: str, path: str) -> tuple[str, int, str]:
        level = 1 + max(level for _, level, _ in inputs)
        plan = AgentPlan(key, role, domain, None, path, level, inputs=tuple(k for k, _, _ in inputs),
                         reads=_READS[inputs[0][2]])
        each = room // len(inputs) - PER_INPUT
        for child, _, _ in inputs:
            self.parent[child], self.share[child] = key, each
        self.readers.append(plan)
        return key, level, role

    def _room(self, role: RoleName, domain: Domain) -> int:
        """Tokens a reader of `role` in `domain` has for its inputs: its usable window less its own
        `max_tokens` and its prompt without inputs."""
        settings = self.spec.settings(role)
        return usable_window(settings.model) - settings.max_tokens - bare_prompt_tokens(self.spec, self.prompts,
                                                                                        role, domain)

    def _capacity(self, role: Reader, room: int, size: int, size_key: tuple[str, ...], need: int) -> int:
        """How many inputs of `size` tokens one reader of `role` takes: its `fan_in`, or fewer where its
        window holds fewer. Fewer than `need` cannot make progress: refused, naming the key."""
        fits = max(0, room) // (size + PER_INPUT)
        if fits >= need:
            return min(self.spec.fan_in_of(role), fits)
        settings = self.spec.settings(role)
        what = "a result" if need == 1 else "two results"
        raise SpecError(
            f"the {role}s' model {settings.model} cannot read {what} of {size:,} tokens (the {size_key[-1]} of "
            f"the level below) in its context window with its own max_tokens ({settings.max_tokens:,}) and "
            f"prompt; lower {size_key[-1]} or the {role}s' max_tokens, or choose a model with a larger window",
            format_path(size_key),
        )
