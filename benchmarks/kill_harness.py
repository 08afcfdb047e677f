"""Random SIGKILLs over `orchestra run`, counted at the fake Messages API.

Each run is started with `orchestra run SPEC --provider anthropic` against the package's fake Messages
API (started here, on its own thread: it records every request it is asked), killed with SIGKILL at a
random moment, resumed with `--resume RUN_ID`, killed again (a kill during a resume), and so on until a
session finishes by itself. Then it checks the two promises a crash must not break:

- no finished agent is asked again: after each kill, the agents whose output is on disk are finished;
  any later request for one of them is a re-ask (the requests are counted at the fake, not by the engine);
- the outputs are those of a run never killed: every file under workers/ and synthesis/ is byte-identical
  to an unkilled reference run of the same spec (the fake answers the same request the same way).

It also reports what the kills cost: answers that were in flight when a kill landed are asked again
(they were paid for and never recorded: that is the price of a kill, at most `concurrency` per kill).

    python benchmarks/kill_harness.py                           # 54 kills over runs of 30, 300 and 2,000
    python benchmarks/kill_harness.py --agents 30 --kills 5     # a quick look
    python benchmarks/kill_harness.py --exec                    # each session a fresh interpreter

Sessions are `orchestra_magic.cli.main` (what the `orchestra` command runs) in a process forked from a
server that has the package imported already (multiprocessing's forkserver), so a session starts in
milliseconds rather than the seconds an interpreter takes to import the SDK; `--exec` runs
`python -m orchestra_magic run ...` instead. Either way each session is its own process, killed with
SIGKILL: nothing of it runs after the kill.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import multiprocessing
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any, Protocol

from orchestra_magic.fake.server import FakeMessagesAPI

ASKED = re.compile(r"Your (?:output|synthesis) file: (workers|synthesis)/(\S+)\.md")


def spec_text(agents: int, concurrency: int) -> str:
    """A spec of `agents` agents: one domain per 50 agents (at least one), workers `w<i>`. Two levels
    (`fan_in` at the largest domain, worker answers bounded so a domain fits one window), so that
    `agents` counts every agent; tests/test_tree.py covers killing a run mid-tree."""
    domains = max(1, agents // 50)
    workers = agents - domains
    widest = -(-workers // domains)
    lines = [f"name: kills\nconcurrency: {concurrency}\nfan_in: {max(2, widest)}\n"
             "roles: {worker: {max_tokens: 1024}}\ndomains:\n"]
    for d in range(domains):
        lines.append(f"  - name: d{d}\n    coordinator: Sum up d{d}.\n    workers:\n")
        lines += [f"      - id: w{i}\n        task: Task {i}.\n" for i in range(d, workers, domains)]
    return "".join(lines)


def asked_agent(body: dict[str, Any]) -> str:
    """The agent a Messages API request was for: its prompt names its output file (a coordinator's
    prompt quotes its workers' texts, so the synthesis line is looked for first)."""
    content = body["messages"][0]["content"]
    text = content if isinstance(content, str) else " ".join(b.get("text", "") for b in content)
    found = {kind: name for kind, name in ASKED.findall(text)}
    return f"coordinator:{found['synthesis']}" if "synthesis" in found else found.get("workers", "?")


def outputs(folder: Path) -> dict[str, bytes]:
    """Every output file of a run folder, by its path in the folder."""
    return {str(p.relative_to(folder)): p.read_bytes()
            for sub in ("workers", "synthesis") for p in sorted((folder / sub).rglob("*.md"))}


def finished(folder: Path) -> set[str]:
    """The agents whose output is on disk: finished, whatever else the folder says."""
    workers = {p.stem for p in (folder / "workers").glob("*.md")}
    return workers | {f"coordinator:{p.stem}" for p in (folder / "synthesis").glob("*.md")}


class CountingFake:
    """The fake Messages API on its own thread and loop, so this process counts what sessions ask."""

    def __init__(self, latency_ms: float) -> None:
        self.api = FakeMessagesAPI(latency_ms=latency_ms)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> CountingFake:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.api.start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.api.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def asked(self, since: int = 0) -> list[str]:
        return [asked_agent(body) for body in list(self.api.requests[since:])]

    @property
    def count(self) -> int:
        return len(self.api.requests)


class Session(Protocol):
    def wait(self, timeout: float | None) -> int | None: ...  # the exit code, None if still running
    def kill(self) -> None: ...  # SIGKILL, and wait for it
    def terminate(self) -> None: ...  # SIGTERM (a graceful stop), without waiting


class Launcher(Protocol):
    def __call__(self, argv: Sequence[str], env: dict[str, str], cwd: Path, die_at: int | None = None) -> Session: ...


class _Exec:
    """`python -m orchestra_magic ...` in a fresh interpreter."""

    def __init__(self, argv: Sequence[str], env: dict[str, str], cwd: Path) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "orchestra_magic", *argv], env=env, cwd=cwd,
                                        stdout=subprocess.DEVNULL, stderr=open(cwd / "stderr.log", "a"))  # noqa: SIM115

    def wait(self, timeout: float | None) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def terminate(self) -> None:
        self.process.terminate()


