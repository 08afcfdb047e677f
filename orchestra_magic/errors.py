"""The exceptions orchestra_magic raises, in one small tree.

    OrchestraError                 root: catch this to catch everything of ours
    ├── UsageError                 you made a mistake; fix the input and try again
    │   ├── SpecError              the spec is malformed (names the key path and YAML line)
    │   ├── ConfigError            a missing API key, an unknown provider, an unreachable server
    │   └── RunFolderError         not a run folder, or one another process is using
    └── AgentError                 one agent's call failed (recorded in the run, not raised to you)
        └── TransientAgentError    worth retrying: rate limits, overload, 5xx, dropped connections
            └── BatchEntryError    an agent's own entry in a message batch failed; retried as a Messages call

Warnings (`OrchestraWarning`, a `UserWarning`) say what will run but may not be what you want, such as
more domain summaries for the parent than `fan_in`; the CLI prints them as one line each.

A run whose agents fail does not raise: `Run.status` says `failed` and `Run.agents` holds each
error. Outside cancellation (`asyncio.CancelledError`, `KeyboardInterrupt`) always propagates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .redaction import safe_text

if TYPE_CHECKING:
    from .providers.base import Completion


class OrchestraError(Exception):
    """Root of every error orchestra_magic raises on purpose. Its message is redacted and bounded as it is
    made (`redaction.safe_text`): an error is shown and stored, and may quote an API's or a proxy's answer."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(safe_text(a) if isinstance(a, str) else a for a in args))


class OrchestraWarning(UserWarning):
    """A spec that runs, but not as the method would have it (see the module docstring)."""


class UsageError(OrchestraError):
    """The caller's mistake: shown as one line, never as a traceback."""


class SpecError(UsageError):
    """A spec that cannot run. `path` is the key path (``domains[1].workers[0].id``), `line` the YAML line."""

    def __init__(self, message: str, path: str = "", line: int | None = None) -> None:
        self.problem = message
        self.path = path
        self.line = line
        where = f"{path} (line {line})" if path and line else path or (f"line {line}" if line else "")
        super().__init__(f"spec error at {where}: {message}" if where else f"spec error: {message}")


class ConfigError(UsageError):
    """A setting the run needs is missing or wrong (API key, provider name, endpoint)."""


class RunFolderError(UsageError):
    """A run folder that cannot be used: missing, not a run folder, or in use."""


class AgentError(OrchestraError):
    """One agent call failed for good; its text is recorded as the agent's `error`. `spent` is what the
    call had been billed for before it failed (the turns a tool loop had done), so the run's cost and
    budget count it."""

    spent: Completion | None = None


class TransientAgentError(AgentError):
    """A failure worth retrying. `retry_after` is the server's requested wait in seconds, if it gave one;
    `rate_limited` marks a refusal for rate or load (429, 529), which slows the whole run down."""

    def __init__(self, message: str, retry_after: float | None = None, *, rate_limited: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.rate_limited = rate_limited


def leave_spent(exc: BaseException, spent: Completion) -> None:
    """Leave what a cut-off call had been billed for on the exception that cut it off (a cancellation,
    the `TimeoutError` a timeout makes of it), for the engine to count: it pickles with the exception."""
    exc.spent = spent  # type: ignore[attr-defined]


def spent_on(exc: BaseException | None) -> list[Completion]:
    """What `exc`, or the exception it was raised from, says its call was billed for (`AgentError.spent`,
    or what `leave_spent` left), as a list of zero or one."""
    while exc is not None:
        spent: Completion | None = getattr(exc, "spent", None)
        if spent is not None:
            return [spent]
        exc = exc.__cause__
    return []


class BatchEntryError(TransientAgentError):
    """An agent's own entry in a Message Batch errored (overload, server error) or expired. The engine
    retries it as a plain Messages call, so a few failed entries do not wait another batch round."""


def shown(name: str, limit: int = 120) -> str:
    """A name (a path, a run id) as an error message shows it: a 5,000-character one would bury the message."""
    return name if len(name) <= limit else f"{name[:limit]}… ({len(name):,} characters)"
