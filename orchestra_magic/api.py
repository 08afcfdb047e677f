"""The Python entry points: `arun` (async), `run` (blocking, works inside notebooks too), `RunOptions`.

Configuration flows one way: explicit argument > `%config` trait (the magic passes it in as an
argument) > environment (`ORCHESTRA_PROVIDER`, `ORCHESTRA_ROOT`, `ORCHESTRA_CONCURRENCY`,
`ORCHESTRA_EXECUTOR`, `ORCHESTRA_SCHEDULER`) > the spec's own keys (concurrency, executor, scheduler) > default.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .engine.executors import Executor, LocalExecutor
from .engine.planning import check_shares_agents
from .engine.scheduler import Engine, Listener, RetryPolicy
from .errors import ConfigError
from .providers import Provider, make_provider
from .results import Run
from .runfolder.folder import RunFolder, find_run, is_url
from .runfolder.layout import DEFAULT_ROOT
from .spec.model import Spec, load_spec
from .spec.prompts import Prompts
from .tools.catalog import FILE_TOOLS, ToolsArg, resolve_tools

DEFAULT_PROVIDER = "anthropic"
SpecSource = str | Path | Mapping[str, Any] | Spec


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How to run a spec (as opposed to what to run, which is the spec)."""

    provider: str | Provider = DEFAULT_PROVIDER
    root: str = DEFAULT_ROOT
    concurrency: int | None = None
    executor: str | Executor | None = None  # None: the spec's `executor`, else local (dask with a scheduler)
    scheduler: str | None = None  # a Dask scheduler address; None: the spec's `scheduler`
    client: Any = None  # an existing `distributed.Client` to run on (Python only)
    # ORCHESTRA_EXECUTOR / ORCHESTRA_SCHEDULER: below the options (an explicit `executor="local"` beats an
    # environment's scheduler), above the spec
    env_executor: str | None = None
    env_scheduler: str | None = None

    @classmethod
    def resolve(
        cls, provider: str | Provider | None = None, root: str | os.PathLike[str] | None = None,
        concurrency: int | None = None, executor: str | Executor | None = None, scheduler: str | None = None,
        client: Any = None,
    ) -> RunOptions:
        env = os.environ
        chosen_concurrency = concurrency if concurrency is not None else _env_int("ORCHESTRA_CONCURRENCY")
        if chosen_concurrency is not None and not 1 <= chosen_concurrency <= 1000:
            raise ConfigError(f"concurrency must be between 1 and 1000, got {chosen_concurrency}")
        return cls(
            provider=provider or env.get("ORCHESTRA_PROVIDER") or DEFAULT_PROVIDER,
            root=str(root or env.get("ORCHESTRA_ROOT") or DEFAULT_ROOT),
            concurrency=chosen_concurrency,
            executor=executor or None,
            scheduler=scheduler or None,
            client=client,
            env_executor=env.get("ORCHESTRA_EXECUTOR") or None,
            env_scheduler=env.get("ORCHESTRA_SCHEDULER") or None,
        )


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {value!r}") from None


@asynccontextmanager
async def prepared(
    spec: SpecSource,
    *,
    provider: str | Provider | None = None,
    variables: Mapping[str, Any] | None = None,
    root: str | os.PathLike[str] | None = None,
    concurrency: int | None = None,
    resume: str | os.PathLike[str] | None = None,
    listeners: tuple[Listener, ...] = (),
    retry: RetryPolicy | None = None,
    tools: ToolsArg | None = None,
    executor: str | Executor | None = None,
    scheduler: str | None = None,
    client: Any = None,
) -> AsyncIterator[Engine]:
    """An `Engine` ready to run, its provider and executor started. Everything the user can get wrong
    (spec, templates, tools, provider key and endpoint, scheduler address) is checked before the run
    folder is created. `tools`: the Python functions the spec's `tools:` names (a list, or a
    name-to-function mapping); a name not found there is looked up in `variables` (the notebook's
    namespace). `executor` is "local" or "dask"; `scheduler` (an address) or `client` (a
    `distributed.Client`) say which Dask cluster, and imply "dask"."""
    loaded = load_spec(spec, variables)
    Prompts(loaded.templates).check()
    functions = resolve_tools(loaded, tools, variables)
    options = RunOptions.resolve(provider, root, concurrency, executor, scheduler, client)
    if is_url(options.root) and (used := sorted(functions.keys() & set(FILE_TOOLS))):
        raise ConfigError(f"the built-in file tools ({', '.join(used)}) work in a local run folder, and the root "
                          f"{options.root} is a URL; use a local or mounted root, or drop them from `tools:`")
    backend = make_provider(options.provider)
    _check_output(loaded, backend)
    backend.check(loaded)
    runner = make_executor(options.executor, loaded, scheduler=options.scheduler, client=options.client,
                           concurrency=options.concurrency,
                           environment=(options.env_executor, options.env_scheduler))
    folder = _resume_folder(options.root, resume) if resume else None
    if folder:
        folder.lock()  # before reading: the state must not change under us
    try:
        prior = folder.read_state() if folder else None
        if folder and prior:
            check_shares_agents(loaded, prior, folder.where(""))
        await backend.start()
        try:
            try:
                await runner.start(backend)
                if folder is None:
                    folder = RunFolder.create(options.root, loaded.name)
                    folder.lock()
                yield Engine(loaded, backend, folder, prior=prior, concurrency=options.concurrency,
                             retry=retry, listeners=listeners, tools=functions, executor=runner)
            finally:
                await runner.close()  # before the provider: workers may still be calling it
        finally:
            await backend.close()
    finally:
        if folder:
            folder.unlock()


