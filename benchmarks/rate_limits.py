"""429s received under rate limits: adaptive against a fixed in-flight cap (a requests-per-minute limit),
and pacing by the token buckets against pacing by the request bucket alone (an input-tokens limit).

30 agents (27 workers in 3 domains, 3 coordinators) on the offline provider, whose fake Messages API
enforces its limits the way the API may (buckets refilled continuously).

1. Requests: 60 a minute (a bucket of 6 refilled at 1 a second). Both runs allow 32 agents in flight;
   one keeps the adaptive throttle (halve on 429/529, pause for retry-after, pace by the rate-limit
   headers), the other a fixed cap that only retries each refused agent after its own retry-after, as
   most fan-out code does.
2. Input tokens: 60,000 a minute (a bucket of 1,000 refilled at 1,000 a second), `concurrency: 8`. Both
   runs are adaptive; one reads only the request bucket's headers (the throttle before token pacing),
   the other the token buckets' too.

    python benchmarks/rate_limits.py [--rpm 60] [--itpm 60000] [--itpm-burst 1000] [--cap 32]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import tempfile
import time
from typing import Any

import orchestra_magic as om
from orchestra_magic.api import prepared
from orchestra_magic.engine.throttle import Throttle
from orchestra_magic.providers.base import RateLimit


class RequestPacing(Throttle):
    """The throttle before token pacing: it reads only the request bucket's headers."""

    def _pace(self, rate_limit: RateLimit) -> None:
        super()._pace(dataclasses.replace(rate_limit, input_tokens=None, output_tokens=None))


def make_spec(per_domain: int, cap: int) -> dict[str, Any]:
    return {"concurrency": cap, "domains": [
        {"name": d, "coordinator": f"Synthesise {d}.", "workers": [{"task": f"Task {i} of {d}."}
                                                                  for i in range(per_domain)]}
        for d in ("a", "b", "c")]}


async def measure(throttle: Throttle, cap: int, **limits: int) -> tuple[float, int, int, int]:
    spec = make_spec(9, cap)
    with tempfile.TemporaryDirectory() as root:
        async with prepared(spec, provider=om.OfflineProvider(**limits), root=root) as engine:
            engine.throttle = throttle
            started = time.perf_counter()
            state = await engine.run()
            seconds = time.perf_counter() - started
    return seconds, engine.throttle.rate_limited, state.counts["done"], state.counts["failed"]


def row(name: str, result: tuple[float, int, int, int]) -> str:
    seconds, refused, done, failed = result
    return f"| {name} | {refused} | {done} | {failed} | {seconds:.1f} s |"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rpm", type=int, default=60)
    parser.add_argument("--itpm", type=int, default=60_000)
    parser.add_argument("--itpm-burst", type=int, default=1_000)
    parser.add_argument("--cap", type=int, default=32)
    args = parser.parse_args()
    header = "| throttle | 429s received | agents done | failed | wall time |\n|---|---:|---:|---:|---:|"
    print(f"30 agents, in-flight cap {args.cap}, fake API limit {args.rpm} requests/minute\n\n{header}")
    for adaptive in (False, True):
        result = asyncio.run(measure(Throttle(args.cap, adaptive=adaptive), args.cap, rpm_limit=args.rpm))
        print(row("adaptive (default)" if adaptive else f"fixed cap {args.cap}", result))
    print(f"\n30 agents, 8 in flight, fake API limit {args.itpm:,} input tokens/minute "
          f"(bucket {args.itpm_burst:,})\n\n{header}")
    for throttle, name in ((RequestPacing(8), "request headers only"), (Throttle(8), "token buckets too (default)")):
        print(row(name, asyncio.run(measure(throttle, 8, itpm_limit=args.itpm, itpm_burst=args.itpm_burst))))


if __name__ == "__main__":
    main()