def exec_session(argv: Sequence[str], env: dict[str, str], cwd: Path, die_at: int | None = None) -> Session:
    if die_at is not None:
        raise ValueError("kills at an exact event need forked sessions")
    return _Exec(argv, env, cwd)


def _cli(argv: Sequence[str], env: dict[str, str], cwd: str) -> None:
    """A session in a forked process: the `orchestra` command's own entry point, output to a log."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    log = os.open(os.path.join(cwd, "stderr.log"), os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(log, 2)
    from orchestra_magic.cli import main

    code = main(list(argv))
    sys.stdout.flush()
    os._exit(code)


def _dies_at_event(argv: Sequence[str], env: dict[str, str], cwd: str, events: int) -> None:
    """A session that kills itself with SIGKILL the moment its `events`-th event is on record (journalled):
    a kill point exact to the event, e.g. a resume's first. `argv` is `run`'s: SPEC [--resume RUN_ID]."""
    import orchestra_magic as om

    os.environ.update(env)
    os.chdir(cwd)
    seen = itertools.count(1)

    def die(event: object, state: object) -> None:
        if next(seen) >= events:
            os.kill(os.getpid(), signal.SIGKILL)

    resume = argv[argv.index("--resume") + 1] if "--resume" in argv else None
    om.run(argv[1], provider="anthropic", resume=resume, listeners=(die,))
    os._exit(0)


class _Forked:
    def __init__(self, context: ForkServerContext, argv: Sequence[str], env: dict[str, str], cwd: Path,
                 die_at: int | None = None) -> None:
        target, args = (_cli, (list(argv), env, str(cwd))) if die_at is None else (
            _dies_at_event, (list(argv), env, str(cwd), die_at))
        self.process = context.Process(target=target, args=args)
        self.process.start()

    def wait(self, timeout: float | None) -> int | None:
        self.process.join(timeout)
        return self.process.exitcode

    def kill(self) -> None:
        self.process.kill()
        self.process.join()

    def terminate(self) -> None:
        self.process.terminate()


@contextmanager
def forked_sessions() -> Iterator[Launcher]:
    """Sessions forked from a server that imported the package once (see the module docstring)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["orchestra_magic.cli", "orchestra_magic.api", "orchestra_magic.live",
                                    "orchestra_magic.display.progress", "orchestra_magic.providers.anthropic.provider",
                                    "anthropic", "rich.console", "rich.table", "pandas", "kill_harness"])

    def launch(argv: Sequence[str], env: dict[str, str], cwd: Path, die_at: int | None = None) -> Session:
        return _Forked(context, argv, env, cwd, die_at)

    yield launch


