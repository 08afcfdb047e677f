"""What an agent's calls were billed for, counted: one `Usage` value, added with `+`.

The counters were once listed field by field wherever usage travelled (the provider's answer, the
finished event, the agent's record, the engine's sums, the tables); now they travel as one value and
are spelled out only here. On disk (run.json rows, journal lines) and in `run.agents` they stay flat
columns under these same names, so folders written before read as they always did.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens by how they are billed, and tool calls. `Usage()` is zero; `a + b` adds every counter."""

    input_tokens: int = 0  # billed at full price (a cached prefix is counted below instead)
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    tool_calls: int = 0  # Python tool calls the provider ran for the agent
    server_tool_calls: int = 0  # server tool uses (web searches, fetches, code runs), billed by the API

    def __add__(self, other: Usage) -> Usage:
        if other is NO_USAGE:  # the common sums (an agent's one call, a first bill) make no new value
            return self
        if self is NO_USAGE:
            return other
        return Usage(self.input_tokens + other.input_tokens, self.output_tokens + other.output_tokens,
                     self.cache_write_tokens + other.cache_write_tokens,
                     self.cache_read_tokens + other.cache_read_tokens, self.tool_calls + other.tool_calls,
                     self.server_tool_calls + other.server_tool_calls)

    def __sub__(self, other: Usage) -> Usage:
        """What `self` adds to `other` (a run's totals move by an agent's new usage less its old one)."""
        return self + Usage(*(-count for count in other.counts()))

    @property
    def prompt_tokens(self) -> int:
        """The whole prompt, however billed: what a rate limit's input-token bucket counts."""
        return self.input_tokens + self.cache_write_tokens + self.cache_read_tokens

    def counts(self) -> tuple[int, ...]:
        return (self.input_tokens, self.output_tokens, self.cache_write_tokens, self.cache_read_tokens,
                self.tool_calls, self.server_tool_calls)

    def as_dict(self) -> dict[str, int]:
        """The flat form written to disk and shown as columns (a journal line each: kept cheap)."""
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cache_write_tokens": self.cache_write_tokens, "cache_read_tokens": self.cache_read_tokens,
                "tool_calls": self.tool_calls, "server_tool_calls": self.server_tool_calls}

    @classmethod
    def take(cls, flat: dict[str, Any]) -> Usage:
        """The usage in a flat record (a run.json row, a journal line), popped out of it; a counter the
        record lacks (a folder from before it was counted) is 0."""
        return cls(*(flat.pop(name, 0) for name in USAGE_NAMES))


USAGE_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Usage))
NO_USAGE = Usage()  # the default of every record that has not been billed yet
