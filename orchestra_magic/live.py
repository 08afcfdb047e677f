"""Runs in the background: the engine on its own thread and event loop, the caller's thread left free.

This is how a notebook stays responsive: the kernel's own loop keeps handling widget clicks and
redrawing progress while the run goes on elsewhere. `start` returns a `RunHandle` at once (after the
spec, key and endpoint are checked, so mistakes still raise right away): the handle controls the run
(`stop`, `retry_failed`, from any thread) and reads its current state; `await handle` or
`handle.wait()` gives the finished `Run`, the results as values. `run` is `start(...).wait()`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Generator
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, Unpack

from .api import RunKeywords, SpecSource, check_keywords, prepared
from .engine.scheduler import Engine
from .errors import RunFolderError
from .results import Markdown, Run
from .runfolder.folder import RunFolder
from .state.published import Published
from .state.run import RunState

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure


class Background:
    """The thread, loop and engine behind one background run; owned by its `RunHandle`."""

    def __init__(self, spec: SpecSource | None, options: RunKeywords) -> None:
        self.spec, self.options = spec, options
        self.future: concurrent.futures.Future[Run] = concurrent.futures.Future()
        self.engine: Engine | None = None
        self.published: Published | None = None  # the engine's state, for reading from other threads
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="orchestra-run", daemon=True)

    def start(self) -> RunHandle:
        self.thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error
        assert self.engine is not None and self.published is not None
        return RunHandle(self.engine.folder.path, self.published, self)

    def stop(self) -> None:
        """Thread-safe: the engine stops on its own loop (no new agents, in-flight ones cancelled)."""
        if self.loop is not None and self.engine is not None and not self.future.done():
            engine = self.engine
            with suppress(RuntimeError):  # the loop closed between the check and the call: nothing to stop
                self.loop.call_soon_threadsafe(engine.stop)

    def _main(self) -> None:
        try:
            asyncio.run(self._run())
        except BaseException as exc:
            if not self._ready.is_set():
                self._startup_error = exc
                self._ready.set()
            elif not self.future.done():
                self.future.set_exception(exc)

    async def _run(self) -> None:
        async with prepared(self.spec, **self.options) as engine:
            self.engine, self.loop = engine, asyncio.get_running_loop()
            self.published = Published(engine.state)
            self._ready.set()
            state = await engine.run()
        self.future.set_result(Run(engine.folder.path, state))


class RunHandle:
    """Control of one background run, and a live view of it: `summaries`, `agents` and `state` read the
    run as it is now, so a notebook variable holding the handle never goes stale. `await handle` or
    `handle.wait()` gives the finished `Run`."""

    def __init__(self, path: Path | str, published: Published, background: Background) -> None:
        self.path, self._published, self._background = path, published, background
        self.after_wait: list[Callable[[], None]] = []  # called by whoever waited, once the run is over

    @property
    def state(self) -> RunState:
        """The run's state as of its latest event, in a copy that stays as it is (see `published`): read
        it once and work from it, rather than reading `state` again for each figure."""
        return self._published.read()

    @property
    def run_id(self) -> str:
        return self.state.run_id

    @property
    def status(self) -> str:
        return self.state.status

    @property
    def done(self) -> bool:
        return self._background.future.done()

    @property
    def result(self) -> Run:
        """The run's results as they stand now (all of them once `done`), from one copy of its state."""
        return Run(self.path, self.state)

    @property
    def summaries(self) -> pd.DataFrame:
        """As `Run.summaries`, for the run as it is now."""
        return self.result.summaries

    @property
    def agents(self) -> pd.DataFrame:
        """As `Run.agents`, for the run as it is now."""
        return self.result.agents

    @property
    def results(self) -> pd.DataFrame:
        """As `Run.results`, for the run as it is now (workers not finished yet have missing fields)."""
        return self.result.results

    def plot(self) -> Figure:
        """As `Run.plot`, for the run as it is now."""
        return self.result.plot()

    @property
    def summary(self) -> str:
        """As `Run.summary`: the run-level coordinator's short summary, once it has written one."""
        return self.result.summary

    def read_text(self, relative: str) -> str:
        return self.result.read_text(relative)

    def output(self, worker_id: str) -> Markdown:
        return self.result.output(worker_id)

    def synthesis(self, domain: str) -> Markdown:
        return self.result.synthesis(domain)

    def stop(self) -> None:
        """No new agents start, in-flight ones are cancelled, files stay whole; returns at once."""
        self._background.stop()

    def wait(self, tick: Callable[[], None] | None = None) -> Run:
        """Block until the run ends and return its `Run`. Ctrl-C stops the run, then re-raises."""
        wait(self._background, tick)
        finished = self._background.future.result()  # re-raises what ended the run, if anything did
        self._waited()
        return finished

    def __await__(self) -> Generator[Any, None, Run]:
        """`await handle` in a notebook: the kernel stays free while the run finishes on its thread.
        An interrupt (cancellation) stops the run, waits for its files to be consistent, then propagates."""
        future = asyncio.wrap_future(self._background.future)
        try:
            finished = yield from asyncio.shield(future).__await__()
        except asyncio.CancelledError:
            self.stop()
            yield from asyncio.wait([future]).__await__()
            self._waited()
            raise
        self._waited()
        return finished

    def _waited(self) -> None:
        for callback in self.after_wait:
            callback()

    def retry_failed(self, **options: Unpack[RunKeywords]) -> RunHandle:
        """Run the failed (and cancelled or never started) agents again in the same folder, then the
        coordinators whose inputs that changes; everything finished is skipped. Returns the new handle."""
        if not self.done:
            raise RunFolderError(f"run {self.run_id} is still running; stop it or wait for it first")
        merged: RunKeywords = {**self._background.options, **options}
        return retry_failed(self.result, **merged)

    def __repr__(self) -> str:
        return f"<RunHandle of {self.result!r}>"


