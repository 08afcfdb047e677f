"""The Python entry points: `arun` (async), `run` (blocking, works inside notebooks too), `RunOptions`.

Configuration flows one way: explicit argument > `%config` trait (the magic passes it in as an
argument) > environment (`ORCHESTRA_PROVIDER`, `ORCHESTRA_ROOT`, `ORCHESTRA_CONCURRENCY`) > default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._sync import run_sync
from .engine import Engine, Listener, RetryPolicy
from .errors import ConfigError
from .prompts import Prompts
from .providers import Provider, make_provider
from .results import Run
from .runfolder import DEFAULT_ROOT, RunFolder
from .spec import Spec, load_spec

DEFAULT_PROVIDER = "anthropic"
SpecSource = str | Path | Mapping[str, Any] | Spec


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How to run a spec (as opposed to what to run, which is the spec)."""

    provider: str | Provider = DEFAULT_PROVIDER
    root: str = DEFAULT_ROOT
    concurrency: int | None = None

    @classmethod
    def resolve(
        cls, provider: str | Provider | None = None, root: str | os.PathLike[str] | None = None,
        concurrency: int | None = None,
    ) -> RunOptions:
        env = os.environ
        chosen_concurrency = concurrency if concurrency is not None else _env_int("ORCHESTRA_CONCURRENCY")
        if chosen_concurrency is not None and not 1 <= chosen_concurrency <= 1000:
            raise ConfigError(f"concurrency must be between 1 and 1000, got {chosen_concurrency}")
        return cls(
            provider=provider or env.get("ORCHESTRA_PROVIDER") or DEFAULT_PROVIDER,
            root=str(root or env.get("ORCHESTRA_ROOT") or DEFAULT_ROOT),
            concurrency=chosen_concurrency,
        )


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None


async def arun(
    spec: SpecSource,
    *,
    provider: str | Provider | None = None,
    variables: Mapping[str, Any] | None = None,
    root: str | os.PathLike[str] | None = None,
    concurrency: int | None = None,
    resume: str | os.PathLike[str] | None = None,
    listeners: tuple[Listener, ...] = (),
    retry: RetryPolicy | None = None,
) -> Run:
    """Run a spec to the end and return its `Run`. Everything the user can get wrong is checked
    (spec, templates, provider key and endpoint) before the run folder is created."""
    loaded = load_spec(spec, variables)
    Prompts(loaded.templates).check()
    options = RunOptions.resolve(provider, root, concurrency)
    backend = make_provider(options.provider)
    prior_folder = _resume_folder(options.root, resume) if resume else None
    prior = prior_folder.read_state() if prior_folder else None
    await backend.start()
    try:
        folder = prior_folder or RunFolder.create(options.root, loaded.name)
        engine = Engine(loaded, backend, folder, prior=prior, concurrency=options.concurrency,
                        retry=retry, listeners=listeners)
        state = await engine.run()
    finally:
        await backend.close()
    return Run(folder.path, state)


def run(spec: SpecSource, **kwargs: Any) -> Run:
    """Blocking `arun`. Safe where an event loop is already running (a notebook cell)."""
    return run_sync(arun(spec, **kwargs))


def _resume_folder(root: str, resume: str | os.PathLike[str]) -> RunFolder:
    """`resume` is a run id under `root`, or a path to a run folder."""
    candidate = Path(root) / resume
    return RunFolder.open(candidate if candidate.is_dir() else Path(resume))
