"""Small builders shared by the tests."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
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
    server = Orchestra(["fake-api", "--port", "0", *args], cwd=Path.cwd())
    try:
        banner = server.wait_for_stderr("Fake Anthropic Messages API on ")
        url = banner.split(" on ")[1].split()[0]
        yield {**os.environ, "ANTHROPIC_API_KEY": "sk-test", "ANTHROPIC_BASE_URL": url}
    finally:
        server.terminate()
        server.wait(10)


# What an `orchestra` process imports before it does anything: imported once, by the fork server.
PRELOADED = ["orchestra_magic.cli", "orchestra_magic.api", "orchestra_magic.live", "orchestra_magic.display.progress",
             "orchestra_magic.providers.anthropic.provider", "anthropic", "rich.console", "rich.table", "pandas",
             "helpers"]


class Orchestra:
    """`orchestra ARGS` in a process of its own, with its own working folder, environment, stdout, stderr,
    signals and exit code, like `subprocess.Popen` of the command; but forked from a server that imported
    the package once, so it starts in milliseconds rather than the seconds an interpreter takes to import
    the SDK. It runs `orchestra_magic.cli.main`, which is all the `orchestra` command runs; the tests that
    launch `python -m orchestra_magic` itself (test_cli's first, the Dask cluster's) keep the entry point
    covered."""

    _context = multiprocessing.get_context("forkserver")
    _context.set_forkserver_preload(PRELOADED)

    def __init__(self, argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self._output = tempfile.TemporaryDirectory(prefix="orchestra-output-")  # removed with this object
        self.process = self._context.Process(target=_orchestra_main, args=(
            list(argv), str(cwd), dict(os.environ if env is None else env), self._output.name))
        self.process.start()
        self.pid = self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.exitcode

    def poll(self) -> int | None:
        return self.process.exitcode

    def send_signal(self, sig: int) -> None:
        assert self.pid is not None
        os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def wait_for_stderr(self, text: str, timeout: float = 60) -> str:
        """Wait (bounded) until the process has printed a line with `text` on stderr; that line."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lines = [line for line in self.stderr_so_far().splitlines() if text in line]
            if lines:
                return lines[0]
            if self.poll() is not None:
                raise AssertionError(f"orchestra ended ({self.poll()}) without printing {text!r}: "
                                     f"{self.stderr_so_far()}")
            time.sleep(0.01)
        raise AssertionError(f"orchestra did not print {text!r} within {timeout:g} s")

    def stderr_so_far(self) -> str:
        path = Path(self._output.name) / "stderr"
        return path.read_text(encoding="utf-8") if path.exists() else ""

    def wait(self, timeout: float | None = None) -> int:
        self.process.join(timeout)
        if self.process.exitcode is None:
            raise subprocess.TimeoutExpired(["orchestra"], timeout or 0)
        return self.process.exitcode

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Wait for the end; what it printed on stdout and stderr."""
        self.wait(timeout)
        output = Path(self._output.name)
        return (output / "stdout").read_text(encoding="utf-8"), (output / "stderr").read_text(encoding="utf-8")


def _orchestra_main(argv: list[str], cwd: str, env: dict[str, str], output: str) -> None:
    """In the forked process: the command's working folder, environment and output files, then `main`."""
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        file = os.open(os.path.join(output, name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(file, fd)
        os.close(file)
    from orchestra_magic.cli import main

    sys.exit(main(argv))


def orchestra(*args: str, cwd: Path, env: dict[str, str] | None = None,
              timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`orchestra ARGS` run to its end (see `Orchestra`), as `subprocess.run(..., capture_output=True)` gives it."""
    process = Orchestra(args, cwd, env)
    stdout, stderr = process.communicate(timeout)
    return subprocess.CompletedProcess(["orchestra", *args], process.wait(), stdout, stderr)
