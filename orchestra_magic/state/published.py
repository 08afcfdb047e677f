"""The run state for readers on other threads than the engine's: a copy made on the engine's thread.

The engine changes its `RunState` on its event loop's thread; the notebook's kernel (the widget, a
`RunHandle`'s `summaries` and `agents`) and the terminal's refresh thread read it from theirs. Reading
the live state there could catch an event half applied: an agent counted in two statuses, totals that
are not the agents' sum. So a reader asks the loop for a `RunState.snapshot` and reads that; the copy is
made between two events, and nothing changes it afterwards. Copies are made only when asked for (a few
a second), and each copies only the agents changed since the last one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

from .run import RunState


class Published:
    """Consistent copies of one run's state, for any thread. Make it on the engine's loop thread."""

    def __init__(self, state: RunState) -> None:
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # no loop: whoever holds the state changes it on this thread, or not at all
            self._loop = None
        self.state = state
        self._thread = threading.get_ident()
        self._latest = state.snapshot()
        self._pending: concurrent.futures.Future[RunState] | None = None  # a copy asked of the loop

    def read(self, *, wait: bool = True, timeout: float = 5.0) -> RunState:
        """The state as of the engine's latest event. `wait=False` (a display refreshing itself) does not
        wait for the loop: it gets the copy made for the previous read, and asks for the next one. A
        loop too busy to answer within `timeout` seconds gets the same: the last copy made."""
        loop = self._loop
        if loop is None or threading.get_ident() == self._thread or not loop.is_running():
            return self._copy()  # on the engine's thread, or its loop has ended: nothing changes the state now
        future = self._pending
        if future is None:
            future = self._pending = concurrent.futures.Future()
            try:
                loop.call_soon_threadsafe(self._fill, future)
            except RuntimeError:  # the loop closed since: the run is over
                self._pending = None
                return self._copy()
        if not wait:
            return self._latest
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                return future.result(timeout=0.05)
            except TimeoutError:
                if not loop.is_running():
                    return self._copy()
        return self._latest

    def _fill(self, future: concurrent.futures.Future[RunState]) -> None:
        """On the loop's thread, between two events."""
        self._pending = None
        try:
            future.set_result(self._copy())
        except BaseException as exc:  # the reader re-raises it
            future.set_exception(exc)

    def _copy(self) -> RunState:
        self._latest = self.state.snapshot()
        return self._latest
