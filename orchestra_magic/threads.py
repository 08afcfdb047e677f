"""Where the user's sync code runs: `python`-provider functions and Python tools.

Each call gets a thread of its own, made for it, rather than a seat in the event loop's default pool:
- that pool has cores + 4 threads (6 here), which silently capped an I/O-bound fan-out of sync agents or
  tools at 6 at a time, whichever loop the run was on (`om.run`'s own, or the caller's under `om.arun`);
  the engine's `concurrency` is the one bound on agents in flight, so no pool size can be right;
- the threads are daemons: a function still stuck after its agent timed out or the run was stopped
  (Python cannot kill a thread) does not keep a script or `orchestra run` from exiting, as a pool's
  threads would (the interpreter waits for them at exit).
A thread costs some tens of microseconds to start, nothing next to a call worth running in one.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class DaemonThreads(Executor):
    """A `concurrent.futures.Executor` that runs each call in a new daemon thread."""

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future: Future[T] = Future()

        def work() -> None:
            if not future.set_running_or_notify_cancel():
                return  # cancelled before it started
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=work, name="orchestra-sync", daemon=True).start()
        return future


_THREADS = DaemonThreads()


async def in_thread(function: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """`asyncio.to_thread` on a thread of its own: the call sees the caller's context variables (a
    tool's `workspace()`); cancelling the await abandons the call, which finishes in its thread."""
    call = functools.partial(contextvars.copy_context().run, function, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_THREADS, call)