def start(spec: SpecSource | None = None, **options: Unpack[RunKeywords]) -> RunHandle:
    """Start a run in the background and return its `RunHandle` at once; mistakes (spec, key,
    endpoint) still raise here. Keywords as for `run`."""
    check_keywords("start", options)
    return Background(spec, options).start()


def run(spec: SpecSource | None = None, **options: Unpack[RunKeywords]) -> Run:
    """Run a spec to the end and return its `Run` (blocking; works inside a notebook cell too: the run
    gets its own thread and event loop). Ctrl-C stops the run cleanly (files whole, resumable), then
    re-raises.

    `spec`: a YAML file's path, YAML text, a dict or a `Spec`; may be left out with `resume=`.
    Keywords (all optional; see `RunKeywords`): `provider` ("anthropic", "offline" or a `Provider`),
    `variables` (for the spec's templates), `root` (where run folders go), `concurrency`, `resume` (a
    run id or folder: the folder's record of how it ran fills in what is not given again), `listeners`,
    `retry` (a `RetryPolicy`), `tools` (functions, or a Python file's path), `executor` ("local",
    "dask"), `scheduler` (a Dask address), `client` (a `distributed.Client`)."""
    check_keywords("run", options)
    return start(spec, **options).wait()


def retry_failed(run: Run, **options: Unpack[RunKeywords]) -> RunHandle:
    """Start the failed, cancelled and never-started agents of a finished run again, in its folder (with
    the options it recorded, and what is given here on top)."""
    check_keywords("retry_failed", options)
    folder = RunFolder(run.path)
    merged: RunKeywords = {**options, "resume": str(run.path), "root": str(folder.root)}
    return start(None, **merged)


def wait(background: Background, tick: Callable[[], None] | None = None, interval: float = 0.1) -> None:
    """Block until the run ends, calling `tick` every `interval` seconds (to redraw progress).
    Ctrl-C or a kernel interrupt stops the run cleanly, waits for it, then re-raises."""
    try:
        while not _done_within(background.future, interval):
            if tick:
                tick()
    except KeyboardInterrupt:
        background.stop()
        concurrent.futures.wait([background.future])
        raise
    finally:
        # The run's thread still closes its event loop (the offline fake's server, tool threads) after the
        # result is in: let it end, or a process exiting at once (`orchestra run` after Ctrl-C) can abort
        # in the interpreter's shutdown with that daemon thread mid-teardown.
        if background.future.done():
            background.thread.join(timeout=10)
        if tick:
            tick()


def _done_within(future: concurrent.futures.Future[Run], seconds: float) -> bool:
    done, _ = concurrent.futures.wait([future], timeout=seconds)
    return bool(done)