def _check_output(spec: Spec, provider: Provider) -> None:
    """A role with an `output` needs a provider that can give typed answers: ask before anything runs."""
    for role in ("worker", "coordinator"):
        if spec.settings(role).output is not None and (problem := provider.output_problem(role)):
            raise ConfigError(problem)


async def arun(spec: SpecSource, **kwargs: Any) -> Run:
    """Run a spec to the end and return its `Run`. Takes the same keywords as `prepared`."""
    async with prepared(spec, **kwargs) as engine:
        state = await engine.run()
    return Run(engine.folder.path, state)


EXECUTORS = ("local", "dask")


def make_executor(executor: str | Executor | None, spec: Spec, *, scheduler: str | None = None,
                  client: Any = None, concurrency: int | None = None,
                  environment: tuple[str | None, str | None] = (None, None)) -> Executor:
    """The executor for a run. Options win over the `environment`'s executor and scheduler, which win
    over the spec's keys; at each level a scheduler address (or a `distributed.Client`) alone already
    means dask, so going from a laptop to a cluster is one line: `scheduler: tcp://…` in the spec,
    `--scheduler` on the command line, or `client=`."""
    if isinstance(executor, Executor):
        return executor
    env_executor, env_scheduler = environment
    name = (executor or ("dask" if scheduler or client is not None else None)
            or env_executor or ("dask" if env_scheduler else None)
            or spec.executor or ("dask" if spec.scheduler else "local"))
    if name == "local":
        if scheduler or client is not None:
            raise ConfigError("a Dask scheduler or client was given but the executor is 'local'; "
                              "use executor 'dask' (or drop the scheduler) to choose where agents run")
        return LocalExecutor()
    if name == "dask":
        try:
            from .engine.dask_executor import DaskExecutor
        except ImportError as exc:
            raise ConfigError(f"the dask executor needs the 'distributed' package ({exc.msg}); "
                              'install it with: pip install "orchestra_magic[dask]"') from None
        return DaskExecutor(scheduler=scheduler or env_scheduler or spec.scheduler, client=client,
                            cluster_concurrency=spec.cluster_concurrency,
                            threads=concurrency or spec.concurrency)
    raise ConfigError(f"unknown executor {name!r}; choose one of {', '.join(EXECUTORS)}")


def _resume_folder(root: str, resume: str | os.PathLike[str]) -> RunFolder:
    """`resume` is a run id under `root`, or the path or URL of a run folder."""
    return find_run(root, resume)


ASSUMED_WORKER_OUTPUT_TOKENS = 600  # for the dry-run estimate of what coordinators will read


@dataclass(frozen=True, slots=True)
class Plan:
    """What a spec would run, without running it: for `--dry-run` and for checking a spec by eye."""

    spec: Spec
    worker_prompt: tuple[str, str]  # (system, user) of the first worker
    coordinator_prompt: tuple[str, str]  # of the first coordinator, with placeholder worker results
    input_tokens: int  # estimated, about 4 characters a token
    max_output_tokens: int  # the ceiling: every agent writing max_tokens

    @property
    def agents(self) -> int:
        return sum(len(d.workers) + 1 for d in self.spec.domains)

    def _repr_markdown_(self) -> str:
        rows = "\n".join(f"| {d.name} | {len(d.workers)} | {d.coordinator} |" for d in self.spec.domains)
        return (
            f"**Plan for {self.spec.name}**: {self.agents} agents ({len(self.spec.domains)} coordinators), "
            f"workers on `{self.spec.settings('worker').model}`, coordinators on "
            f"`{self.spec.settings('coordinator').model}`, {self.spec.concurrency} in flight ({self.spec.schedule}). "
            f"Estimated input ≈ {self.input_tokens:,} tokens; output at most {self.max_output_tokens:,}.\n\n"
            f"| domain | workers | coordinator |\n|---|---|---|\n{rows}\n\n"
            f"**First worker's prompt**\n\n```text\n{self.worker_prompt[0]}\n\n{self.worker_prompt[1]}\n```\n\n"
            f"**First coordinator's prompt** (worker results stand in as placeholders)\n\n"
            f"```text\n{self.coordinator_prompt[0]}\n\n{self.coordinator_prompt[1]}\n```\n"
        )

    def __repr__(self) -> str:
        return self._repr_markdown_()


def plan(spec: SpecSource, variables: Mapping[str, Any] | None = None, tools: ToolsArg | None = None) -> Plan:
    """Validate a spec (and the tools it names) and render its prompts; nothing is called or written."""
    from .engine.planning import plan_agents, render_request
    from .providers import WorkerResult

    loaded = load_spec(spec, variables)
    resolve_tools(loaded, tools, variables)
    prompts = Prompts(loaded.templates)
    tokens = 0
    samples: dict[str, tuple[str, str]] = {}
    placeholder = "(worker result)" + "x" * (4 * ASSUMED_WORKER_OUTPUT_TOKENS)
    for agent in plan_agents(loaded):
        inputs = tuple(WorkerResult(w.id, f"workers/{w.id}.md", placeholder) for w in agent.domain.workers)
        request = render_request(loaded, prompts, agent, () if agent.worker else inputs)
        tokens += (len(request.system) + len(request.prompt)) // 4
        samples.setdefault(request.role, (request.system, request.prompt.replace(placeholder, "(worker result)")))
    workers = sum(len(d.workers) for d in loaded.domains)
    ceiling = (workers * loaded.settings("worker").max_tokens
               + len(loaded.domains) * loaded.settings("coordinator").max_tokens)
    return Plan(loaded, samples["worker"], samples["coordinator"], tokens, ceiling)
