"""429s received with adaptive limits against a fixed in-flight cap, under a requests-per-minute limit.

30 agents (27 workers in 3 domains, 3 coordinators) on the offline provider, whose fake Messages API
enforces 60 requests a minute the way the API may (a bucket of 6 refilled at 1 a second). Both runs
allow 32 agents in flight; one keeps the adaptive throttle (halve on 429/529, pause for retry-after,
pace by the rate-limit headers), the other a fixed cap that only retries each refused agent after its
own retry-after, as most fan-out code does. Same retry policy for both.

    python benchmarks/rate_limits.py [--rpm 60] [--agents-per-domain 9] [--cap 32]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from typing import Any

import orchestra_magic as om
from orchestra_magic.api import prepared
from orchestra_magic.engine.throttle import Throttle


def make_spec(per_domain: int, cap: int) -> dict[str, Any]:
    return {"concurrency": cap, "domains": [
        {"name": d, "coordinator": f"Synthesise {d}.", "workers": [{"task": f"Task {i} of {d}."}
                                                                  for i in range(per_domain)]}
        for d in ("a", "b", "c")]}


async def measure(adaptive: bool, rpm: int, per_domain: int, cap: int) -> tuple[float, int, int, int]:
    spec = make_spec(per_domain, cap)
    with tempfile.TemporaryDirectory() as root:
        async with prepared(spec, provider=om.OfflineProvider(rpm_limit=rpm), root=root) as engine:
            engine.throttle = Throttle(cap, adaptive=adaptive)
            started = time.perf_counter()
            state = await engine.run()
            seconds = time.perf_counter() - started
    return seconds, engine.throttle.rate_limited, state.counts["done"], state.counts["failed"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rpm", type=int, default=60)
    parser.add_argument("--agents-per-domain", type=int, default=9)
    parser.add_argument("--cap", type=int, default=32)
    args = parser.parse_args()
    agents = 3 * args.agents_per_domain + 3
    print(f"{agents} agents, in-flight cap {args.cap}, fake API limit {args.rpm} requests/minute\n")
    print("| throttle | 429s received | agents done | failed | wall time |")
    print("|---|---:|---:|---:|---:|")
    for adaptive in (False, True):
        seconds, refused, done, failed = asyncio.run(measure(adaptive, args.rpm, args.agents_per_domain, args.cap))
        name = "adaptive (default)" if adaptive else f"fixed cap {args.cap}"
        print(f"| {name} | {refused} | {done} | {failed} | {seconds:.1f} s |")


if __name__ == "__main__":
    main()
