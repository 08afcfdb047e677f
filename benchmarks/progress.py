"""What the terminal progress costs a run with many domains: CPU time with it against without it.

The CLI's progress (rich, on stderr) used to add one rich task per domain, each add redrawing every bar
so far: 31.6 s of CPU before the first event at 1,000 domains, 125.5 s at 2,000, all of it inside the
engine's event loop. It now draws a bounded number of rows from the run state at each refresh. Each
run here is the same spec on the python provider (answers at once, so the engine and the view are all
there is), in this process, first without progress, then with it, rendering into a terminal-sized
buffer as it would on stderr. Each is run `--repeat` times, alternating, and the least CPU time kept:
on a shared machine the spread between two identical runs is larger than the progress's cost.

    python benchmarks/progress.py                    # 1,000 and 2,000 domains of 1 worker
    python benchmarks/progress.py --domains 1000 --workers 9
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time

from rich.console import Console

import orchestra_magic as om
from orchestra_magic.display.progress import CliProgress
from orchestra_magic.providers import AgentRequest


def spec(domains: int, workers: int) -> dict[str, object]:
    return {"name": "bench", "concurrency": 64, "domains": [
        {"name": f"d{d}", "coordinator": "Synthesise.", "workers": [{"task": f"Task {i}."} for i in range(workers)]}
        for d in range(domains)]}


def answer(request: AgentRequest) -> str:
    return "A finding.\nDone. Found it."


def cpu_seconds(domains: int, workers: int, progress: bool) -> float:
    view = CliProgress(Console(file=io.StringIO(), force_terminal=True, width=120, height=40))
    listeners = (view.update,) if progress else ()
    with tempfile.TemporaryDirectory() as root:
        start = time.process_time()
        with view:
            om.run(spec(domains, workers), provider=om.PythonProvider(answer, answer), root=root,
                   listeners=listeners)
        return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--domains", type=int, nargs="*", default=[1000, 2000])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cpu_seconds(100, 1, progress=True)  # imports and first-call costs, out of the figures
    for domains in args.domains:
        runs = [(cpu_seconds(domains, args.workers, False), cpu_seconds(domains, args.workers, True))
                for _ in range(args.repeat)]
        without, with_progress = min(r[0] for r in runs), min(r[1] for r in runs)
        print(f"{domains:,} domains x {args.workers + 1} agents: {without:.2f} s CPU without progress, "
              f"{with_progress:.2f} s with it (x{with_progress / without:.2f})")


if __name__ == "__main__":
    main()
