"""How a run was run, kept in its folder (`options.json`), so that a resume needs nothing but the run id.

The record holds plain values only: the provider's name, the variables the spec's templates named (those
that JSON can hold: they are the user's data, not secrets), the tools file, the concurrency, the executor
and the Dask scheduler's address. Never a key or a credential: a provider is recorded by name, and a key
comes from the environment each time. What cannot be recorded (a provider object, a DataFrame, a
function, a `distributed.Client`) is named under `needed_again`, so that a resume hint can say so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import RunFolderError
from .folder import RunFolder
from .layout import OPTIONS


@dataclass(frozen=True, slots=True)
class RecordedOptions:
    """What `options.json` holds. A field left None was not chosen (the spec or the default decides)."""

    provider: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    tools: str | None = None  # a Python file's path (`--tools FILE.py`)
    concurrency: int | None = None
    executor: str | None = None
    scheduler: str | None = None
    # What was used but cannot be recorded, each with what it was: {"provider": "a PythonProvider object",
    # "variable df": "a DataFrame"}. A resume must be given these again.
    needed_again: dict[str, str] = field(default_factory=dict)

    def hint(self) -> str:
        """What a resume must be given again, in words ("" when the record holds everything)."""
        if not self.needed_again:
            return ""
        return "give again what a run folder cannot record: " + ", ".join(
            f"{what} ({kind})" for what, kind in self.needed_again.items())

    def to_json(self) -> str:
        data = {"version": 1, "provider": self.provider, "variables": self.variables, "tools": self.tools,
                "concurrency": self.concurrency, "executor": self.executor, "scheduler": self.scheduler,
                "needed_again": self.needed_again}
        return json.dumps(data, indent=1, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> RecordedOptions:
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("variables", {}), dict):
            raise ValueError("not a mapping of options")
        return cls(provider=data.get("provider"), variables=data.get("variables") or {}, tools=data.get("tools"),
                   concurrency=data.get("concurrency"), executor=data.get("executor"),
                   scheduler=data.get("scheduler"), needed_again=dict(data.get("needed_again") or {}))


def record_variables(names: frozenset[str],
                     variables: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The named variables JSON can hold as they are, and the others with what they are ("a DataFrame")."""
    kept: dict[str, Any] = {}
    left: list[tuple[str, str]] = []
    for name in sorted(names):
        value = variables[name]
        try:
            if json.loads(json.dumps(value)) == value:
                kept[name] = value
                continue
        except (TypeError, ValueError):
            pass
        left.append((name, f"a {type(value).__name__}"))
    return kept, left


def save_options(folder: RunFolder, options: RecordedOptions) -> None:
    folder.write(OPTIONS, options.to_json())


def read_options(folder: RunFolder) -> RecordedOptions:
    """The folder's record; an empty one for folders written before runs were recorded."""
    if not folder.exists(OPTIONS):
        return RecordedOptions()
    try:
        return RecordedOptions.from_json(folder.read_text(OPTIONS))
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"cannot read {folder.where(OPTIONS)}: {exc}") from None
