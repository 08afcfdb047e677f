"""What happens in a run, as small frozen events, and the one reducer that turns them into run state.

The engine only emits events; the manifest on disk, the CLI progress and the notebook widget only read
the `RunState` this reducer keeps. Events are also the journal format: replaying a run folder's journal
over its last snapshot rebuilds exactly the state the engine had.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Literal, get_args, get_type_hints

from ..pricing import dollars
from ..redaction import safe_text

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
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float | None = None  # None: no price is known for the model (or no model: python provider)
    error: str = ""
    input_hash: str = ""
    output_hash: str = ""  # `output_digest` of the file written for this answer: a resume trusts no other file
    summary: str = ""  # coordinators: the short summary the parent keeps
    summary_cut: bool = False  # the summary was over the limit and was cut
    note: str = ""  # workers: their closing "what was found" line
    batch: bool = False  # answered through a message batch (billed at half price)
    tool_calls: int = 0  # Python tool calls (see `tools`)
    server_tool_calls: int = 0  # web searches, fetches and code runs done by the API
    truncated: bool = False  # done, but the output is cut off (see `AgentState.truncated`)

    def __post_init__(self) -> None:
        if self.error:  # most events have none: keep their making cheap
            _keep_safe(self, "error", self.error)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunFinished:
    at: float
    status: RunStatus
    reason: str = ""

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


def _unpriced(cost: float | None, input_tokens: int) -> int:
    return int(cost is None and input_tokens > 0)


def event_to_dict(event: Event) -> dict[str, Any]:
    return {"event": type(event).__name__, **_fields(event)}


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
    if isinstance(value, str):
        return str in allowed or value in allowed
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, int):
        return int in allowed or float in allowed
    return type(value) in allowed


_FIELD_TYPES = {kind: {name: _allowed(hint) for name, hint in get_type_hints(kind).items()}
                for kind in _EVENT_TYPES.values()}


@dataclass(slots=True)
class AgentState:
    """One agent's row in the manifest. `path` is relative to the run folder."""

    agent: str
    role: Role
    domain: str
    path: str
    status: Status = "pending"
    attempts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    error: str = ""
    input_hash: str = ""
    output_hash: str = ""
    summary: str = ""
    summary_cut: bool = False
    note: str = ""
    batch: bool = False  # its answer came through a message batch
    tool_calls: int = 0
    server_tool_calls: int = 0
    # Done, but its output is not whole: the model stopped at `max_tokens` (or the context window), or an
    # output was cut to fit where it goes (its share of its reader's window). Kept `done` (it was paid for
    # and may be enough), never read as whole.
    truncated: bool = False
    busy_seconds: float = 0.0  # its attempts' own time, over every session of the folder (not the waits)
    attempt_at: float | None = None  # when the attempt under way started; None between attempts
    retries: list[list[float]] = field(default_factory=list)  # [at, delay, rate_limited 0/1] per retry
    level: int = 0  # 0 for workers; a reader is one above the highest of its inputs
    parent: str = ""  # the agent that reads this one's output ("" for the top of the tree)

    @property
    def seconds(self) -> float | None:
        """Time its attempts took, summed over every session (a resume adds to it; backoff waits and time
        spent stopped do not count). None until an attempt ended."""
        if self.busy_seconds:
            return round(self.busy_seconds, 3)
        if self.started_at is None or self.finished_at is None:
            return None
        return round(self.finished_at - self.started_at, 3)  # a folder written before attempts were timed

    def end_attempt(self, at: float) -> None:
        if self.attempt_at is not None:
            self.busy_seconds += max(0.0, at - self.attempt_at)
            self.attempt_at = None


def agent_row(agent: AgentState) -> dict[str, Any]:
    """One agent's row in run.json."""
    return _fields(agent)


