"""`%%orchestrate` and its line magics: a thin layer over `live.start` and the widget view.

How a run stays live in the kernel: the engine runs on its own thread (see `live`), and the cell
*awaits* it. IPython cannot make a magic itself async, so an input transformer rewrites an
`%%orchestrate` cell into `await <magics>.orchestrate_async(line, body)`; ipykernel then runs the cell
as a coroutine on its own event loop, which goes on handling widget clicks (Stop, Retry failed) and
redrawing the tree while the cell waits. A kernel interrupt cancels that await: the run stops cleanly
and the cell ends with one line saying how to resume. Where the cell cannot await (`%autoawait off`,
or `run_cell_magic` called directly), the same run is waited on from the cell's thread, with progress
redrawn in between; buttons then answer only once the cell is done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import Pretty, display
from traitlets import Bool, Float, Integer, Unicode

from .display.text import TextView, finished_work, resume_hint
from .errors import ConfigError, SpecError, UsageError
from .results import Run

if TYPE_CHECKING:
    from .live import RunHandle

CELL_MAGIC = "%%orchestrate"


@contextmanager
def user_errors() -> Iterator[None]:
    """Our user mistakes become IPython's UsageError: one red line, no traceback."""
    try:
        yield
    except UsageError as exc:
        raise IPythonUsageError(str(exc)) from None