@dataclass
class Report:
    agents: int
    kills: int = 0
    sessions: int = 0
    requests: int = 0  # every request the fake was asked over all sessions
    reasked: Counter[str] = field(default_factory=Counter)  # finished agents asked again (must stay empty)
    lost_in_flight: int = 0  # requests for agents not finished when their session was killed, asked again
    identical: bool = False  # every output byte-identical to the unkilled run's
    reference_requests: int = 0
    seconds: float = 0.0
    kinds: Counter[str] = field(default_factory=Counter)  # kills by kind of kill point
    runs: int = 0  # runs it took to land the kills (a run can finish before its share landed)

    def line(self) -> str:
        return (f"{self.agents:>5} agents  {self.kills:>3} kills over {self.sessions:>3} sessions of {self.runs} "
                f"run{'s' if self.runs > 1 else ''}  "
                f"requests {self.requests:>5} (unkilled: {self.reference_requests})  "
                f"finished agents re-asked {sum(self.reasked.values())}  "
                f"in-flight answers lost {self.lost_in_flight}  "
                f"outputs identical: {'yes' if self.identical else 'NO'}  ({self.seconds:.1f} s; kills "
                f"{', '.join(f'{n} {kind}' for kind, n in sorted(self.kinds.items()))})")


def run_folder(root: Path) -> Path | None:
    """The one run folder under `root` that a session got as far as to record (it has a run.json)."""
    found = [p.parent for p in root.glob("*/run.json")]
    assert len(found) <= 1, f"more than one run folder under {root}: {found}"
    return found[0] if found else None


def reference(fake: CountingFake, launch: Launcher, work: Path, spec: str,
              env: dict[str, str]) -> tuple[dict[str, bytes], int, float]:
    """An unkilled run of `spec`: its outputs, the requests it made, and how long its session took."""
    work.mkdir(parents=True)
    (work / "spec.yaml").write_text(spec)
    before, started = fake.count, time.monotonic()
    code = launch(["run", "spec.yaml", "--provider", "anthropic"], env, work).wait(600)
    assert code == 0, f"the unkilled run ended {code}: {(work / 'stderr.log').read_text()[-2000:]}"
    folder = run_folder(work / "orchestration")
    assert folder is not None
    return outputs(folder), fake.count - before, time.monotonic() - started


def kill_point(session: Session, fake: CountingFake, since: int, requests: int, delay: float) -> int | None:
    """Wait until the session has sent `requests` requests (0: it may still be starting or reading its
    folder), then `delay` seconds more; its exit code if it ended by then, else None (kill it now)."""
    while fake.count - since < requests:
        if (code := session.wait(0.002)) is not None:
            return code
    return session.wait(delay)


