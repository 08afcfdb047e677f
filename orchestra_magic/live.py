"""Runs in the background: the engine on its own thread and event loop, the caller's thread left free.

This is how a notebook stays responsive: the kernel's own loop keeps handling widget clicks and
redrawing progress while the run goes on elsewhere. `start` returns a `Run` at once (after the spec,
key and endpoint are checked, so mistakes still raise right away); `await run` or `run.wait()` gives
the finished run, `run.stop()` stops it from any thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from contextlib import suppress
from typing import Any

from .api import SpecSource, prepared
from .engine import Engine
from .results import Run


class Background:
    """The thread, loop and engine behind one background run; owned by its `Run`."""

    def __init__(self, spec: SpecSource, options: dict[str, Any]) -> None:
        self.spec, self.options = spec, options
        self.future: concurrent.futures.Future[Run] = concurrent.futures.Future()
        self.engine: Engine | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.thread = threading.Thread(target=self._main, name="orchestra-run", daemon=True)

    def start(self) -> Run:
        self.thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error
        assert self.engine is not None
        return Run(self.engine.folder.path, self.engine.state, background=self)

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
            self._ready.set()
            state = await engine.run()
        self.future.set_result(Run(engine.folder.path, state, background=self))


def start(spec: SpecSource, **options: Any) -> Run:
    """Start a run in the background and return its `Run` handle at once. Keywords as for `run`."""
    return Background(spec, options).start()


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
        if tick:
            tick()


def _done_within(future: concurrent.futures.Future[Run], seconds: float) -> bool:
    done, _ = concurrent.futures.wait([future], timeout=seconds)
    return bool(done)
