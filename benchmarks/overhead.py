"""Engine overhead against the bare minimum: `asyncio.gather` + a semaphore doing the same awaits.

Each agent is a fixed-latency await (no network), so what differs is only the engine's own work:
prompt rendering, scheduling, events, journal lines, one output file per agent. Both sides use the
same structure (the spec's reduction tree: workers, sub-coordinators where a domain has more than
`fan_in` workers, each domain's coordinator; every reader starts when its own inputs are done) and the
same in-flight cap. Besides wall time, the engine's CPU per agent (process CPU time of the run, divided
by its agents) is reported: on a shared machine it moves far less than wall time.

    python benchmarks/overhead.py                 # 30, 1,000 and 10,000 agents
    python benchmarks/overhead.py --agents 1000 --latency-ms 20 --concurrency 100
    python benchmarks/overhead.py --agents 1000 --root memory://bench   # a URL root (fsspec's memory store)
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import tracemalloc
from collections.abc import Awaitable, Callable

import orchestra_magic as om
from orchestra_magic.providers import AgentRequest

DOMAINS = 5


def spec(agents: int, concurrency: int) -> dict[str, object]:
    workers = agents - DOMAINS
    return {
        "name": "bench",
        "concurrency": concurrency,
        "domains": [
            {"name": f"d{d}", "coordinator": "Synthesise.",
             "workers": [{"task": f"Task {i}."} for i in range(d, workers, DOMAINS)]}
            for d in range(DOMAINS)
        ],
    }


def structure(agents: int, concurrency: int) -> dict[str, tuple[str, ...]]:
    """Each agent's inputs, as the engine plans them (two levels where the engine has no tree)."""
    plans = getattr(om.plan(spec(agents, concurrency)), "plans", None)
    if plans is not None:
        return {p.key: tuple(p.inputs) for p in plans}
    body = spec(agents, concurrency)
    tree: dict[str, tuple[str, ...]] = {}
    for n, domain in enumerate(body["domains"]):  # type: ignore[attr-defined]
        ids = tuple(f"d{n}-{i}" for i in range(len(domain["workers"])))
        tree.update({i: () for i in ids})
        tree[f"coordinator:d{n}"] = ids
    return tree


async def baseline(tree: dict[str, tuple[str, ...]], concurrency: int, latency: float) -> None:
    semaphore = asyncio.Semaphore(concurrency)
    tasks: dict[str, asyncio.Task[None]] = {}

    async def agent(inputs: tuple[str, ...]) -> None:
        if inputs:
            await asyncio.gather(*(tasks[i] for i in inputs))
        async with semaphore:
            await asyncio.sleep(latency)

    for key, inputs in tree.items():  # inputs come first in the plan's order
        tasks[key] = asyncio.create_task(agent(inputs))
    await asyncio.gather(*tasks.values())


async def engine(agents: int, concurrency: int, latency: float, url_root: str | None = None) -> None:
    async def answer(request: AgentRequest) -> str:
        await asyncio.sleep(latency)
        return "A finding.\nDone. Found it."

    provider = om.PythonProvider(answer, answer)
    if url_root:
        result = await om.arun(spec(agents, concurrency), provider=provider, root=url_root)
        assert result.status == "done", result
        return
    with tempfile.TemporaryDirectory() as root:
        result = await om.arun(spec(agents, concurrency), provider=provider, root=root)
        assert result.status == "done", result


def timed(run: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one run."""
    start, cpu = time.perf_counter(), time.process_time()
    asyncio.run(run())  # type: ignore[arg-type]
    return time.perf_counter() - start, time.process_time() - cpu


def peak_mib(run: Callable[[], Awaitable[None]]) -> float:
    tracemalloc.start()
    asyncio.run(run())  # type: ignore[arg-type]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def measure(agents: int, concurrency: int, latency: float, repeats: int, root: str | None = None) -> None:
    tree = structure(agents, concurrency)

    def base() -> Awaitable[None]:
        return baseline(tree, concurrency, latency)

    def ours() -> Awaitable[None]:
        return engine(agents, concurrency, latency, root)

    base_s, base_cpu = min(timed(base) for _ in range(repeats))
    ours_s, ours_cpu = min(timed(ours) for _ in range(repeats))
    calls = len(tree)  # every agent the engine runs, sub-coordinators included
    per_agent_us = (ours_s - base_s) / calls * 1e6
    print(f"{agents:>6} agents ({calls:,} with the tree)  baseline {base_s:7.3f} s  engine {ours_s:7.3f} s  "
          f"ratio {ours_s / base_s:5.3f}  overhead {per_agent_us:6.0f} µs/agent  engine CPU "
          f"{ours_cpu / calls * 1e6:5.0f} µs/agent (baseline {base_cpu / calls * 1e6:4.0f})  "
          f"peak memory {peak_mib(base):6.1f} MiB vs {peak_mib(ours):6.1f} MiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, nargs="*", default=[30, 1000, 10000])
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--root", help="a URL root for the engine's run folders (default: a temporary folder)")
    args = parser.parse_args()
    print(f"latency {args.latency_ms:g} ms per agent, {args.concurrency} in flight, best of {args.repeats}")
    for agents in args.agents:
        measure(agents, args.concurrency, args.latency_ms / 1000, args.repeats, args.root)


if __name__ == "__main__":
    main()
