"""What fsync costs a run folder, per agent, against the same writes without it (same process, same disk).

A run writes, per agent, one output file (atomically: a temporary file, then a rename) and one journal
line; every few seconds it folds the journal into run.json. Measured here, each way:

- output, plain: what the engine does per agent (the default);
- output, durable: the file and its folder fsynced before the rename is relied on (what it would take for
  an agent finished before a power cut never to be asked again, with the journal line below);
- journal line, durable: the line fsynced after it is appended;
- run.json of N agents, plain and durable: what the default pays, once per snapshot (seconds apart).

    python benchmarks/fsync.py                    # in a temporary folder under the current directory
    python benchmarks/fsync.py --dir /mnt/runs --agents 500 --snapshot-agents 1000

Run it on the disk run folders go to: /tmp is often a RAM disk, where fsync costs nothing.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from orchestra_magic.runfolder.atomic import write_atomic
from orchestra_magic.runfolder.folder import manifest_chunks
from orchestra_magic.state.run import AgentState, RunState
from orchestra_magic.state.usage import Usage

OUTPUT = ("A finding, about two kilobytes long, as a worker writes it. " * 34 + "\nDone. Found it.\n")


def per_call(calls: int, call: Callable[[int], None]) -> float:
    """Seconds per call, the best of three rounds (the disk is shared; the best round is the disk's own cost)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for i in range(calls):
            call(i)
        best = min(best, (time.perf_counter() - start) / calls)
    return best


def outputs(folder: Path, agents: int) -> tuple[float, float, float]:
    """Seconds per agent: output written plain, output written durably, journal line appended durably."""
    plain = per_call(agents, lambda i: write_atomic(folder / f"plain-{i}.md", OUTPUT))
    durable = per_call(agents, lambda i: write_atomic(folder / f"durable-{i}.md", OUTPUT, durable=True))
    fd = os.open(folder / "journal.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    line = b'{"event":"AgentFinished","agent":"w1","at":1.0,"status":"done","input_tokens":120}\n'

    def append(i: int) -> None:
        os.write(fd, line)
        os.fsync(fd)

    try:
        journal = per_call(agents, append)
    finally:
        os.close(fd)
    return plain, durable, journal


def snapshot(folder: Path, agents: int) -> tuple[float, float]:
    """Seconds per run.json of `agents` agents: plain, durable."""
    rows = {f"w{i}": AgentState(f"w{i}", "worker", "d0", f"workers/w{i}.md", status="done", attempts=1,
                                usage=Usage(120, 150), input_hash="0" * 32, output_hash="1" * 32)
            for i in range(agents)}
    state = RunState("run-1", "bench", "anthropic", 1.0, rows)
    plain = per_call(5, lambda i: write_atomic(folder / "run.json", manifest_chunks(state)))
    durable = per_call(5, lambda i: write_atomic(folder / "run.json", manifest_chunks(state), durable=True))
    return plain, durable


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default=".", help="where to write (default: the current directory)")
    parser.add_argument("--agents", type=int, default=300)
    parser.add_argument("--snapshot-agents", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fsync-bench-", dir=args.dir) as work:
        folder = Path(work)
        plain, durable, journal = outputs(folder, args.agents)
        snap_plain, snap_durable = snapshot(folder, args.snapshot_agents)
    us = 1e6
    print(f"per agent ({args.agents} outputs of {len(OUTPUT):,} bytes, best of 3, in {Path(args.dir).resolve()}):")
    print(f"  output, plain (the default)      {plain * us:8.0f} µs")
    print(f"  output, file + folder fsynced    {durable * us:8.0f} µs   ratio {durable / plain:6.1f}x")
    print(f"  journal line, fsynced            {journal * us:8.0f} µs")
    print(f"  both durable, against plain      {(durable + journal) * us:8.0f} µs   ratio "
          f"{(durable + journal) / plain:6.1f}x")
    print(f"run.json of {args.snapshot_agents:,} agents, once per snapshot (the default fsyncs it):")
    print(f"  plain {snap_plain * 1e3:7.2f} ms   durable {snap_durable * 1e3:7.2f} ms   ratio "
          f"{snap_durable / snap_plain:5.2f}x")


if __name__ == "__main__":
    main()