@magics_class
class OrchestraMagics(Magics):
    """Defaults for `%%orchestrate`, settable with `%config OrchestraMagics.<name> = ...`."""

    provider = Unicode("", help="Provider when the cell names none (empty: $ORCHESTRA_PROVIDER, else anthropic).").tag(
        config=True)
    root = Unicode("", help="Folder or URL (s3://…) for run folders (empty: $ORCHESTRA_ROOT, else ./orchestration)."
                   ).tag(config=True)
    concurrency = Integer(0, help="Most agents in flight (0: the spec's own, default 8).").tag(config=True)
    widgets = Bool(True, help="Show the live widget tree; False prints text progress instead.").tag(config=True)
    refresh = Float(0.1, help="Seconds between progress redraws: the throttle on widget messages.").tag(config=True)

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self.live: dict[str, RunHandle] = {}

    @property
    def ip(self) -> Any:
        """The shell these magics belong to (never None once registered)."""
        assert self.shell is not None
        return self.shell

    # ---- %%orchestrate -------------------------------------------------------------------------

    @magic_arguments()
    @argument("-o", "--output", metavar="NAME", help="also bind the run's handle (live state, stop, retry) to NAME")
    @argument("--provider", help="anthropic, offline (simulated, no key), bedrock, vertex, foundry, compatible, "
                                 "or a variable holding a Provider")
    @argument("--concurrency", type=int, help="most agents in flight")
    @argument("--root", help="folder or URL (s3://bucket/runs) for run folders")
    @argument("--resume", metavar="RUN_ID", help="continue the run folder <root>/RUN_ID")
    @argument("--dry-run", action="store_true", help="show the plan and prompts; call nothing")
    @argument("--background", action="store_true", help="return at once; get results with `await run`")
    @argument("--executor", choices=("local", "dask"), help="where agents run (default local)")
    @argument("--scheduler", help="a Dask scheduler address, or a variable holding a distributed.Client")
    @cell_magic
    def orchestrate(self, line: str, cell: str) -> Any:
        """Run the spec in the cell body; the cell's value is the summaries DataFrame."""
        job = self._begin(line, cell)
        if not isinstance(job, _Job):
            return job
        if job.background:
            return job.started_in_background()
        try:
            job.run.wait(tick=job.render)
        except KeyboardInterrupt:
            return job.interrupted()
        return job.finish()

    async def orchestrate_async(self, line: str, cell: str) -> Any:
        """What an `%%orchestrate` cell runs in a kernel: the same as `orchestrate`, awaited."""
        job = self._begin(self.ip.var_expand(line), cell)
        if not isinstance(job, _Job):
            return job
        job.tick_in_background()
        if job.background:
            return job.started_in_background()
        try:
            await job.run
        except asyncio.CancelledError:
            return job.interrupted()
        finally:
            job.ticker.cancel()
        return job.finish()

    def _begin(self, line: str, cell: str) -> Any:
        args = parse_argstring(self.orchestrate, line)
        variables = self.ip.user_ns
        with user_errors():
            if args.dry_run:
                from .dryrun import plan

                return plan(cell, variables)
            from .live import start

            resuming = args.resume is not None  # then the folder's record stands above the %config defaults
            try:
                run = start(cell if cell.strip() else None, provider=self._provider(args.provider, resuming),
                            variables=variables, root=args.root or self.root or None,
                            concurrency=args.concurrency or (None if resuming else self.concurrency or None),
                            resume=args.resume, executor=args.executor, **self._cluster(args.scheduler))
            except SpecError as exc:  # the cell's first line is the magic's: count the spec's lines from the cell
                raise SpecError(exc.problem, exc.path, exc.line + 1 if exc.line else None) from None
        self.live[run.run_id] = run
        return _Job(self, run, args.output, args.background)

    def _provider(self, name: str | None, resuming: bool = False) -> Any:
        """A provider name, or the name of a notebook variable holding a `Provider` instance (so a
        `PythonProvider` or a tuned `OfflineProvider` can be used from a cell)."""
        from .providers import PROVIDERS, Provider, unknown_provider

        chosen = name or (None if resuming else self.provider) or None
        value = self.ip.user_ns.get(chosen) if chosen else None
        if isinstance(value, Provider):
            return value
        if chosen and chosen not in PROVIDERS:  # a typo may be of a name or of a variable: offer both
            mine = [k for k, v in self.ip.user_ns.items() if isinstance(v, Provider) and not k.startswith("_")]
            raise ConfigError(unknown_provider(chosen, [*PROVIDERS, *mine]))
        return chosen

    def _cluster(self, scheduler: str | None) -> dict[str, Any]:
        """`--scheduler`: an address, or the name of a notebook variable holding a `distributed.Client`
        (checked by its type's module, so `distributed` is never imported here)."""
        value = self.ip.user_ns.get(scheduler) if scheduler else None
        if value is not None and type(value).__module__.startswith("distributed"):
            return {"client": value}
        return {"scheduler": scheduler}

    # ---- line magics ---------------------------------------------------------------------------

    @line_magic
    def orchestrate_runs(self, line: str) -> Any:
        """`%orchestrate_runs [ROOT]`: past runs under the root, newest first, as a DataFrame; says where
        the root is and how to choose another."""
        from .results import list_runs
        from .runfolder.folder import is_url, local_path

        with user_errors():
            root = self._root(line)
            runs = list_runs(root)
        where = root if is_url(root) else str(local_path(root).absolute())
        print(f"{len(runs)} run(s) under {where}. Another root: %orchestrate_runs ROOT; to set it for every "
              "cell: %config OrchestraMagics.root = 'DIR' (or the ORCHESTRA_ROOT environment variable).")
        return runs

    @line_magic
    def orchestrate_load(self, line: str) -> Run:
        """`%orchestrate_load RUN_ID_OR_PATH`: a finished run, from disk (a path or a URL)."""
        from .runfolder.folder import find_run

        if not line.strip():
            raise IPythonUsageError("%orchestrate_load needs a run id (see %orchestrate_runs) or a run folder path")
        with user_errors():
            folder = find_run(self._root(""), line.strip())
            return Run(folder.path, folder.read_state())

    @line_magic
    def orchestrate_stop(self, line: str) -> None:
        """`%orchestrate_stop [RUN_ID]`: stop one background run, or all of them."""
        wanted = line.strip()
        runs = [r for r_id, r in self.live.items() if not wanted or r_id == wanted]
        if wanted and not runs:
            raise IPythonUsageError(f"no run {wanted!r} was started in this kernel")
        for run in runs:
            run.stop()
        print(f"Stopping {len([r for r in runs if not r.done])} run(s).")

    def _root(self, line: str) -> str:
        from .api import RunOptions

        return line.strip() or RunOptions.resolve(root=self.root or None).root


