"""What a URL root costs: the same run on a local folder, on fsspec's memory store, and on a memory
store that takes `--io-ms` for every put and every read (standing in for an object store's round trip).

Each agent is a fixed-latency await, as in `overhead.py`; domains have 8 workers each, as the method
advises. Printed per root: wall time, and the puts and reads the store was asked for per agent.

    python benchmarks/storage.py                       # 1,000 agents, 50 ms each, 100 in flight, 20 ms I/O
    python benchmarks/storage.py --agents 300 --io-ms 50
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from typing import Any

from fsspec.implementations.memory import MemoryFileSystem
from fsspec.registry import register_implementation

import orchestra_magic as om
from orchestra_magic.providers import AgentRequest

WORKERS_PER_DOMAIN = 8


class SlowMemory(MemoryFileSystem):  # type: ignore[misc]
    """The memory store, with a fixed delay per put and per read, counting both."""

    protocol = "slowmemory"
    store: dict[str, Any] = {}  # noqa: RUF012  (its own store, not the memory:// one)
    pseudo_dirs = [""]  # noqa: RUF012
    delay = 0.0
    puts = reads = 0

    @classmethod
    def _strip_protocol(cls, path: str) -> str:
        return str(super()._strip_protocol(path.replace("slowmemory://", "memory://", 1)))

    def pipe_file(self, path: str, value: bytes, *args: Any, **kwargs: Any) -> None:
        type(self).puts += 1
        time.sleep(self.delay)
        super().pipe_file(path, value, *args, **kwargs)

    def cat_file(self, path: str, *args: Any, **kwargs: Any) -> bytes:
        type(self).reads += 1
        time.sleep(self.delay)
        return bytes(super().cat_file(path, *args, **kwargs))


def spec(agents: int, concurrency: int) -> dict[str, Any]:
    domains = max(1, agents // (WORKERS_PER_DOMAIN + 1))
    return {"name": "bench", "concurrency": concurrency, "domains": [
        {"name": f"d{d}", "coordinator": "Synthesise.",
         "workers": [{"task": f"Task {i} of {d}."} for i in range(WORKERS_PER_DOMAIN)]}
        for d in range(domains)]}


def timed_run(agents: int, concurrency: int, latency: float, root: str) -> float:
    async def answer(request: AgentRequest) -> str:
        await asyncio.sleep(latency)
        return "A finding.\nDone. Found it."

    start = time.perf_counter()
    result = om.run(spec(agents, concurrency), provider=om.PythonProvider(answer, answer), root=root)
    assert result.status == "done", result
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--io-ms", type=float, default=20.0)
    args = parser.parse_args()
    register_implementation("slowmemory", SlowMemory, clobber=True)
    latency = args.latency_ms / 1000
    agents = len(spec(args.agents, 1)["domains"]) * (WORKERS_PER_DOMAIN + 1)
    print(f"{agents} agents ({WORKERS_PER_DOMAIN} workers a domain), {args.latency_ms:g} ms each, "
          f"{args.concurrency} in flight")
    with tempfile.TemporaryDirectory() as local:
        timed_run(10, args.concurrency, latency, local)  # warm up: imports, first thread
        print(f"  local folder           {timed_run(args.agents, args.concurrency, latency, local):7.2f} s")
    print(f"  memory://              {timed_run(args.agents, args.concurrency, latency, 'memory://bench'):7.2f} s")
    SlowMemory.delay = args.io_ms / 1000
    seconds = timed_run(args.agents, args.concurrency, latency, "slowmemory://bench")
    print(f"  {args.io_ms:g} ms per put or read {seconds:7.2f} s  "
          f"({SlowMemory.puts / agents:.2f} puts and {SlowMemory.reads / agents:.2f} reads per agent)")


if __name__ == "__main__":
    main()
