"""The Python entry points: `arun` (async), `run` (blocking, works inside notebooks too), `RunOptions`.

Configuration flows one way: explicit argument > `%config` trait (the magic passes it in as an
argument) > environment (`ORCHESTRA_PROVIDER`, `ORCHESTRA_ROOT`, `ORCHESTRA_CONCURRENCY`,
`ORCHESTRA_EXECUTOR`, `ORCHESTRA_SCHEDULER`) > the spec's own keys (concurrency, executor, scheduler) > default.
"""

from __future__ import annotations

import difflib
import os
import warnings
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, Unpack

from .engine.executors import Executor, LocalExecutor
from .engine.planning import AgentPlan, check_shares_agents
from .engine.retry import RetryPolicy
from .engine.scheduler import Engine, Listener
from .engine.tree import plan_agents, wide_run_warning
from .errors import ConfigError, OrchestraWarning
from .providers import Provider, make_provider
from .results import Run
from .runfolder.folder import RunFolder, find_run, is_url
from .runfolder.layout import DEFAULT_ROOT, SPEC
from .runfolder.options import RecordedOptions, read_options, record_variables, save_options
from .spec.load import load_spec_and_names
from .spec.model import ROLES, Spec
from .spec.prompts import Prompts
from .tools.catalog import FILE_TOOLS, PythonTool, ToolsArg, load_tools_file, resolve_tools

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


class RunKeywords(TypedDict, total=False):
    """The keywords `run`, `arun` and `start` take (all optional; None means "not chosen").

    provider: "anthropic", "offline", a registered name, or a `Provider` object.
    variables: values for the spec's Jinja2 templates (the notebook's namespace, in a cell).
    root: where run folders go, a folder or a URL (default $ORCHESTRA_ROOT, else ./orchestration).
    concurrency: most agents in flight (default: the spec's, or 8).
    resume: a run id under `root`, or a run folder's path or URL, to continue; the spec is then optional.
    listeners: callables `(event, state)` told of every change (progress views).
    retry: the `RetryPolicy` (default: the spec's `attempts`, exponential backoff).
    tools: the Python functions the spec's `tools:` names (a list or a mapping), or a Python file's path.
    executor: "local", "dask", or an `Executor` object.
    scheduler: a Dask scheduler address (implies "dask").
    client: a `distributed.Client` to run on (implies "dask").
    """

    provider: str | Provider | None
    variables: Mapping[str, Any] | None
    root: str | os.PathLike[str] | None
    concurrency: int | None
    resume: str | os.PathLike[str] | None
    listeners: tuple[Listener, ...]
    retry: RetryPolicy | None
    tools: ToolsArg | str | os.PathLike[str] | None
    executor: str | Executor | None
    scheduler: str | None
    client: Any


def check_keywords(function: str, given: Mapping[str, Any]) -> None:
    """A misspelt keyword is named at the call, with the one meant (not deep in a background thread)."""
    known = list(RunKeywords.__annotations__)
    for name in given:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"it takes {', '.join(known)}"
            raise TypeError(f"{function}() got an unexpected keyword argument {name!r}; {hint}")


@asynccontextmanager
async def prepared(spec: SpecSource | None = None, **options: Unpack[RunKeywords]) -> AsyncIterator[Engine]:
    """An `Engine` ready to run, its provider and executor started. Everything the user can get wrong
    (spec, templates, tools, provider key and endpoint, scheduler address) is checked before the run
    folder is created. On resume the folder's record of how it was run fills in what is not given again,
    and its spec.yaml stands in for a missing spec. Keywords: see `RunKeywords`; a name in `tools:` not
    found in `tools` is looked up in `variables` (the notebook's namespace)."""
    checked = _checked(spec, options)
    loaded, functions, resolved, folder = checked.spec, checked.tools, checked.options, checked.folder
    backend = make_provider(resolved.provider)
    _check_output(loaded, backend)
    backend.check(loaded)
    runner = make_executor(resolved.executor, loaded, scheduler=resolved.scheduler, client=resolved.client,
                           concurrency=resolved.concurrency,
                           environment=(resolved.env_executor, resolved.env_scheduler))
    if folder:
        folder.lock()  # before reading: the state must not change under us
    try:
        prior = folder.read_state() if folder else None
        if folder and prior:
            check_shares_agents(checked.plans, prior, folder.where(""))
        await backend.start()
        try:
            try:
                await runner.start(backend)
                if folder is None:
                    folder = RunFolder.create(resolved.root, loaded.name)
                    folder.lock()
                save_options(folder, checked.record)
                yield Engine(loaded, backend, folder, prior=prior, concurrency=resolved.concurrency,
                             retry=options.get("retry"), listeners=options.get("listeners", ()), tools=functions,
                             executor=runner, plans=checked.plans)
            finally:
                await runner.close()  # before the provider: workers may still be calling it
        finally:
            await backend.close()
    finally:
        if folder:
            folder.unlock()


def _check_output(spec: Spec, provider: Provider) -> None:
    """A role with an `output` needs a provider that can give typed answers: ask before anything runs."""
    for role in ROLES:
        if spec.settings(role).output is not None and (problem := provider.output_problem(role)):
            raise ConfigError(problem)


