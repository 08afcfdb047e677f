"""CPU-bound fan-out: the `python` provider with 200 workers of ~0.2 s CPU each, local against Dask.

Locally the python provider runs a sync function with `asyncio.to_thread`, so agents overlap in a thread
pool but share one GIL: CPU-bound work uses one core however high the concurrency. On Dask each worker
*process* has its own GIL, so a 2-process `LocalCluster` can use both cores. Same spec, same function,
same engine (scheduling, journal, files in this process); only the executor differs. A bare process
pool doing the same work with no engine, measured in the same process at the same time, shows what the
cores allow at that moment (the machine may be shared). "This process's
CPU" is the engine's own work, plus, for Dask, the client and the `LocalCluster`'s scheduler and nannies,
which live in this process and compete with the workers for the same cores.

    python benchmarks/dask_cpu.py                       # 200 workers x 0.2 s, 2 worker processes
    python benchmarks/dask_cpu.py --agents 50 --cpu-seconds 0.1 --processes 2
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import orchestra_magic as om
from orchestra_magic.providers import AgentRequest

DOMAINS = 4


def burn(rounds: int) -> int:
    """Pure-Python arithmetic: holds the GIL the whole time, as parsing or scoring code does."""
    total = 0
    for i in range(rounds):
        total = (total + i * i) % 1_000_003
    return total


def calibrate(cpu_seconds: float) -> int:
    """Rounds of `burn` that take `cpu_seconds` of this machine's CPU (best of 3 short probes)."""
    probe = 200_000
    best = min(_cpu_of(probe) for _ in range(3))
    return int(probe * cpu_seconds / best)


def _cpu_of(rounds: int) -> float:
    start = time.thread_time()
    burn(rounds)
    return time.thread_time() - start


def crunch_with(rounds: int) -> Any:
    def crunch(request: AgentRequest) -> str:
        start, cpu = time.perf_counter(), time.thread_time()
        burn(rounds)
        return f"cpu {time.thread_time() - cpu:.4f} wall {time.perf_counter() - start:.4f}\nDone. pid {os.getpid()}"

    return crunch


def spec(agents: int, concurrency: int) -> dict[str, Any]:
    domains = [{"name": f"d{d}", "coordinator": "Count.",
                "workers": [{"task": f"Item {i}."} for i in range(d, agents, DOMAINS)]} for d in range(DOMAINS)]
    return {"name": "cpu", "concurrency": concurrency, "domains": domains}


def timed_run(agents: int, concurrency: int, rounds: int, **options: Any) -> tuple[float, om.Run]:
    root = tempfile.mkdtemp(prefix="dask-cpu-")
    start = time.perf_counter()
    run = om.run(spec(agents, concurrency), provider=om.PythonProvider(crunch_with(rounds)), root=root, **options)
    wall = time.perf_counter() - start
    assert run.status == "done", run.state.reason
    return wall, run


def cpu_and_processes(run: om.Run) -> tuple[list[float], float, set[str]]:
    """Each agent's CPU seconds, the share of a core agents got while running, the processes they ran in."""
    texts = [run.output(a.agent) for a in run.state.agents.values() if a.role == "worker"]
    cpu = [float(t.split()[1]) for t in texts]
    share = sum(cpu) / sum(float(t.split()[3]) for t in texts)
    pids = {t.rsplit("pid ", 1)[1].strip() for t in texts}
    return cpu, share, pids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--cpu-seconds", type=float, default=0.2)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    from distributed import Client, LocalCluster

    rounds = calibrate(args.cpu_seconds)
    print(f"{args.agents} workers x ~{args.cpu_seconds} s CPU ({rounds:,} rounds each), {DOMAINS} coordinators; "
          f"concurrency {args.concurrency}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")

    timed_run(DOMAINS, 1, 1000)  # imports and first-use costs are not what is measured
    cpu_before = time.process_time()
    local_wall, local = timed_run(args.agents, args.concurrency, rounds)
    local_cpu, local_share, local_pids = cpu_and_processes(local)
    local_engine = time.process_time() - cpu_before - sum(local_cpu)

    with ProcessPoolExecutor(args.processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(burn, [1000] * args.processes))  # started and warm
        start = time.perf_counter()
        list(pool.map(burn, [rounds] * args.agents))
        pool_wall = time.perf_counter() - start

    start = time.perf_counter()
    with LocalCluster(n_workers=args.processes, threads_per_worker=1, processes=True, dashboard_address=None) as lc, \
            Client(lc) as client:
        started = time.perf_counter() - start
        timed_run(DOMAINS, 1, 1000, client=client)  # the workers import the package and start the provider
        cpu_before = time.process_time()
        dask_wall, remote = timed_run(args.agents, args.concurrency, rounds, client=client)
        dask_engine = time.process_time() - cpu_before
    remote_cpu, remote_share, remote_pids = cpu_and_processes(remote)

    total_local, total_remote = sum(local_cpu), sum(remote_cpu)
    print("\n| executor | wall | agent CPU (sum) | CPU per agent (median) | core share while running | "
          "worker processes | this process's CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| local | {local_wall:.1f} s | {total_local:.1f} s | {statistics.median(local_cpu):.3f} s "
          f"| {local_share:.0%} | {len(local_pids)} | {local_engine:.1f} s |")
    print(f"| dask, {args.processes} processes | {dask_wall:.1f} s (+{started:.1f} s cluster start) | "
          f"{total_remote:.1f} s | {statistics.median(remote_cpu):.3f} s | {remote_share:.0%} | {len(remote_pids)} "
          f"| {dask_engine:.1f} s |")
    print(f"| bare process pool, {args.processes} processes (no engine, no files) | {pool_wall:.1f} s | | | | "
          f"{args.processes} | |")
    print(f"\nspeed-up over local: dask {local_wall / dask_wall:.2f}x ({local_wall / (dask_wall + started):.2f}x "
          f"counting the cluster start), the bare pool {local_wall / pool_wall:.2f}x; dask reaches "
          f"{pool_wall / dask_wall:.0%} of the bare pool's speed. Cores kept busy by agents: local "
          f"{total_local / local_wall:.2f}, dask {total_remote / dask_wall:.2f} of {args.processes}; "
          f"load average now {os.getloadavg()[0]:.1f}")

if __name__ == "__main__":  # the cluster's worker processes import this file again (spawn)
    main()
