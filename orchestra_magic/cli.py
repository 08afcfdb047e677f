"""The `orchestra` command: `run` a spec, `show` a finished run, serve the `fake-api`.

Exit codes: 0 every agent done, 1 some agent failed or the run was stopped, 2 bad input (one clear line on
stderr, never a traceback), 130 interrupted with Ctrl-C, 143 stopped with SIGTERM (both stop gracefully: the
run ends `cancelled` and the folder can be resumed).
"""

from __future__ import annotations

import argparse
import gc
import os
import shlex
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import yaml

from .errors import UsageError
from .threads import settle

if TYPE_CHECKING:
    from rich.console import Console


ROOT_HELP = ("where run folders are: a folder or a URL such as s3://bucket/runs (default: $ORCHESTRA_ROOT, "
             "else ./orchestration)")


def entry() -> NoReturn:
    """The `orchestra` command: `main`, then an exit that does not walk the heap again: Python's shutdown
    collects it repeatedly as it clears modules (~0.4 s of CPU after a run), for memory the system takes
    back anyway (`gc.freeze`)."""
    code = main()
    gc.freeze()
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with warnings.catch_warnings():  # restores `showwarning` for an in-process caller
            warnings.showwarning = _warning_line
            return int(args.handler(args))
    except UsageError as exc:
        print(f"orchestra: {exc}", file=sys.stderr)
        return 2
    except Terminated:
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        return 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (argparse prints the whole usage first), still exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


class Terminated(KeyboardInterrupt):
    """SIGTERM (what `kill`, systemd, Docker and batch schedulers send): stops a run the way Ctrl-C does."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def _stop_on_sigterm() -> Any:
    """Make SIGTERM a graceful stop while a run is in progress; returns the handler to put back."""
    return signal.signal(signal.SIGTERM, _terminate)


def _warning_line(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """Our warnings as one line each (`orchestra: warning: …`), not Python's file-and-line form."""
    print(f"orchestra: warning: {message}", file=sys.stderr)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="orchestra", description="Run many LLM agents; keep only summaries.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run a spec (or resume a run) and print the summaries")
    run.add_argument("spec", nargs="?", help="the spec, a YAML file (optional with --resume: the run's own "
                     "spec.yaml is used; given, it is an edit)")
    run.add_argument("--provider", help="anthropic (default), offline (simulated, no key), bedrock, vertex, "
                     "foundry (Claude on a cloud) or compatible (an Anthropic-compatible server at ANTHROPIC_BASE_URL)")
    run.add_argument("--root", help=ROOT_HELP)
    run.add_argument("--concurrency", type=int, help="most agents in flight at once (default: the spec's, or 8)")
    run.add_argument("--resume", metavar="RUN_ID", help="continue the run folder <root>/RUN_ID, as it was run "
                     "(provider, variables, tools, concurrency and executor are recorded in it; given again, they "
                     "override)")
    run.add_argument("--dry-run", action="store_true",
                     help="print the tree (levels, agents, most inputs per context) and the estimate; run nothing")
    run.add_argument("--var", action="append", default=[], metavar="K=V", help="a variable for the spec's templates")
    run.add_argument("--tools", metavar="FILE.py", help="a Python file whose functions the spec's `tools:` may name")
    run.add_argument("--executor", choices=("local", "dask"),
                     help="where agents run: local (default) or dask (a cluster; see --scheduler)")
    run.add_argument("--scheduler", metavar="ADDRESS",
                     help="a Dask scheduler, e.g. tcp://10.0.0.5:8786 (implies --executor dask; without it, "
                          "--executor dask starts a local cluster for the run)")
    run.set_defaults(handler=_run)

    show = commands.add_parser("show", help="print a finished run's summaries and agent counts")
    show.add_argument("run_dir", metavar="RUN_DIR_OR_ID", help="a run id under the root (see `orchestra runs`), "
                      "or a run folder, e.g. orchestration/<run_id> or s3://bucket/runs/<run_id>")
    show.add_argument("--root", help=ROOT_HELP)
    show.set_defaults(handler=_show)

    runs = commands.add_parser("runs", help="list the runs under a root, newest first")
    runs.add_argument("root", nargs="?", help=ROOT_HELP)
    runs.set_defaults(handler=_runs)

    fake = commands.add_parser("fake-api", help="serve the local fake Anthropic Messages API (foreground)")
    fake.add_argument("--host", default="127.0.0.1")
    fake.add_argument("--port", type=int, default=8765)
    fake.add_argument("--latency-ms", type=_milliseconds, default=0.0)
    fake.add_argument("--error-rate", type=_share, default=0.0, help="share of requests answered 429, 529 or 500")
    fake.add_argument("--seed", type=int, default=0)
    fake.add_argument("--invalid-rate", type=_share, default=0.0,
                      help="share of structured answers (output_config.format) made not to fit their schema")
    fake.add_argument("--cut-rate", type=_share, default=0.0,
                      help="share of answers cut off halfway (a stream drops; a plain body ends mid-JSON)")
    fake.add_argument("--stall-rate", type=_share, default=0.0, help="share of answers that stall")
    fake.add_argument("--stall-ms", type=_milliseconds, default=5000.0, help="how long a stalled answer waits")
    fake.add_argument("--rpm", type=_at_least_one, default=None,
                      help="enforce a requests-per-minute limit (429s past it)")
    fake.add_argument("--rpm-burst", type=_at_least_one, default=None, help="requests the limit lets through "
                      "at once (default: a tenth of --rpm)")
    fake.add_argument("--batch-ms", type=_milliseconds, default=0.0, help="how long a message batch takes to process")
    for kind, what in (("itpm", "input"), ("otpm", "output")):
        fake.add_argument(f"--{kind}", type=_at_least_one, default=None,
                          help=f"enforce a limit of N {what} tokens a minute (a bucket refilled continuously)")
        fake.add_argument(f"--{kind}-burst", type=_at_least_one, default=None,
                          help=f"{what} tokens the bucket holds (default: a tenth of --{kind})")
    fake.add_argument("--strict", action="store_true",
                      help="refuse cache_control, thinking and effort with 400s, as a strict compatible server does")
    fake.add_argument("--retry-after-ms", type=_at_least_one, default=20,
                      help="the retry-after of injected 429s (default 20)")
    fake.add_argument("--fault", action="append", default=[], type=_fault, metavar="KIND=RATE",
                      help="a share of requests answered with a fault on the wire: no_stop, invalid_json, "
                           "json_not_sse, empty, no_message_start, sse_error, rate_limit, echo_headers, "
                           "huge_error (repeatable)")
    fake.add_argument("--output-tokens", type=_at_least_one, default=None,
                      help="make answers about this many tokens long (up to each request's max_tokens)")
    fake.add_argument("--context-window", type=_at_least_one, default=None,
                      help="one context window for every model (default: each model's, from the window table)")
    fake.set_defaults(handler=_fake_api)
    return parser


