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
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError as IPythonUsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import display
from traitlets import Bool, Float, Integer, Unicode

from .errors import UsageError
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
            return job.run
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
            return job.run
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
                from .api import plan

                return plan(cell, variables)
            from .live import start

            run = start(cell, provider=self._provider(args.provider), variables=variables,
                        root=args.root or self.root or None, concurrency=args.concurrency or self.concurrency or None,
                        resume=args.resume, executor=args.executor, **self._cluster(args.scheduler))
        self.live[run.run_id] = run
        return _Job(self, run, args.output, args.background)

    def _provider(self, name: str | None) -> Any:
        """A provider name, or the name of a notebook variable holding a `Provider` instance (so a
        `PythonProvider` or a tuned `OfflineProvider` can be used from a cell)."""
        from .providers import Provider

        chosen = name or self.provider or None
        value = self.ip.user_ns.get(chosen) if chosen else None
        return value if isinstance(value, Provider) else chosen

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
        """`%orchestrate_runs [ROOT]`: past runs under the root, newest first, as a DataFrame."""
        from .results import list_runs

        with user_errors():
            return list_runs(self._root(line))

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
    """One `%%orchestrate` cell's run and its progress view."""

    def __init__(self, magics: OrchestraMagics, run: RunHandle, output: str | None, background: bool) -> None:
        self.magics, self.run, self.output, self.background = magics, run, output, background
        self.interval = magics.refresh
        self.view = self._make_view()
        if output:
            magics.ip.user_ns[output] = run
        run.after_wait.append(self.resend)

    def _make_view(self) -> Any:
        if self.magics.widgets and getattr(self.magics.shell, "kernel", None) is not None:
            from .display.widget import RunView

            view = RunView(self.run, on_stop=lambda: self.run.stop(), on_retry=self.retry)
            display(view.widget)
            return view
        return TextView(self.run)

    def render(self) -> None:
        self.view.render()

    def tick_in_background(self) -> None:
        """Redraw on the kernel's loop until the run ends: between cells and while a cell awaits."""
        async def ticker(run: RunHandle) -> None:
            while not run.done:
                self.render()
                await asyncio.sleep(self.interval)
            self.render()

        self.ticker = asyncio.ensure_future(ticker(self.run))

    def resend(self) -> None:
        """Re-send the final state from whichever cell waited for the run (a later one, in background
        mode): notebook executors keep widget updates only from the cell that is running."""
        self.render()
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

    def finish(self) -> Any:
        self.render()
        if self.run.status == "cancelled":
            self.interrupted()
        elif not isinstance(self.view, TextView):  # one line that survives where widgets do not render
            from .display.widget import header_text

            print(header_text(self.run.state, time.time()))
        from .display.tables import SummaryFrame

        return SummaryFrame(self.run.summaries)  # a DataFrame that shows each summary whole

    def interrupted(self) -> None:
        self.render()
        state = self.run.state
        print(f"Stopped: {state.counts['done'] + state.counts['skipped']} of {state.total} agents finished and "
              f"are kept in {self.run.path}.\nTo continue, run the cell again with --resume {self.run.run_id}")


class TextView:
    """Progress as text, where widgets cannot render (terminal IPython, `widgets = False`)."""

    def __init__(self, run: RunHandle, every: float = 2.0) -> None:
        self.run, self.every, self._last, self._said = run, every, 0.0, ""

    def attach(self, run: RunHandle) -> None:
        self.run = run

    def render(self) -> None:
        from .display.widget import header_text

        now = time.time()
        line = header_text(self.run.state, now)
        if self.run.state.status != "running" or now - self._last >= self.every:
            if line != self._said:
                print(line, flush=True)
            self._last, self._said = now, line


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

