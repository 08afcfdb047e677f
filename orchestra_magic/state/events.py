"""What happens in a run, as small frozen events, and their form as journal lines.

The engine only emits events; the one reducer (`run.RunState.apply`) turns them into the run state that
the manifest on disk, the CLI progress and the notebook widget read. Events are also the journal format:
replaying a run folder's journal over its last snapshot rebuilds exactly the state the engine had.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, get_args, get_type_hints

from ..redaction import safe_text
from .usage import NO_USAGE, Usage

Status = Literal["pending", "running", "done", "failed", "cancelled", "skipped"]
Role = Literal["worker", "subcoordinator", "coordinator"]
ROLES: tuple[Role, ...] = ("worker", "subcoordinator", "coordinator")
RunStatus = Literal["running", "done", "failed", "cancelled"]
FINISHED: frozenset[str] = frozenset({"done", "failed", "cancelled", "skipped"})


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentStarted:
    agent: str
    at: float
    attempt: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRetrying:
    """An attempt failed in a way worth retrying; the next starts after `delay` seconds."""

    agent: str
    at: float
    attempt: int
    error: str
    delay: float
    rate_limited: bool = False  # refused for rate or load (429, 529): the run is slowing down

    def __post_init__(self) -> None:
        if self.error:  # most events have none: keep their making cheap
            _keep_safe(self, "error", self.error)


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentFinished:
    agent: str
    at: float
    status: Status
    usage: Usage = NO_USAGE  # over every call the agent was billed for (a journal line holds it flat)
    cost_usd: float | None = None  # None: no price is known for the model (or no model: python provider)
    error: str = ""
    input_hash: str = ""
    output_hash: str = ""  # `output_digest` of the file written for this answer: a resume trusts no other file
    summary: str = ""  # coordinators: the short summary the parent keeps
    summary_cut: bool = False  # the summary was over the limit and was cut
    note: str = ""  # workers: their closing "what was found" line
    batch: bool = False  # answered through a message batch (billed at half price)
    truncated: bool = False  # done, but the output is cut off (see `AgentState.truncated`)

    def __post_init__(self) -> None:
        if self.error:  # most events have none: keep their making cheap
            _keep_safe(self, "error", self.error)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished:
    at: float
    status: RunStatus
    reason: str = ""
    dashboard_gone: bool = False  # the executor's dashboard closed with the run: nothing links it any more

    def __post_init__(self) -> None:
        if self.reason:
            _keep_safe(self, "reason", self.reason)


def _keep_safe(event: object, name: str, text: str) -> None:
    """Every text of a run that could hold what an error said passes here on its way to the journal,
    run.json and every view: it is redacted and bounded (see `redaction`) when the event is made."""
    object.__setattr__(event, name, safe_text(text))


Event = AgentStarted | AgentRetrying | AgentFinished | RunFinished
_EVENT_TYPES: dict[str, type[Event]] = {
    t.__name__: t for t in (AgentStarted, AgentRetrying, AgentFinished, RunFinished)
}


def event_to_dict(event: Event) -> dict[str, Any]:
    """An event as a journal line holds it: flat, its usage's counters as fields of their own."""
    data = {"event": type(event).__name__, **_fields(event)}
    if type(event) is AgentFinished:
        data.update(data.pop("usage").as_dict())
    elif type(event) is RunFinished and not event.dashboard_gone:
        del data["dashboard_gone"]  # added later: left out at its default, the line is as older code wrote it
    return data


def _fields(obj: Any) -> dict[str, Any]:
    """A flat dataclass as a dict; `dataclasses.asdict` deep-copies and costs 10x more per event."""
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


def event_from_dict(data: dict[str, Any]) -> Event:
    """An event read back from the journal. Raises `ValueError` naming what is wrong when the line is not
    an event as written (unknown kind, missing or unknown field, a value of the wrong type), so a damaged
    line is skipped whole rather than breaking the reducer later."""
    if not isinstance(data, dict) or data.get("event") not in _EVENT_TYPES:
        raise ValueError("not an event")
    kind = _EVENT_TYPES[data.pop("event")]
    allowed = _FIELD_TYPES[kind]
    if kind is AgentFinished:
        data["usage"] = Usage.take(data)  # written flat: its counters are fields of the line
    for name, value in data.items():
        if name not in allowed:
            raise ValueError(f"unknown field {name!r}")
        if not _fits(value, allowed[name]):
            raise ValueError(f"{name} is {value!r}")
    try:
        return kind(**data)
    except TypeError as exc:  # a required field is missing
        raise ValueError(str(exc)) from None


def _allowed(hint: Any) -> tuple[Any, ...]:
    """The plain types (and literal values) a field's type hint admits."""
    args = get_args(hint)
    if not args:
        return (hint,)
    if all(isinstance(arg, str) for arg in args):  # a Literal of strings
        return args
    return tuple(t for arg in args for t in _allowed(arg))


def _fits(value: Any, allowed: tuple[Any, ...]) -> bool:
    if isinstance(value, Usage):  # read from flat fields: each counter a whole number
        return Usage in allowed and all(type(count) is int for count in value.counts())
    if isinstance(value, str):
        return str in allowed or value in allowed
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, int):
        return int in allowed or float in allowed
    return type(value) in allowed


_FIELD_TYPES = {kind: {name: _allowed(hint) for name, hint in get_type_hints(kind).items()}
                for kind in _EVENT_TYPES.values()}