def parse_vars(pairs: Sequence[str]) -> dict[str, Any]:
    """`--var k=v`: values are read as YAML scalars or lists, so `--var n=3` is a number and
    `--var tickers='[AAPL, MSFT]'` a list."""
    variables: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.isidentifier():
            raise UsageError(f"--var takes NAME=VALUE, got {pair!r}")
        try:
            variables[key] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            variables[key] = value
    return variables


def _run(args: argparse.Namespace) -> int:
    from .display.progress import CliProgress
    from .display.summary import print_run
    from .live import run

    if args.spec is None and args.resume is None:
        raise UsageError("run needs a SPEC file, or --resume RUN_ID to continue a run as it was run")
    if args.dry_run:
        return _dry_run(args)
    progress = CliProgress(_console(stderr=True))
    spec = Path(args.spec) if args.spec else None  # None: the resumed folder's own spec.yaml
    previous = _stop_on_sigterm()
    thresholds = gc.get_threshold()
    start_up = _StartUpDone(thresholds)
    gc.set_threshold(_START_UP_THRESHOLD, *thresholds[1:])  # until the run starts: see `_StartUpDone`
    try:
        with progress:
            result = run(spec, provider=args.provider, root=args.root, concurrency=args.concurrency,
                         resume=args.resume, variables=parse_vars(args.var),
                         listeners=(progress.update, start_up), tools=args.tools,
                         executor=args.executor, scheduler=args.scheduler)
    except KeyboardInterrupt:
        if progress.run_id:
            print(f"\nStopped. Finished agents are kept; continue with:\n  {_resume_command(args, progress.run_id)}",
                  file=sys.stderr)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
        gc.unfreeze()  # a caller in the same process (a test, a script) gets its collector back as it was
        gc.set_threshold(*thresholds)
        settle()  # tools or python-provider functions still in their threads: let them end before the exit
    if result.state.damage:
        print(f"Note: {result.state.damage}", file=sys.stderr)
    print_run(result, _console(stderr=False))
    if str(result.path).startswith("memory://"):
        print("Note: a memory:// root lives only inside the process that wrote it: this run is gone now. "
              "Use a folder or a shared URL (s3://, gs://) to keep it.", file=sys.stderr)
    if not args.root and not os.environ.get("ORCHESTRA_ROOT"):  # where runs go, said where a newcomer looks
        print("Runs are kept under ./orchestration, here: list them with `orchestra runs`; set ORCHESTRA_ROOT "
              "(or --root) to keep them elsewhere, e.g. in one place for the command line and notebooks.",
              file=sys.stderr)
    if result.status != "done":  # failed, or stopped (by a budget): say how to go on
        print(f"Finished agents are kept; to run the others again: {_resume_command(args, result.run_id)}",
              file=sys.stderr)
    return 0 if result.status == "done" else 1


_START_UP_THRESHOLD = 50_000  # allocations between young collections while the run starts (Python's: 700)


