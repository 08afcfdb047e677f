"""The spec: domains of workers and their coordinators, validated before anything runs or touches disk.

A spec comes as YAML text, a YAML file, or a dict. Loading it (1) parses the YAML, remembering the line
of every key, (2) expands Jinja2 expressions in its strings with the caller's variables and unrolls
``for_each`` worker entries, (3) validates the result, and (4) gives every worker an id. Any problem
raises one `SpecError` naming the key path and, for YAML, the line; nothing is half-loaded. Steps 1, 2
and 4 live in `source`, step 3 and the checks that need the whole spec in `load`; this module holds
the models, and what each field accepts.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StrictFloat,
    StrictInt,
    StrictStr,
)

from ..state.events import ROLES as ROLES
from ..state.events import Role
from .output import output_schema
from .source import MAX_ID_LENGTH, SAFE_ID

DEFAULT_MODEL = "claude-sonnet-5-5"
DEFAULT_MAX_WAIT = 300.0  # seconds: the longest any one wait (a 429's retry-after, a backoff, a pause) may be
# Names Windows will not create as files, whatever the extension.
_RESERVED = {"con", "prn", "aux", "nul"} | {f"{p}{n}" for p in ("com", "lpt") for n in range(10)}



def check_id(value: str) -> str:
    """Ids and domain names become file names, so only a safe, portable subset is allowed."""
    if not value:
        raise ValueError("must not be empty")
    if not SAFE_ID.fullmatch(value):
        # Name the culprit: a Cyrillic 'а' or a stray control character looks fine when printed.
        bad = next(c for c in value if not SAFE_ID.fullmatch(c))
        what = f"{bad!r} (U+{ord(bad):04X} {unicodedata.name(bad, 'control character')})"
        raise ValueError(f"{value!r} is not a safe name: it contains {what}; "
                         "use only ASCII letters, digits, '-' and '_'")
    if len(value) > MAX_ID_LENGTH:
        raise ValueError(f"{value[:20]!r}… is {len(value)} characters long; the limit is {MAX_ID_LENGTH}")
    if value.lower() in _RESERVED:
        raise ValueError(f"{value!r} is a reserved device name on Windows; choose another")
    return value


def _check_text(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    return value


SafeId = Annotated[StrictStr, AfterValidator(check_id)]
Effort = Literal["low", "medium", "high", "xhigh", "max"]
Mode = Literal["messages", "batch"]  # batch: the Message Batches API, half price, for runs that can wait


def _thinking_value(value: object) -> int | str:
    """Extended thinking: "adaptive" (the model decides; recommended on current models) or a budget."""
    if value == "adaptive" or (type(value) is int and 1024 <= value <= 128_000):
        return value
    raise ValueError(f"thinking takes 'adaptive' or a budget of 1024 to 128000 tokens, got {value!r}")


Thinking = Annotated[int | str, PlainValidator(_thinking_value)]
Text = Annotated[StrictStr, AfterValidator(_check_text)]
# The shape of an answer: a field map, a JSON Schema or a pydantic model, held as one JSON Schema.
OutputSchema = Annotated[dict[str, Any], BeforeValidator(output_schema)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


RowKey = StrictInt | StrictFloat | StrictStr | bool


class Worker(_Model):
    """One narrow task; its full output goes to ``workers/<id>.md``. `key` is the label of the input row a
    ``for_each`` made it from (a DataFrame's index label, else the position), which `run.results` is
    indexed by so it joins back to the input."""

    id: SafeId
    task: Text
    key: RowKey | None = None


class Domain(_Model):
    """A group of workers whose outputs one coordinator reads and synthesises."""

    name: SafeId
    coordinator: Text
    context: StrictStr = ""
    workers: tuple[Worker, ...] = Field(min_length=1)


class Templates(_Model):
    """Paths of the user's own Jinja2 prompt templates, replacing the shipped ones."""

    worker: StrictStr | None = None
    subcoordinator: StrictStr | None = None
    coordinator: StrictStr | None = None


class RoleSettings(_Model):
    """One role's overrides (`roles.worker`, `roles.coordinator`); what is left out comes from the top
    level. The usual choice: a cheap, fast model for the many workers, a stronger one for the few
    coordinators."""

    model: Text | None = None
    max_tokens: StrictInt | None = Field(None, ge=1, le=200_000)
    effort: Effort | None = None
    thinking: Thinking | None = None
    mode: Mode | None = None
    tools: tuple[Text, ...] | None = None
    max_tool_turns: StrictInt | None = Field(None, ge=1, le=100)
    output: OutputSchema | None = None  # the shape of each answer of this role (roles only: no top-level one)


class ReaderSettings(RoleSettings):
    """A role that reads other agents' results (`roles.coordinator`, `roles.subcoordinator`) may also
    set its own `fan_in`: the most results one of its contexts receives."""

    fan_in: StrictInt | None = Field(None, ge=2, le=100_000)


class Roles(_Model):
    worker: RoleSettings = RoleSettings()
    subcoordinator: ReaderSettings = ReaderSettings()  # unset keys come from `coordinator`, then the top
    coordinator: ReaderSettings = ReaderSettings()


RoleName = Role  # the three roles, as the state names them


@dataclass(frozen=True, slots=True)
class AgentSettings:
    """The settings one agent call runs with, after role overrides."""

    model: str
    max_tokens: int
    effort: Effort | None
    thinking: Thinking | None  # "adaptive", a budget in tokens, or None for no extended thinking
    mode: Mode
    tools: tuple[str, ...]  # server tools (web_search, web_fetch, code_execution) or Python tools by name
    max_tool_turns: int  # how many tool-use round trips one agent may take
    output: dict[str, Any] | None = None  # the JSON Schema each answer must fit, if the role declares one


class Spec(_Model):
    """A whole run: settings plus domains. Every worker has an id once loaded."""

    name: SafeId = "run"
    model: Text = DEFAULT_MODEL
    concurrency: StrictInt = Field(8, ge=1, le=1000)
    schedule: Literal["pool", "waves"] = "pool"
    attempts: StrictInt = Field(3, ge=1, le=20)
    timeout: StrictFloat = Field(600.0, gt=0, le=86_400)
    max_wait: StrictFloat = Field(DEFAULT_MAX_WAIT, gt=0, le=86_400)  # cap on every wait; past it the agent fails
    max_tokens: StrictInt = Field(4096, ge=1, le=200_000)
    effort: Effort | None = None
    thinking: Thinking | None = None
    mode: Mode = "messages"
    tools: tuple[Text, ...] = ()
    max_tool_turns: StrictInt = Field(8, ge=1, le=100)
    budget_usd: StrictFloat | None = Field(None, gt=0)
    executor: Literal["local", "dask"] | None = None  # where agents run; unset: local, or dask with a scheduler
    scheduler: Text | None = None  # a Dask scheduler address (tcp://host:8786); implies executor: dask
    cluster_concurrency: StrictInt | None = Field(None, ge=1, le=100_000)  # cap across all runs on the cluster
    roles: Roles = Roles()
    summary_words: StrictInt = Field(150, ge=10, le=2000)
    fan_in: StrictInt = Field(8, ge=2, le=100_000)  # the most agent results that flow into one context
    context: StrictStr = ""
    templates: Templates = Templates()
    coordinator: Text | None = None  # a run-level coordinator's task: it reads the domains' summaries
    domains: tuple[Domain, ...] = Field(min_length=1)

    @property
    def workers(self) -> Iterable[tuple[Domain, Worker]]:
        return ((d, w) for d in self.domains for w in d.workers)

    def settings(self, role: RoleName) -> AgentSettings:
        """A role's settings: its override where it has one, else the top level's. Sub-coordinators
        take the coordinators' overrides for what they leave unset (their `output` is only their own:
        they condense prose for the level above)."""
        own = getattr(self.roles, role)
        fallback = self.roles.coordinator if role == "subcoordinator" else None
        values = {}
        for name in _SETTINGS:
            value = getattr(own, name)
            if value is None and fallback is not None:
                value = getattr(fallback, name)
            values[name] = getattr(self, name) if value is None else value
        return AgentSettings(**values, output=own.output)

    def set_at(self, role: RoleName, key: str) -> RoleName | None:
        """The role whose override sets `key` for `role`, or None when the top level's value applies."""
        chain: tuple[RoleName, ...] = ("subcoordinator", "coordinator") if role == "subcoordinator" else (role,)
        return next((r for r in chain if getattr(getattr(self.roles, r), key, None) is not None), None)

    def key_of(self, role: RoleName, key: str) -> tuple[str, ...]:
        """Where `key` is set for `role` in the spec (`roles.coordinator.max_tokens`, or `max_tokens`)."""
        found = self.set_at(role, key)
        return ("roles", found, key) if found else (key,)

    def fan_in_of(self, role: Literal["subcoordinator", "coordinator"]) -> int:
        """The most results one context of `role` reads: its own `fan_in`, else the top level's."""
        found = self.set_at(role, "fan_in")
        return self.fan_in if found is None else int(getattr(self.roles, found).fan_in)

    def to_yaml(self) -> str:
        dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml is ~10x faster on 10,000 workers
        data = _protect(self.model_dump(mode="json"))
        for domain in data["domains"]:
            for worker in domain["workers"]:
                if worker.get("key") is None:  # only for_each rows have one
                    worker.pop("key", None)
        return yaml.dump(data, Dumper=dumper, sort_keys=False, allow_unicode=True, width=100)


_SETTINGS = ("model", "max_tokens", "effort", "thinking", "mode", "tools", "max_tool_turns")
_ENDRAW = re.compile(r"\{%-?\s*endraw\s*-?%\}")


def _protect(value: Any) -> Any:
    """Wrap already expanded text that still holds Jinja markers in a raw block, so that loading
    `Spec.to_yaml()` again (as `Run.retry_failed` does) gives the same spec instead of expanding twice."""
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value and "{#" not in value:
            return value
        # An `endraw` tag inside the text would close the block early: emit it as a string expression.
        inner = _ENDRAW.sub(lambda m: f"{{% endraw %}}{{{{ {m.group(0)!r} }}}}{{% raw %}}", value)
        return f"{{% raw %}}{inner}{{% endraw %}}"
    if isinstance(value, dict):
        return {k: _protect(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_protect(v) for v in value]
    return value