@dataclass(slots=True)
class RunState:
    """Everything known about a run; figures the views show are derived here, once."""

    run_id: str
    name: str
    provider: str
    started_at: float
    agents: dict[str, AgentState]
    status: RunStatus = "running"
    finished_at: float | None = None
    reason: str = ""
    counts: Counter[str] = field(default_factory=Counter)
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0  # what the agents with a known price cost; see `unpriced`
    unpriced: int = 0  # finished agents that reported tokens for a model with no known price
    rate_limited: int = 0  # 429/529 refusals seen while this process ran the run (not kept on disk)
    truncated: int = 0  # agents whose output is cut off (`AgentState.truncated`)
    executor: str = "local"  # where the agents run, in words ("dask (tcp://…, 2 workers, 8 threads)")
    dashboard: str = ""  # the executor's dashboard, when it has one (Dask's)
    # Records of agents an earlier spec of this run folder had and the current one does not, as they were
    # last recorded; kept in run.json under "removed" (see docs/reliability.md), never counted or run.
    removed: dict[str, AgentState] = field(default_factory=dict)
    damage: str = ""  # what reading the folder had to skip (damaged journal lines), in one line; not kept
    first_started_at: float | None = None  # when the folder's first session started (None: this is it)
    resumes: int = 0  # sessions after the first
    earlier_seconds: float = 0.0  # how long the earlier sessions ran, together
    # Statuses per (domain, role), kept by the reducer so that views count nothing themselves.
    tally: dict[tuple[str, str], Counter[str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.counts = Counter(a.status for a in self.agents.values())
        self.tally = {}
        for a in self.agents.values():
            self.tally.setdefault((a.domain, a.role), Counter())[a.status] += 1
        self.input_tokens = sum(a.input_tokens for a in self.agents.values())
        self.output_tokens = sum(a.output_tokens for a in self.agents.values())
        self.cost_usd = sum(a.cost_usd or 0.0 for a in self.agents.values())
        self.unpriced = sum(1 for a in self.agents.values() if _unpriced(a.cost_usd, a.input_tokens))
        self.truncated = sum(a.truncated for a in self.agents.values())

    def apply(self, event: Event) -> None:
        """The reducer: O(1) per event, so progress stays cheap at 10,000 agents."""
        if isinstance(event, RunFinished):
            self.status, self.finished_at, self.reason = event.status, event.at, event.reason
            return
        agent = self.agents[event.agent]
        if isinstance(event, AgentStarted):
            self._set_status(agent, "running")
            agent.attempts = event.attempt
            if agent.started_at is None or event.attempt == 1:
                agent.started_at = event.at
            agent.finished_at, agent.error, agent.attempt_at = None, "", event.at
        elif isinstance(event, AgentRetrying):
            agent.error = event.error
            agent.end_attempt(event.at)
            agent.retries.append([event.at, event.delay, float(event.rate_limited)])
            self.rate_limited += event.rate_limited
        else:
            self._finish(agent, event)

    def _finish(self, agent: AgentState, event: AgentFinished) -> None:
        self._set_status(agent, event.status)
        agent.end_attempt(event.at)
        self.input_tokens += event.input_tokens - agent.input_tokens
        self.output_tokens += event.output_tokens - agent.output_tokens
        self.cost_usd += (event.cost_usd or 0.0) - (agent.cost_usd or 0.0)
        self.unpriced += _unpriced(event.cost_usd, event.input_tokens) - _unpriced(agent.cost_usd, agent.input_tokens)
        agent.input_tokens, agent.output_tokens = event.input_tokens, event.output_tokens
        agent.cost_usd = event.cost_usd
        agent.cache_write_tokens, agent.cache_read_tokens = event.cache_write_tokens, event.cache_read_tokens
        agent.finished_at, agent.error = event.at, event.error
        if event.status != "skipped":  # a skipped agent keeps what its earlier run recorded
            agent.input_hash, agent.output_hash, agent.summary = event.input_hash, event.output_hash, event.summary
            agent.summary_cut, agent.note = event.summary_cut, event.note
            agent.batch = event.batch
            agent.tool_calls, agent.server_tool_calls = event.tool_calls, event.server_tool_calls
            self.truncated += event.truncated - agent.truncated
            agent.truncated = event.truncated

    def _set_status(self, agent: AgentState, status: Status) -> None:
        self.counts[agent.status] -= 1
        self.counts[status] += 1
        tally = self.tally[(agent.domain, agent.role)]
        tally[agent.status] -= 1
        tally[status] += 1
        agent.status = status

    def cut_off(self) -> None:
        """A run on record as running whose process is gone (killed, or its machine went down): with every
        agent finished it ended as a finished run would; otherwise it is cancelled, and says why."""
        if self.finished < self.total:
            self.status = "cancelled"
            self.reason = ("cut off: the process running it stopped before the end (killed, or its machine "
                           "went down); resume it to go on")
        else:
            self.status = "failed" if self.counts["failed"] else "cancelled" if self.counts["cancelled"] else "done"

    def role_counts(self, role: str) -> Counter[str]:
        """Statuses of one role's agents over all domains."""
        total: Counter[str] = Counter()
        for (_, kind), counts in self.tally.items():
            if kind == role:
                total.update(counts)
        return total

    @property
    def total(self) -> int:
        return len(self.agents)

    @property
    def finished(self) -> int:
        return sum(self.counts[s] for s in FINISHED)

    @property
    def parent_tokens(self) -> int:
        """Tokens that reach the parent: the coordinators' summaries, the domains' and the run-level one
        (about 4 characters a token; sub-coordinators give the parent nothing). Set against
        `output_tokens` (what all agents wrote) this is the method's whole point."""
        return sum(len(a.summary) for a in self.agents.values() if a.role == "coordinator") // 4

    def economy(self) -> str:
        """One phrase for the context economy: what the parent holds against what the agents wrote."""
        if not self.output_tokens:
            return "no token counts reported (yet)"
        if not self.parent_tokens:
            return f"no summaries yet; the agents have written {self.output_tokens:,} tokens"
        ratio = self.output_tokens / max(1, self.parent_tokens)
        return (f"the parent holds ~{self.parent_tokens:,} tokens of summaries for {self.output_tokens:,} "
                f"written by the agents (1:{ratio:,.0f})")

    def cost(self) -> str:
        """The running cost as shown to people ("" while nothing is priced, e.g. python providers);
        agents whose model has no known price are counted, never shown as $0."""
        if not self.cost_usd:
            return f"cost unknown ({self.unpriced} agents unpriced)" if self.unpriced else ""
        spent = dollars(self.cost_usd)
        return f"{spent} + {self.unpriced} unpriced" if self.unpriced else spent

    def waits(self) -> str:
        """The rate-limit refusals waited out so far, in words ("" while there were none)."""
        n = self.rate_limited
        return f"{n} rate-limit wait{'s' if n != 1 else ''}" if n else ""

    def elapsed(self, now: float) -> float:
        """This session's time (a resumed run's earlier sessions are in `total_seconds`)."""
        return (self.finished_at or now) - self.started_at

    def total_seconds(self, now: float) -> float:
        """How long the run has run, over all its sessions (time between them, stopped, not counted)."""
        return self.earlier_seconds + self.elapsed(now)

    @property
    def first_start(self) -> float:
        return self.first_started_at or self.started_at

    def last_activity(self) -> float:
        """When this session was last seen doing something: its end, else its latest agent event."""
        if self.finished_at is not None:
            return self.finished_at
        times = [t for a in self.agents.values() for t in (a.finished_at, a.attempt_at) if t is not None]
        return max([self.started_at, *times])

    def to_dict(self) -> dict[str, Any]:
        return {**self.header(), "agents": [agent_row(a) for a in self.agents.values()]}

    def header(self) -> dict[str, Any]:
        """`to_dict` but the agents' rows (run.json is written one row at a time: see `agent_row`)."""
        return {
            "version": 1,
            "run_id": self.run_id,
            "name": self.name,
            "provider": self.provider,
            "status": self.status,
            "reason": self.reason,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "executor": self.executor,
            "dashboard": self.dashboard,
            "removed": [agent_row(a) for a in self.removed.values()],
            "first_started_at": self.first_started_at,
            "resumes": self.resumes,
            "earlier_seconds": self.earlier_seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        agents = {a["agent"]: AgentState(**a) for a in data["agents"]}
        removed = {a["agent"]: AgentState(**a) for a in data.get("removed", ())}  # absent in older folders
        keys = ("run_id", "name", "provider", "started_at", "status", "finished_at", "reason")
        optional = {k: data[k] for k in ("executor", "dashboard", "first_started_at", "resumes", "earlier_seconds")
                    if k in data}  # absent in older folders
        return cls(agents=agents, removed=removed, **{k: data[k] for k in keys}, **optional)