def _identity(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns


def kill_at_rewrite(session: Session, manifest: Path, before: tuple[int, int]) -> int | None:
    """Wait until a resume has replaced run.json (its first snapshot, written as it starts); its exit code
    if it ended first, else None (kill it now: the moment a resume's records are most exposed)."""
    while True:
        with suppress(FileNotFoundError):
            if _identity(manifest) != before:
                return None
        if (code := session.wait(0.0005)) is not None:
            return code


def killed_run(fake: CountingFake, launch: Launcher, work: Path, spec: str, env: dict[str, str], *,
               kills: int, rng: random.Random, latency: float,
               kinds: Sequence[str] = ("requests", "rewrite", "event")) -> Report:
    """Run `spec`, SIGKILL its sessions `kills` times in all at random moments (resuming after each). A run
    that finishes before its share of kills landed is checked, and a fresh one takes the rest."""
    expected, reference_requests, _ = reference(fake, launch, work / "reference", spec, env)
    report = Report(agents=spec.count("task:") + spec.count("coordinator:"), reference_requests=reference_requests)
    started, first_request = time.monotonic(), fake.count
    identical: list[bool] = []
    while report.kills < kills or not identical:
        folder = _one_run(fake, launch, work / f"killed-{len(identical)}", spec, env, kills, rng, latency, kinds,
                          report)
        identical.append(outputs(folder) == expected)
    report.runs = len(identical)
    report.requests = fake.count - first_request
    report.identical = all(identical)
    report.seconds = time.monotonic() - started
    return report


def _one_run(fake: CountingFake, launch: Launcher, work: Path, spec: str, env: dict[str, str], kills: int,
             rng: random.Random, latency: float, kinds: Sequence[str], report: Report) -> Path:
    """One run of `spec`, killed until it finishes by itself or `report` has its `kills`; its folder."""
    work.mkdir(parents=True)
    (work / "spec.yaml").write_text(spec)
    done_before: set[str] = set()
    while True:
        folder = run_folder(work / "orchestration")
        argv = ["run", "spec.yaml", "--provider", "anthropic", *(["--resume", folder.name] if folder else [])]
        since, manifest = fake.count, _identity(folder / "run.json") if folder else None
        left = max(1, report.agents - len(done_before))  # every agent may be done while the run still closes
        kind = rng.choice(kinds) if report.kills < kills else "none"
        die_at = rng.choice((1, 1, rng.randint(1, 2 * left))) if kind == "event" else None
        session = launch(argv, env, work, die_at)
        report.sessions += 1
        if kind in ("none", "event"):
            code = session.wait(600)
            code = None if code == -signal.SIGKILL else code
        elif kind == "rewrite" and manifest:  # as the resume has rewritten run.json, before it gets further
            code = kill_at_rewrite(session, folder / "run.json", manifest)  # type: ignore[operator]
        else:
            code = kill_point(session, fake, since, rng.randint(0, left - 1), rng.uniform(0, latency))
        if code is None:
            session.kill()
            report.kills += 1
            report.kinds[kind] += 1
        asked = fake.asked(since)
        report.reasked.update(agent for agent in asked if agent in done_before)
        folder = run_folder(work / "orchestration")
        now_done = finished(folder) if folder else set()
        report.lost_in_flight += sum(1 for agent in asked if agent not in now_done)
        done_before = now_done
        if code is not None:
            assert code == 0, f"a session ended {code}: {(work / 'stderr.log').read_text()[-2000:]}"
            assert folder is not None
            return folder


def harness(sizes: Sequence[tuple[int, int]], *, latency_ms: float, concurrency: int, seed: int,
            work: Path, use_exec: bool) -> list[Report]:
    """`sizes`: (agents, kills) per run. Returns one report per run."""
    rng = random.Random(seed)
    reports = []
    with CountingFake(latency_ms) as fake, (nullcontext_launcher() if use_exec else forked_sessions()) as launch:
        env = {**os.environ, "ANTHROPIC_API_KEY": "sk-ant-made-up", "ANTHROPIC_BASE_URL": fake.api.base_url}
        for n, (agents, kills) in enumerate(sizes):
            spec = spec_text(agents, concurrency)
            kinds = ("requests", "rewrite") if use_exec else ("requests", "rewrite", "event")
            reports.append(killed_run(fake, launch, work / f"run-{n}", spec, env, kills=kills, rng=rng,
                                      latency=2 * latency_ms / 1000, kinds=kinds))
    return reports


@contextmanager
def nullcontext_launcher() -> Iterator[Launcher]:
    yield exec_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, nargs="*", default=[30, 300, 2000])
    parser.add_argument("--kills", type=int, nargs="*", default=[24, 18, 12], help="kills per run, in order")
    parser.add_argument("--latency-ms", type=float, default=30.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--exec", action="store_true", help="each session a fresh `python -m orchestra_magic`")
    parser.add_argument("--keep", metavar="DIR", help="keep the run folders here (default: a temporary folder)")
    args = parser.parse_args()
    kills = (args.kills * len(args.agents))[: len(args.agents)] if len(args.kills) < len(args.agents) else args.kills
    work = Path(args.keep) if args.keep else Path(__import__("tempfile").mkdtemp(prefix="kills-"))
    print(f"latency {args.latency_ms:g} ms, {args.concurrency} in flight, seed {args.seed}, "
          f"sessions {'exec' if args.exec else 'forked'}; folders in {work}", flush=True)
    try:
        reports = harness(list(zip(args.agents, kills, strict=False)), latency_ms=args.latency_ms,
                          concurrency=args.concurrency, seed=args.seed, work=work, use_exec=args.exec)
        for report in reports:
            print(report.line(), flush=True)
        total = sum(r.kills for r in reports)
        reasked = sum(sum(r.reasked.values()) for r in reports)
        print(f"total: {total} kills, {reasked} finished agents re-asked, "
              f"outputs identical in {sum(r.identical for r in reports)} of {len(reports)} runs")
    finally:
        if not args.keep:
            with suppress(OSError):
                shutil.rmtree(work)


if __name__ == "__main__":
    main()