class _Job:
    """One `%%orchestrate` cell's run and what the cell shows of it.

    In a kernel with widgets, everything the cell shows (the tree, a stop note, a table of a run that did
    not finish done, a background run's handle) is a display with an id, updated in place whenever the
    run it belongs to changes: after Retry failed, when a background run ends. Nothing it shows goes
    stale. Elsewhere (terminal IPython, `widgets = False`) progress is printed text."""

    def __init__(self, magics: OrchestraMagics, run: RunHandle, output: str | None, background: bool) -> None:
        self.magics, self.run, self.output, self.background = magics, run, output, background
        self.interval = magics.refresh
        self.live = magics.widgets and getattr(magics.shell, "kernel", None) is not None
        self.handles: dict[str, Any] = {}
        self.view = self._make_view()
        if output:
            magics.ip.user_ns[output] = run
        run.after_wait.append(self.resend)

    def _make_view(self) -> Any:
        if self.live:
            from .display.widget import RunView

            view = RunView(self.run, on_stop=lambda: self.run.stop(), on_retry=self.retry)
            self.show("tree", view.widget)
            return view
        return TextView(self.run)

    def show(self, name: str, value: Any) -> None:
        """Display `value` as the cell's output `name`, or put it in place of what that output showed."""
        if name in self.handles:
            self.handles[name].update(value)
        else:
            self.handles[name] = display(value, display_id=True)

    def render(self) -> None:
        self.view.render()

    def tick_in_background(self) -> None:
        """Redraw on the kernel's loop until the run ends (between cells and while a cell awaits), then
        bring every output of the cell up to date."""
        async def ticker(run: RunHandle) -> None:
            while not run.done:
                self.render()
                await asyncio.sleep(self.interval)
            if run is self.run:
                self.settled()

        self.ticker = asyncio.ensure_future(ticker(self.run))

    def settled(self) -> None:
        """The run ended: update what the cell shows of it in place."""
        self.render()
        if self.live:
            self.show("tree", self.view.widget)  # its plain-text form is the run's final status line
            if "handle" in self.handles:
                self.show("handle", self.run)
            if "note" in self.handles:
                self.show("note", Pretty(self.stop_note() if self.run.status == "cancelled" else ""))
            if "table" in self.handles:
                self.show("table", self.summaries())

    def resend(self) -> None:
        """Re-send the final state, and update the cell's outputs, from whichever cell waited for the run
        (a later one, in background mode or after Retry failed): notebook executors keep updates only
        from the cell that is running."""
        self.settled()
        if hasattr(self.view, "resend"):
            self.view.resend()

    def retry(self) -> None:
        with user_errors():
            self.run = self.run.retry_failed()
        self.magics.live[self.run.run_id] = self.run
        if self.output:
            self.magics.ip.user_ns[self.output] = self.run
        self.view.attach(self.run)
        self.run.after_wait.append(self.resend)
        self.tick_in_background()

    def started_in_background(self) -> Any:
        """A background cell's value: the live handle, shown where it updates when the run ends."""
        if not self.live:
            return self.run
        self.show("handle", self.run)
        return None

    def finish(self) -> Any:
        """The cell's value once the run ended: the summaries. In a kernel with widgets a run that can
        still change (stopped, failed: Retry failed) shows them as a live output instead."""
        self.settled()
        if self.run.status == "cancelled":
            self.interrupted()
        if self.live and self.run.status != "done":
            self.show("table", self.summaries())
            return None
        return self.summaries()

    def summaries(self) -> Any:
        """The run's summaries as the cell shows them: a DataFrame that shows each summary whole."""
        from .display.tables import SummaryFrame

        return SummaryFrame(self.run.summaries)

    def interrupted(self) -> None:
        self.render()
        if self.live:
            self.show("note", Pretty(self.stop_note()))
        else:
            print(self.stop_note())

    def stop_note(self) -> str:
        state, run_id = self.run.state, self.run.run_id
        return resume_hint(self.run.path, f"Stopped: {finished_work(state.counts)} of {state.total} agents finished "
                           f"and are kept in {self.run.path}.\nTo continue, run the cell again with --resume "
                           f"{run_id} (or a cell `%%orchestrate --resume {run_id}` alone: the folder has the spec)")


def _await_orchestrate_cells(lines: list[str]) -> list[str]:
    """Input transformer: an `%%orchestrate` cell becomes an awaited call (see the module docstring)."""
    first = lines[0].split(maxsplit=1) if lines else []
    shell = _shell()
    if not first or first[0] != CELL_MAGIC or shell is None or not shell.autoawait:
        return lines
    line = lines[0][len(CELL_MAGIC):].strip()
    body = "".join(lines[1:])
    call = "get_ipython().magics_manager.registry['OrchestraMagics'].orchestrate_async"
    return [f"await {call}({line!r}, {body!r})\n"]


def _shell() -> Any:
    from IPython import get_ipython

    return get_ipython()


def load_ipython_extension(ipython: Any) -> None:
    ipython.register_magics(OrchestraMagics)
    if _await_orchestrate_cells not in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.append(_await_orchestrate_cells)


def unload_ipython_extension(ipython: Any) -> None:
    if _await_orchestrate_cells in ipython.input_transformers_cleanup:
        ipython.input_transformers_cleanup.remove(_await_orchestrate_cells)

