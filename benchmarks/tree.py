"""The reduction tree at scale, against the fake Messages API over HTTP (the real SDK, no key).

    python benchmarks/tree.py                      # all three parts
    python benchmarks/tree.py --part window        # 1,000 workers, ~2,000-token outputs, real windows
    python benchmarks/tree.py --part wide --workers 10000
    python benchmarks/tree.py --part dry-run
    python benchmarks/tree.py --part resume        # 1,000 workers, one edited, requests counted

- window: one domain of 1,000 workers writing ~2,000 tokens each, the fake enforcing a 200,000-token
  window. With fan_in 8 every agent finishes and no request carries more than 8 results; with fan_in
  1,000 and the planner's window bound lifted (today's two levels: one coordinator reads all 1,000) the
  coordinator's prompt is ~2M tokens and the fake answers 400, after every worker was paid for.
- wide: 10,000 workers in 5 domains, offline: the most results any request carried, the largest prompt
  against its window, and what the parent holds (the domain summaries).
- resume: after a finished 1,000-worker run, one worker's task is edited; the resume sends 1 + 4
  requests (the worker, its 3 sub-coordinators and the coordinator), counted at the fake.
- dry-run: `orchestra run SPEC --dry-run` of a 10,000-worker spec, as a whole process (start-up
  included), median of 3.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

import orchestra_magic as om
from orchestra_magic import pricing
from orchestra_magic.fake.server import FakeMessagesAPI
from orchestra_magic.providers.anthropic.provider import AnthropicProvider

MODEL = "claude-haiku-4-5"


def spec(domains: dict[str, int], **settings: Any) -> dict[str, Any]:
    return {"name": "tree", "model": MODEL, "concurrency": 100, **settings,
            "domains": [{"name": name, "coordinator": f"Synthesise what the workers of {name} found.",
                         "workers": [{"task": f"Find fact {i} about {name}."} for i in range(n)]}
                        for name, n in domains.items()]}


async def run_on_fake(fake: FakeMessagesAPI, body: dict[str, Any], root: str) -> om.Run:
    base_url = await fake.start()
    try:
        return await om.arun(body, provider=AnthropicProvider(api_key="sk-bench", base_url=base_url), root=root)
    finally:
        await fake.stop()


def carried(fake: FakeMessagesAPI) -> int:
    return max(str(body["messages"]).count("</worker_result>") for body in fake.requests)


def largest_prompt(fake: FakeMessagesAPI) -> int:
    return max(len(str(body["system"])) + len(str(body["messages"])) for body in fake.requests) // 4


def window_part(workers: int) -> None:
    print(f"window: 1 domain of {workers:,} workers, ~2,000-token outputs, fake window 200,000 tokens")
    body = spec({"a": workers}, roles={"worker": {"max_tokens": 2100}})
    for fan_in, lifted in ((8, False), (workers, True)):
        fake = FakeMessagesAPI(output_tokens=2000, context_window=200_000)
        if lifted:  # today's two levels: the planner may put all of them in one context
            pricing.CONTEXT_WINDOWS[MODEL] = 100_000_000
        try:
            with tempfile.TemporaryDirectory() as root:
                started = time.perf_counter()
                result = asyncio.run(run_on_fake(fake, {**body, "fan_in": fan_in}, root))
                seconds = time.perf_counter() - started
        finally:
            pricing.CONTEXT_WINDOWS[MODEL] = pricing.DEFAULT_WINDOW
        statuses = result.agents.status.value_counts().to_dict()
        failed = result.agents[result.agents.status == "failed"].error.tolist()
        print(f"  fan_in {fan_in:>5}: {result.status:<6} {statuses}  400s: {fake.responses[400]}  "
              f"most results in one request: {carried(fake):,}  largest prompt ~{largest_prompt(fake):,} tokens  "
              f"{seconds:.1f} s" + (f"\n    failed: {failed[0][:160]}" if failed else ""))


def wide_part(workers: int) -> None:
    per = workers // 5
    print(f"wide: {workers:,} workers in 5 domains, offline")
    fake = FakeMessagesAPI()
    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        result = asyncio.run(run_on_fake(fake, spec({f"d{i}": per for i in range(5)}), root))
        seconds = time.perf_counter() - started
    print(f"  {result.status}: {result.state.total:,} agents ({len(fake.requests):,} requests) in {seconds:.1f} s; "
          f"most results in one request: {carried(fake)}; largest prompt ~{largest_prompt(fake):,} tokens of "
          f"{pricing.window_of(MODEL):,}; the parent holds ~{result.state.parent_tokens:,} tokens")


def resume_part(workers: int) -> None:
    """Edit one worker after a finished run: only it and its ancestors run again, counted at the fake."""
    body = spec({"a": workers})
    with tempfile.TemporaryDirectory() as root:
        first = asyncio.run(run_on_fake(FakeMessagesAPI(), body, root))
        body["domains"][0]["workers"][workers // 2]["task"] = "Find a different fact."
        fake = FakeMessagesAPI()
        again = asyncio.run(_resume(fake, body, root, first))
    ancestors = math.ceil(math.log(workers, 8) - 1e-9)
    print(f"resume: {workers:,} workers, one edited: {len(fake.requests)} requests at the fake "
          f"(1 worker + {ancestors} ancestors expected); {again.status}")


async def _resume(fake: FakeMessagesAPI, body: dict[str, Any], root: str, first: om.Run) -> om.Run:
    base_url = await fake.start()
    try:
        return await om.arun(body, provider=AnthropicProvider(api_key="sk-bench", base_url=base_url), root=root,
                             resume=first.path)
    finally:
        await fake.stop()


def dry_run_part(workers: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.yaml"
        path.write_text(yaml.safe_dump(spec({f"d{i}": workers // 5 for i in range(5)})))
        times, out = [], ""
        for _ in range(3):
            started = time.perf_counter()
            out = subprocess.run([sys.executable, "-m", "orchestra_magic", "run", str(path), "--dry-run"],
                                 capture_output=True, text=True, check=True, env=os.environ).stdout
            times.append(time.perf_counter() - started)
    print(f"dry-run of {workers:,} workers (whole process): median {statistics.median(times):.2f} s "
          f"(runs: {', '.join(f'{t:.2f}' for t in times)})")
    print("\n".join("  " + line for line in out.splitlines()[:12]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("window", "wide", "dry-run", "resume"), action="append")
    parser.add_argument("--workers", type=int, help="workers (default 1,000 for window, 10,000 otherwise)")
    args = parser.parse_args()
    parts = args.part or ["dry-run", "window", "resume", "wide"]
    if "dry-run" in parts:
        dry_run_part(args.workers or 10_000)
    if "window" in parts:
        window_part(args.workers or 1_000)
    if "resume" in parts:
        resume_part(args.workers or 1_000)
    if "wide" in parts:
        wide_part(args.workers or 10_000)


if __name__ == "__main__":
    main()
