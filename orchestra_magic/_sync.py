"""Blocking wrappers at the edges: run a coroutine to completion from sync code, even inside a notebook.

Where no event loop runs, `asyncio.run`. Where one already runs (a Jupyter cell), the coroutine gets a
private loop on a helper thread: the "event loop is already running" failure cannot happen, and Ctrl-C
or a kernel interrupt cancels the coroutine (which stops its run cleanly) before re-raising.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from contextlib import suppress
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    return _run_on_thread(coro)


def _run_on_thread(coro: Coroutine[Any, Any, T]) -> T:
    loop = asyncio.new_event_loop()
    task: asyncio.Task[T] | None = None
    outcome: list[Any] = []

    def main() -> None:
        nonlocal task
        asyncio.set_event_loop(loop)
        task = loop.create_task(coro)
        try:
            outcome.append(loop.run_until_complete(task))
        except BaseException as exc:  # handed to the caller's thread below
            outcome.append(exc)
        finally:
            loop.close()

    thread = threading.Thread(target=main, name="orchestra-run", daemon=True)
    thread.start()
    try:
        while thread.is_alive():
            thread.join(0.1)
    except KeyboardInterrupt:
        if task is not None:
            with suppress(RuntimeError):  # the loop may have closed in between
                loop.call_soon_threadsafe(task.cancel)
        thread.join()
        raise
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    return result  # type: ignore[no-any-return]
