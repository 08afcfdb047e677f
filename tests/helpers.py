"""Small builders shared by the tests."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orchestra_magic as om
from orchestra_magic.fake.server import FakeMessagesAPI
from orchestra_magic.providers.anthropic.provider import AnthropicProvider


def make_spec(domains: dict[str, int], **settings: Any) -> dict[str, Any]:
    """A spec dict with `n` workers per domain, ids `<domain>-<i>`."""
    return {
        **settings,
        "domains": [
            {"name": name, "coordinator": f"Synthesise {name}.",
             "workers": [{"task": f"Task {i} of {name}."} for i in range(1, n + 1)]}
            for name, n in domains.items()
        ],
    }


def first_output(root: Path, timeout: float = 60) -> Path:
    """Wait (bounded) until some run under `root` has a finished worker; return that run's folder."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(root.glob("*/workers/*.md"))
        if found:
            return found[0].parent.parent
        time.sleep(0.05)
    raise AssertionError(f"no worker finished within {timeout:g} s")


class Log:
    """What agent functions did, as lines in a file. Agent functions are pickled to run on Dask (even an
    in-process cluster), so a list they append to would be a copy; a file is seen from every process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def add(self, line: str) -> None:
        with open(self.folder / "log", "a", encoding="utf-8") as f:  # one small O_APPEND write: whole lines
            f.write(line + "\n")

    def lines(self) -> list[str]:
        path = self.folder / "log"
        return path.read_text(encoding="utf-8").splitlines() if path.exists() else []

    def clear(self) -> None:
        (self.folder / "log").unlink(missing_ok=True)

    def first(self, name: str) -> bool:
        """True the first time `name` is asked about, in any process (an exclusive file create)."""
        try:
            (self.folder / f"once-{name}").open("x").close()
        except FileExistsError:
            return False
        return True

    async def wait_for(self, line: str) -> None:
        """Wait (bounded: 30 s) until some function has logged `line`."""
        async with asyncio.timeout(30):
            while line not in self.lines():  # noqa: ASYNC110 (an Event cannot cross processes)
                await asyncio.sleep(0.01)

    def wait_until(self, done: Callable[[list[str]], bool], what: str, timeout: float = 60) -> list[str]:
        """Block (bounded) until `done(lines)` holds; returns the lines."""
        deadline = time.monotonic() + timeout
        while not done(lines := self.lines()):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout:g} s; the log has {lines}")
            time.sleep(0.01)
        return lines


def run_against(fake: FakeMessagesAPI, tmp_path: Path, spec: dict[str, Any],
                provider: Callable[[str], om.Provider] = lambda url: AnthropicProvider(base_url=url),
                **kwargs: Any) -> om.Run:
    """Run `spec` with the real SDK against `fake`, started for the run on 127.0.0.1; `provider` makes the
    provider from the fake's base URL."""

    async def main() -> om.Run:
        base_url = await fake.start()
        try:
            return await om.arun(spec, provider=provider(base_url), root=tmp_path, **kwargs)
        finally:
            await fake.stop()

    return asyncio.run(main())


def cell(ip: Any, source: str) -> Any:
    """Run a notebook cell as a user would; errors are re-raised instead of printed."""
    result = ip.run_cell(source, store_history=False)
    result.raise_error()
    return result.result


@contextmanager
def fake_on_a_thread(**options: Any) -> Iterator[FakeMessagesAPI]:
    """The fake API served from its own thread, so a test can count what a subprocess asks it, and change
    it (its `latency_ms`, say) while the subprocess runs."""
    api = FakeMessagesAPI(**options)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(api.start(), loop).result(10)
    try:
        yield api
    finally:
        asyncio.run_coroutine_threadsafe(api.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@contextmanager
def fake_api(*args: str) -> Iterator[dict[str, str]]:
    """`orchestra fake-api` in its own process; yields the environment that points the SDK at it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "orchestra_magic", "fake-api", "--port", str(port), *args],
                              stderr=subprocess.PIPE, text=True)
    try:
        assert server.stderr is not None
        assert "Fake Anthropic Messages API" in server.stderr.readline()
        yield {**os.environ, "ANTHROPIC_API_KEY": "sk-test", "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{port}"}
    finally:
        server.terminate()
        server.wait(10)
