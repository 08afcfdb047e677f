"""The run state and its one reducer: every change to it is an event applied by `RunState.apply`.

The engine emits events (`events`); `apply` folds each into the state in O(1), the run folder journals
it, and the views read the state. Nothing else writes it, so replaying a folder's journal over its last
snapshot rebuilds the state the engine had. Readers on other threads than the engine's (the notebook's
kernel, the terminal's refresh) never read the state the engine is changing: they get a `snapshot`
made on the engine's thread (see `published`).
"""

from __future__ import annotations

import copy
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..pricing import dollars
from .events import FINISHED, AgentFinished, AgentRetrying, AgentStarted, Event, Role, RunFinished, RunStatus, Status
from .usage import NO_USAGE, Usage


def _unpriced(cost: float | None, usage: Usage) -> int:
    return int(cost is None and usage.input_tokens > 0)


@dataclass(slots=True)
class AgentState:
    """One agent's row in the manifest. `path` is relative to the run folder."""

    agent: str
    role: Role
    domain: str
    path: str
    status: Status = "pending"
    attempts: int = 0
    usage: Usage = NO_USAGE  # over every call it was billed for, earlier sessions included
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

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> AgentState:
        """An agent read back from its run.json row (`agent_row`), usage counters flat in it."""
        row = dict(row)
        usage = Usage.take(row)
        return cls(**row, usage=usage)

    def copied(self) -> AgentState:
        """A copy that later events leave alone (its one mutable part, `retries`, copied too)."""
        twin = copy.copy(self)
        twin.retries = [*self.retries]
        return twin


def agent_row(agent: AgentState) -> dict[str, Any]:
    """One agent's row in run.json: its fields, usage counters flat among them."""
    row = {name: getattr(agent, name) for name in _AGENT_FIELDS}
    row.update(row.pop("usage").as_dict())
    return row


_AGENT_FIELDS = tuple(AgentState.__dataclass_fields__)


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
    usage: Usage = NO_USAGE  # all agents' together (derived from them)
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
    # For `snapshot`: what changed since the last one (agents by key; `_version` counts every event).
    _version: int = field(default=0, init=False, repr=False, compare=False)
    _dirty: set[str] = field(default_factory=set, init=False, repr=False, compare=False)
    _last: tuple[int, RunState] | None = field(default=None, init=False, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.counts = Counter(a.status for a in self.agents.values())
        self.tally = {}
        for a in self.agents.values():
            self.tally.setdefault((a.domain, a.role), Counter())[a.status] += 1
        self.usage = sum((a.usage for a in self.agents.values()), Usage())
        self.cost_usd = sum(a.cost_usd or 0.0 for a in self.agents.values())
        self.unpriced = sum(_unpriced(a.cost_usd, a.usage) for a in self.agents.values())
        self.truncated = sum(a.truncated for a in self.agents.values())

    @property
    def input_tokens(self) -> int:
        return self.usage.input_tokens

    @property
    def output_tokens(self) -> int:
        return self.usage.output_tokens

    def apply(self, event: Event) -> None:
        """The reducer: O(1) per event, so progress stays cheap at 10,000 agents."""
        self._version += 1
        if isinstance(event, RunFinished):
            self.status, self.finished_at, self.reason = event.status, event.at, event.reason
            if event.dashboard_gone:
                self.dashboard = ""
            return
        agent = self.agents[event.agent]
        self._dirty.add(event.agent)
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
        agent.finished_at, agent.error = event.at, event.error
        skipped = event.status == "skipped"  # a skipped agent keeps what its earlier run recorded
        usage = agent.usage if skipped else event.usage
        # every total moves by (new row - old row), taken before the row changes
        self.cost_usd += (event.cost_usd or 0.0) - (agent.cost_usd or 0.0)
        self.unpriced += _unpriced(event.cost_usd, usage) - _unpriced(agent.cost_usd, agent.usage)
        agent.cost_usd = event.cost_usd
        if skipped:
            return
        self.usage += usage if agent.usage is NO_USAGE else usage - agent.usage
        agent.usage = usage
        agent.input_hash, agent.output_hash, agent.summary = event.input_hash, event.output_hash, event.summary
        agent.summary_cut, agent.note = event.summary_cut, event.note
        agent.batch = event.batch
        self.truncated += event.truncated - agent.truncated
        agent.truncated = event.truncated

    def _set_status(self, agent: AgentState, status: Status) -> None:
        self.counts[agent.status] -= 1
        self.counts[status] += 1
        tally = self.tally[(agent.domain, agent.role)]
        tally[agent.status] -= 1
        tally[status] += 1
        agent.status = status

    def snapshot(self) -> RunState:
        """The state as it is now, in a copy no later event changes: what a reader on another thread gets
        (see `published`), made on the engine's thread. Cheap to repeat: only the agents changed since the
        last copy are copied again (the others are shared with it, as no copy is ever changed), and with
        no event since, the last copy is returned as it is."""
        with self._lock:
            if self._last is not None and self._last[0] == self._version:
                return self._last[1]
            twin = copy.copy(self)
            last = self._last[1] if self._last is not None else None
            agents, tally = (dict(last.agents), dict(last.tally)) if last is not None else ({}, {})
            changed = [self.agents[key].copied() for key in (self._dirty if last is not None else self.agents)]
            agents.update((agent.agent, agent) for agent in changed)
            tally.update({pair: Counter(self.tally[pair]) for pair in {(a.domain, a.role) for a in changed}})
            twin.agents, twin.tally, twin.counts, twin.removed = agents, tally, Counter(self.counts), dict(self.removed)
            twin._dirty, twin._last, twin._lock = set(), None, threading.Lock()
            self._dirty = set()
            self._last = (self._version, twin)
            return twin

    def cut_off(self) -> None:
        """A run on record as running whose process is gone (killed, or its machine went down): with every
        agent finished it ended as a finished run would; otherwise it is cancelled, and says why."""
        self._version += 1
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
        agents = {a["agent"]: AgentState.from_row(a) for a in data["agents"]}
        removed = {a["agent"]: AgentState.from_row(a) for a in data.get("removed", ())}  # absent in older folders
        keys = ("run_id", "name", "provider", "started_at", "status", "finished_at", "reason")
        optional = {k: data[k] for k in ("executor", "dashboard", "first_started_at", "resumes", "earlier_seconds")
                    if k in data}  # absent in older folders
        return cls(agents=agents, removed=removed, **{k: data[k] for k in keys}, **optional)