class _StartUpDone:
    """A listener: at the run's first event, what start-up made (the SDK and its client: about a million
    objects, no garbage) is set aside (`gc.freeze`) and the thresholds are put back. Until then young
    objects are collected every 50,000 allocations, not 700: at Python's pace the SDK's import set off
    three full collections, and each full one during the run walked it all again (~0.3 s of CPU each way
    at 1,000 agents). Switching the collector off instead kept a spec's cyclic garbage (+33 MB at 20,000
    workers)."""

    def __init__(self, thresholds: tuple[int, int, int]) -> None:
        self.thresholds = thresholds
        self.done = False  # (not `gc.get_freeze_count()`: it counts by walking every frozen object)

    def __call__(self, event: object, state: object) -> None:
        if not self.done:
            self.done = True
            gc.freeze()
            gc.set_threshold(*self.thresholds)


def _dry_run(args: argparse.Namespace) -> int:
    from .dryrun import plan

    if args.spec is None:
        raise UsageError("--dry-run needs a SPEC file to plan")
    tools = None
    if args.tools:
        from .tools.catalog import load_tools_file

        tools = load_tools_file(args.tools)
    planned = plan(Path(args.spec), parse_vars(args.var), tools)
    print(planned.text())  # a warning, if any, is in the text
    return 0


def _resume_command(args: argparse.Namespace, run_id: str) -> str:
    """The command that continues a run: its id is enough (the folder records how it was run); the root
    is named when it is not the default, since the folder cannot say where it is."""
    root = f" --root {shlex.quote(args.root)}" if args.root else ""
    return f"orchestra run --resume {run_id}{root}"


def _show(args: argparse.Namespace) -> int:
    from .api import RunOptions
    from .display.summary import print_run
    from .results import load_run
    from .runfolder.folder import find_run

    folder = find_run(RunOptions.resolve(root=args.root).root, args.run_dir)
    result = load_run(folder.path)
    if result.state.damage:
        print(f"Note: {result.state.damage}", file=sys.stderr)
    print_run(result, _console(stderr=False))
    return 0 if result.status == "done" else 1


def _runs(args: argparse.Namespace) -> int:
    """`orchestra runs [ROOT]`: one line a run, newest first, and where the root is (and how to set it)."""
    from rich.table import Table
    from rich.text import Text

    from .api import RunOptions
    from .results import list_runs
    from .runfolder.folder import is_url, local_path

    root = RunOptions.resolve(root=args.root).root
    where = root if is_url(root) else str(local_path(root).absolute())
    frame = list_runs(root)
    print(f"{len(frame)} run(s) under {where} (choose another root with `orchestra runs ROOT`, or set "
          "ORCHESTRA_ROOT)", file=sys.stderr)
    if frame.empty:
        return 0
    table = Table()
    columns = ("run_id", "started", "status", "resumes", "agents", "done", "failed", "cancelled", "cost_usd",
               "duration")
    for column in columns:
        table.add_column(column.removesuffix("_usd"), overflow="fold", no_wrap=column in ("run_id", "started"))
    for row in frame.to_dict("records"):
        cost = "" if row["cost_usd"] != row["cost_usd"] else f"${row['cost_usd']:,.4f}"  # NaN: unpriced
        cells = [cost if c == "cost_usd" else str(row[c]) for c in columns]
        table.add_row(*(Text(cell) for cell in cells))
    _console(stderr=False).print(table)
    return 0


def _share(text: str) -> float:
    """A fraction of requests, 0 to 1 (argparse turns the ValueError into one line and exit 2)."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"a share of requests goes from 0 to 1, got {text}")
    return value


def _milliseconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"a time cannot be negative, got {text}")
    return value


def _at_least_one(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _fault(text: str) -> tuple[str, float]:
    """`--fault KIND=RATE`, e.g. `--fault no_stop=0.2`."""
    kind, sep, rate = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"takes KIND=RATE, e.g. no_stop=0.2, got {text!r}")
    return kind, _share(rate)


def _fake_api(args: argparse.Namespace) -> int:
    from .fake.faults import check_rates
    from .fake.server import serve

    for limit in ("rpm", "itpm", "otpm"):
        if getattr(args, f"{limit}_burst") is not None and getattr(args, limit) is None:
            raise UsageError(f"--{limit}-burst shapes the limit --{limit} sets: give --{limit} too")
    try:
        faults = check_rates(dict(args.fault))
    except ValueError as exc:
        raise UsageError(f"--fault: {exc}") from None
    serve(args.host, args.port, latency_ms=args.latency_ms, error_rate=args.error_rate, seed=args.seed,
          cut_rate=args.cut_rate, stall_rate=args.stall_rate, stall_ms=args.stall_ms, rpm_limit=args.rpm,
          rpm_burst=args.rpm_burst, batch_ms=args.batch_ms, invalid_rate=args.invalid_rate, strict=args.strict,
          itpm_limit=args.itpm, itpm_burst=args.itpm_burst, otpm_limit=args.otpm, otpm_burst=args.otpm_burst,
          retry_after_ms=args.retry_after_ms, fault_rates=faults, output_tokens=args.output_tokens,
          context_window=args.context_window)
    return 0


def _console(stderr: bool) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, emoji=False, width=None if sys.stdout.isatty() else 120)
