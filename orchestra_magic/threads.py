"""Where the user's sync code runs: `python`-provider functions and Python tools.

Each call runs on an idle thread of ours, or on a new one when none is idle, rather than in the event
loop's default pool:
- that pool has cores + 4 threads (6 here), which silently capped an I/O-bound fan-out of sync agents or
  tools at 6 at a time, whichever loop the run was on (`om.run`'s own, or the caller's under `om.arun`);
  the engine's `concurrency` is the one bound on agents in flight, so no pool size can be right;
- the threads are daemons: a function still stuck after its agent timed out or the run was stopped
  (Python cannot kill a thread) does not keep a script or `orchestra run` from exiting, as a pool's
  threads would (the interpreter waits for them at exit).
Threads are kept for the next call (starting one costs ~100 µs of CPU), as a pool's are.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class DaemonThreads(Executor):
    """A `concurrent.futures.Executor` with as many daemon threads as calls wait at once: an idle one
    takes the next call, and a call that finds none idle starts one (the accounting of
    `ThreadPoolExecutor`, without its cap and without joining its threads at exit)."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # counts threads waiting for a call
        self._busy = 0  # calls running now
        self._settled = threading.Condition()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()

        def call() -> None:
            if not future.set_running_or_notify_cancel():
                return  # cancelled before it started
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        self._calls.put(call)
        if not self._idle.acquire(blocking=False):
            threading.Thread(target=self._serve, name="orchestra-sync", daemon=True).start()
        return future

    def _serve(self) -> None:
        while True:
            call = self._calls.get()
            with self._settled:
                self._busy += 1
            try:
                call()
            finally:
                with self._settled:
                    self._busy -= 1
                    self._settled.notify_all()
            self._idle.release()

    def settle(self, timeout: float) -> bool:
        """Wait (up to `timeout` s) until no call runs; True if none does. A process about to exit calls
        this: a daemon thread that wakes from its call while the interpreter shuts down is killed in a
        way that can abort the process (Python 3.11-3.13), so a Ctrl-C'd `orchestra run` whose tools were
        mid-call ended with "Fatal Python error: Aborted" (exit -6) instead of 130."""
        with self._settled:
            return self._settled.wait_for(lambda: self._busy == 0, timeout)


_THREADS = DaemonThreads()


def settle(timeout: float = 2.0) -> bool:
    """`DaemonThreads.settle` for the calls `in_thread` made."""
    return _THREADS.settle(timeout)


async def in_thread(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`asyncio.to_thread` on one of our daemon threads: the call sees the caller's context variables (a
    tool's `workspace()`); cancelling the await abandons the call, which finishes in its thread."""
    call = functools.partial(contextvars.copy_context().run, function, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_THREADS, call)