@dataclass(frozen=True, slots=True)
class _Checked:
    """What `prepared` checked before starting anything."""

    spec: Spec
    tools: dict[str, PythonTool]
    options: RunOptions
    folder: RunFolder | None  # the folder resumed, if any
    record: RecordedOptions  # how this session runs, for the folder
    plans: list[AgentPlan]  # the reduction tree (a window too small for it is refused in `_checked`)


def _checked(spec: SpecSource | None, options: RunKeywords) -> _Checked:
    """Load and check all the user gave (and, on resume, what the folder recorded), touching nothing."""
    root = RunOptions.resolve(root=options.get("root")).root
    resume = options.get("resume")
    folder = find_run(root, resume) if resume else None
    recorded = read_options(folder) if folder else RecordedOptions()
    if spec is None:
        if folder is None:
            raise ConfigError("no spec given: pass a spec, or resume=RUN_ID to continue a run")
        spec = folder.path / SPEC if isinstance(folder.path, Path) else folder.read_text(SPEC)
    chosen = _with_record(options, recorded, folder)
    variables = chosen["variables"]
    loaded, names = load_spec_and_names(spec, variables)
    prompts = Prompts(loaded.templates)
    prompts.check()
    plans = plan_agents(loaded, prompts)
    if warning := wide_run_warning(loaded):
        warnings.warn(warning, OrchestraWarning, stacklevel=4)
    tools_file = str(Path(chosen["tools"]).absolute()) if isinstance(chosen["tools"], str | os.PathLike) else None
    functions = resolve_tools(loaded, load_tools_file(tools_file) if tools_file else chosen["tools"], variables)
    resolved = RunOptions.resolve(chosen["provider"], root, chosen["concurrency"], chosen["executor"],
                                  chosen["scheduler"], options.get("client"))
    if is_url(resolved.root) and (used := sorted(functions.keys() & set(FILE_TOOLS))):
        raise ConfigError(f"the built-in file tools ({', '.join(used)}) work in a local run folder, and the root "
                          f"{resolved.root} is a URL; use a local or mounted root, or drop them from `tools:`")
    record = _record(resolved, names, variables, recorded, tools_file, chosen["tools"])
    return _Checked(loaded, functions, resolved, folder, record, plans)


def _with_record(options: RunKeywords, recorded: RecordedOptions, folder: RunFolder | None) -> dict[str, Any]:
    """What is given again wins over what the folder recorded; what neither has stays None (the
    environment, the spec or the default decides). Something used before that could not be recorded
    (a provider object) must be given again: say so rather than run on something else."""
    provider = options.get("provider") or recorded.provider
    if provider is None and "provider" in recorded.needed_again and folder is not None:
        raise ConfigError(f"run {folder.run_id} ran on {recorded.needed_again['provider']}, which a run folder "
                          f"cannot record; pass it again (provider=…, or --provider NAME_OF_ITS_VARIABLE in a cell)")
    return {
        "provider": provider,
        "variables": {**recorded.variables, **(options.get("variables") or {})},
        "tools": options.get("tools") or recorded.tools,
        "concurrency": options.get("concurrency") or recorded.concurrency,
        "executor": options.get("executor") or recorded.executor,
        # an executor given again chooses afresh: a recorded cluster address must not contradict it
        "scheduler": options.get("scheduler") or (None if options.get("executor") else recorded.scheduler),
    }


def _record(resolved: RunOptions, names: frozenset[str], variables: Mapping[str, Any],
            recorded: RecordedOptions, tools_file: str | None, tools: Any) -> RecordedOptions:
    """This session's record: plain values as chosen (of the variables, those the spec's templates
    named); objects named, never stored (nor any key)."""
    kept, left = record_variables(names, variables)
    needed = {k: v for k, v in recorded.needed_again.items() if k.removeprefix("variable ") not in kept}
    needed |= {f"variable {name}": what for name, what in left}
    for what, value in (("provider", resolved.provider), ("executor", resolved.executor),
                        ("client", resolved.client), ("tools", None if tools_file else tools)):
        if value is not None and not isinstance(value, str):
            needed[what] = f"a {type(value).__name__} object" if what != "tools" else "Python functions"
        elif what in needed and value is not None:
            del needed[what]
    return RecordedOptions(
        provider=resolved.provider if isinstance(resolved.provider, str) else None,
        variables={**recorded.variables, **kept}, tools=tools_file, concurrency=resolved.concurrency,
        executor=resolved.executor if isinstance(resolved.executor, str) else resolved.env_executor,
        scheduler=resolved.scheduler or resolved.env_scheduler, needed_again=needed)


async def arun(spec: SpecSource | None = None, **options: Unpack[RunKeywords]) -> Run:
    """Run a spec to the end and return its `Run`. `spec` is a YAML file's path, YAML text, a dict or a
    `Spec`; with `resume=RUN_ID` it may be left out (the run folder's spec.yaml is used). Keywords, all
    optional: provider, variables, root, concurrency, resume, listeners, retry, tools, executor,
    scheduler, client (see `RunKeywords`)."""
    check_keywords("arun", options)
    async with prepared(spec, **options) as engine:
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
