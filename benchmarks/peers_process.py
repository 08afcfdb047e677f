"""`python script.py` against `orchestra run spec.yaml`: both as whole processes, start-up included.

The script is the one a user weighing orchestra_magic would write instead: `AsyncAnthropic`, one
`asyncio.Semaphore`, `gather` over `messages.create`, workers first, then each domain's coordinator with
its workers' texts; key and address from the environment, the SDK's defaults otherwise. It runs twice:
as written, and with the SDK's aiohttp transport (`http_client=anthropic.DefaultAioHttpClient()`, which
orchestra_magic uses), so the table shows how much of the difference is the transport alone. orchestra_magic
runs the same fan-out from `peers.orchestra_spec` (the same `max_tokens` for workers and coordinators,
the same cap, `fan_in` set so no sub-coordinators are added): both make the same 1,005 calls to the
same `orchestra fake-api` child.

Each run is a child process; its wall time is measured from `Popen` to its exit, its CPU (user + system)
and peak RSS come from `os.wait4`'s rusage: the client's own figures, not the fake API's. The contenders
alternate (the order rotates each round) and the medians are shown. Used by `peers.py --whole-process`.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCRIPT = '''"""The naive fan-out: one semaphore, gather over messages.create."""
import asyncio
import sys

import anthropic

WORKERS, CAP, DOMAINS = int(sys.argv[1]), int(sys.argv[2]), {domains}
MODEL, MAX_TOKENS, WORKER_MAX_TOKENS = {model!r}, {max_tokens}, {worker_max_tokens}
WORKER_SYSTEM = {worker_system!r}
COORDINATOR_SYSTEM = {coordinator_system!r}


async def main() -> None:
    # ANTHROPIC_API_KEY and ANTHROPIC_BASE_URL from the environment; "aiohttp": the SDK's other transport
    transport = {{"http_client": anthropic.DefaultAioHttpClient()}} if sys.argv[3:] == ["aiohttp"] else {{}}
    client = anthropic.AsyncAnthropic(**transport)
    slots = asyncio.Semaphore(CAP)

    async def ask(system: str, prompt: str, max_tokens: int = MAX_TOKENS) -> str:
        async with slots:
            message = await client.messages.create(model=MODEL, max_tokens=max_tokens, system=system,
                                                   messages=[{{"role": "user", "content": prompt}}])
        return "".join(block.text for block in message.content if block.type == "text")

    tasks = [(i % DOMAINS, f"Task {{i}}: find what the sources say about question {{i}}.") for i in range(WORKERS)]
    texts = await asyncio.gather(*(ask(WORKER_SYSTEM, f"Domain: d{{d}}\\n\\nYour task:\\n{{t}}", WORKER_MAX_TOKENS)
                                   for d, t in tasks))
    by_domain = [[text for (d, _), text in zip(tasks, texts) if d == domain] for domain in range(DOMAINS)]

    def synthesis_prompt(domain: int) -> str:
        results = "\\n".join(f'<worker_result id="w{{i}}">\\n{{t}}\\n</worker_result>'
                            for i, t in enumerate(by_domain[domain]))
        return (f"Domain: d{{domain}}\\n\\nYour task:\\nSynthesise the findings.\\n\\n{{results}}\\n\\n"
                "Write the full synthesis, then a summary of at most 150 words inside <summary></summary> tags.")

    syntheses = await asyncio.gather(*(ask(COORDINATOR_SYSTEM, synthesis_prompt(d)) for d in range(DOMAINS)))
    print(len(texts), sum("<summary>" in s for s in syntheses))
    await client.close()


asyncio.run(main())
'''


@dataclass
class ProcessFigures:
    """Per contender: one entry per round."""

    name: str
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)  # user + system seconds of the child
    rss: list[float] = field(default_factory=list)  # peak resident set, bytes

    def median(self, what: str) -> float:
        return float(statistics.median(getattr(self, what)))


@dataclass(frozen=True)
class Child:
    """One contender's command: run in `folder` with `env`, then `check` its outcome (raises when the run
    did not do the whole job)."""

    command: list[str]
    check: Callable[[str, Path], None]


def write_contenders(folder: Path, workers: int, concurrency: int, prompts: dict[str, Any],
                     spec: dict[str, Any]) -> dict[str, Callable[[Path], Child]]:
    """The script and the spec, written once into `folder`; each contender then runs in a fresh folder."""
    script = folder / "naive_create.py"
    script.write_text(SCRIPT.format(**prompts), encoding="utf-8")
    spec_file = folder / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    calls = workers + prompts["domains"]

    def check_script(out: str, _: Path) -> None:
        if out.split() != [str(workers), str(prompts["domains"])]:
            raise RuntimeError(f"the naive script did not do the whole job: {out!r}")

    def check_orchestra(_: str, where: Path) -> None:
        files = list(where.glob("*/workers/*.md")) + list(where.glob("*/synthesis/*.md"))
        if len(files) != calls:
            raise RuntimeError(f"orchestra run wrote {len(files)} outputs, not {calls}")

    return {
        "naive create script": lambda run: Child([sys.executable, str(script), str(workers), str(concurrency)],
                                                 check_script),
        "naive script, aiohttp": lambda run: Child([sys.executable, str(script), str(workers), str(concurrency),
                                                    "aiohttp"], check_script),
        "orchestra run": lambda run: Child([sys.executable, "-m", "orchestra_magic", "run", str(spec_file),
                                            "--provider", "anthropic", "--root", str(run)], check_orchestra),
    }


def run_child(child: Child, folder: Path, base_url: str) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS bytes) of one whole process, from start to exit."""
    env = {**os.environ, "ANTHROPIC_API_KEY": "x", "ANTHROPIC_BASE_URL": base_url}
    out_file, err_file = folder / "stdout.txt", folder / "stderr.txt"
    with out_file.open("wb") as out, err_file.open("wb") as err:
        start = time.perf_counter()
        process = subprocess.Popen(child.command, cwd=folder, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)  # reaped here, so its rusage is the child's alone
        wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(child.command)} failed:\n{err_file.read_text()[-2000:]}")
    child.check(out_file.read_text(), folder)
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024.0


def measure(contenders: dict[str, Callable[[Path], Child]], scratch: Callable[[], Path], base_url: str,
            rounds: int) -> list[ProcessFigures]:
    figures = {name: ProcessFigures(name) for name in contenders}
    names = list(contenders)
    for round_ in range(rounds):
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            folder = scratch()
            wall, cpu, rss = run_child(contenders[name](folder), folder, base_url)
            figures[name].walls.append(wall)
            figures[name].cpus.append(cpu)
            figures[name].rss.append(rss)
            print(f"  round {round_ + 1}: {name:<20} wall {wall:6.2f} s  CPU {cpu:6.2f} s  "
                  f"peak RSS {rss / 2**20:6.1f} MiB", file=sys.stderr, flush=True)
    return list(figures.values())


def table(figures: list[ProcessFigures], calls: int) -> str:
    base = figures[0]
    rows = ["| whole process | wall time | client CPU | CPU per call | peak RSS | wall ratio | CPU ratio | RSS ratio |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for f in figures:
        wall, cpu, rss = f.median("walls"), f.median("cpus"), f.median("rss")
        rows.append(f"| {f.name} | {wall:.2f} s | {cpu:.2f} s | {cpu / calls * 1000:.2f} ms | {rss / 2**20:.0f} MiB | "
                    f"{wall / base.median('walls'):.2f} | {cpu / base.median('cpus'):.2f} | "
                    f"{rss / base.median('rss'):.2f} |")
    return "\n".join(rows)
