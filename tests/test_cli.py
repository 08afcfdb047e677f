"""The `orchestra` command end to end, as a user runs it: a real process, the offline provider."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import Orchestra, fake_api, first_output, orchestra

import orchestra_magic as om
from orchestra_magic.cli import main

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = REPO / "examples" / "quickstart.yaml"


def test_run_offline_prints_the_summaries_table_and_exits_0(tmp_path: Path) -> None:
    # `python -m orchestra_magic` itself, a fresh interpreter: the entry point as installed. The other tests
    # run the command's `main` in processes forked from one that imported the package (helpers.Orchestra).
    done = subprocess.run([sys.executable, "-m", "orchestra_magic", "run", str(QUICKSTART), "--provider", "offline"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "vector-db-review" in done.stdout
    for domain in ("performance", "pricing", "operations", "compliance"):
        assert domain in done.stdout
    assert "simulated" in done.stdout  # offline answers say so, even in the summaries
    assert "25 agents: 25 done" in done.stdout
    assert "Runs are kept under ./orchestration, here: list them with `orchestra runs`" in done.stderr
    (folder,) = (tmp_path / "orchestration").iterdir()
    assert len(list((folder / "workers").glob("*.md"))) == 21
    manifest = json.loads((folder / "run.json").read_text())
    assert {a["status"] for a in manifest["agents"]} == {"done"}


@pytest.mark.parametrize("spec", [QUICKSTART, "no-such-spec.yaml"], ids=["a run", "a refused spec"])
def test_a_run_in_process_gives_the_callers_collector_back_as_it_was(tmp_path: Path, spec: Path | str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # The command collects rarely while the SDK loads and freezes what start-up made (see
    # cli._StartUpDone); a test or a script calling `main` must find neither left behind.
    import gc

    monkeypatch.chdir(tmp_path)
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    main(["run", str(spec), "--provider", "offline", "--root", str(tmp_path)])
    assert gc.get_threshold() == before and gc.isenabled() and gc.get_freeze_count() == 0


def test_show_prints_a_finished_runs_summaries(tmp_path: Path) -> None:
    om.run(QUICKSTART, provider="offline", root=tmp_path / "runs")  # in this process: one interpreter less
    (folder,) = (tmp_path / "runs").iterdir()
    shown = orchestra("show", str(folder), cwd=tmp_path)
    assert shown.returncode == 0
    assert "compliance" in shown.stdout and "25 agents: 25 done" in shown.stdout


def test_resume_of_a_finished_run_calls_nothing_again(tmp_path: Path) -> None:
    om.run(QUICKSTART, provider="offline", root=tmp_path / "orchestration")
    (folder,) = (tmp_path / "orchestration").iterdir()
    again = orchestra("run", str(QUICKSTART), "--provider", "offline", "--resume", folder.name, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "25 agents: 25 skipped" in again.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "missing.yaml", "--provider", "offline"], "no such file: missing.yaml"),
        (["run", "bad.yaml", "--provider", "offline"],
         "spec error at domains[0].workers[0].taks (line 5): unknown key"),
        (["run", str(QUICKSTART), "--provider", "nope"], "unknown provider 'nope'"),
        (["run", str(QUICKSTART)], "ANTHROPIC_API_KEY is not set"),
        (["run", str(QUICKSTART), "--provider", "offline", "--var", "no-equals"], "--var takes NAME=VALUE"),
        (["run", str(QUICKSTART), "--provider", "offline", "--resume", "nope"],
         "orchestration/nope is not a run folder"),  # looked for under the root, and says so
        (["show", "nowhere"], "nowhere is not a run folder"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "bad.yaml").write_text("domains:\n  - name: a\n    coordinator: c\n    workers:\n      - taks: t\n")
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    result = orchestra(*args, cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "orchestration").exists() or args[-2:] == ["--resume", "nope"]


def test_an_unreachable_endpoint_is_refused_before_anything_runs(tmp_path: Path) -> None:
    env = {**os.environ, "ANTHROPIC_API_KEY": "sk-test-unreachable", "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"}
    result = orchestra("run", str(QUICKSTART), cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "cannot reach the Messages API at http://127.0.0.1:9" in result.stderr
    assert "sk-test-unreachable" not in result.stderr + result.stdout
    assert not (tmp_path / "orchestration").exists()


def test_failed_agents_exit_1_and_the_printed_resume_command_works_as_pasted(tmp_path: Path) -> None:
    spec = tmp_path / "s.yaml"
    spec.write_text("attempts: 1\ndomains:\n  - name: a\n    coordinator: c\n    workers:\n"
                    "      - for_each: '{{ range(n) | list }}'\n        task: 't{{ item }}'\n")
    # every answer cut off halfway: each agent fails on its one attempt (429s and 529s would be waited out
    # for seconds apart from `attempts`, which is what the rate-limit tests are for)
    with fake_api("--cut-rate", "1") as env:
        result = orchestra("run", str(spec), "--var", "n=6", "--concurrency", "3", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert "7 agents: 7 failed" in result.stdout  # the coordinator too: it had nothing to read
    (folder,) = (tmp_path / "orchestration").iterdir()
    command = result.stderr.split("to run the others again: ")[1].splitlines()[0]
    assert command == f"orchestra run --resume {folder.name}"
    with fake_api() as healthy:  # pasted as printed: no spec, no --var, no --concurrency
        resumed = orchestra(*shlex.split(command)[1:], cwd=tmp_path, env=healthy)
    assert resumed.returncode == 0, resumed.stderr
    assert "7 agents: 7 done" in resumed.stdout
    assert json.loads((folder / "options.json").read_text())["concurrency"] == 3


def test_answers_the_fake_breaks_fail_their_agents_naming_the_field(tmp_path: Path) -> None:
    spec = tmp_path / "typed.yaml"
    spec.write_text("attempts: 1\nroles:\n  worker:\n    output: {price: number}\ndomains:\n  - name: a\n"
                    "    coordinator: c\n    workers:\n      - task: t\n")
    with fake_api("--invalid-rate", "1") as env:  # every structured answer made not to fit
        result = orchestra("run", str(spec), cwd=tmp_path, env=env)
    assert result.returncode == 1
    (folder,) = (tmp_path / "orchestration").iterdir()
    worker = next(a for a in json.loads((folder / "run.json").read_text())["agents"] if a["agent"] == "a-1")
    assert "the answer does not fit the output schema: price: " in worker["error"]


TOOLS = """import os
import time


def pause() -> str:
    \"\"\"Wait a moment while the file `slow` is there (so that the run is still going when it is interrupted).\"\"\"
    if os.path.exists({slow!r}):
        time.sleep(0.5)
    return "waited"
"""


def test_ctrl_c_stops_an_offline_run_and_the_printed_resume_command_works_as_pasted(tmp_path: Path) -> None:
    spec = tmp_path / "slow.yaml"
    spec.write_text("name: '{{ name }}'\nroles: {worker: {tools: [pause]}}\ndomains:\n  - name: a\n"
                    "    coordinator: c\n    workers:\n      - for_each: '{{ range(n) | list }}'\n"
                    "        task: 't{{ item }}'\n")
    slow = tmp_path / "slow"
    slow.touch()
    (tmp_path / "tools.py").write_text(TOOLS.format(slow=str(slow)))
    env = {k: v for k, v in os.environ.items() if k != "ANTHROPIC_API_KEY"}
    run = Orchestra(["run", str(spec), "--provider", "offline", "--var", "name=slow", "--var", "n=12",
                     "--tools", "tools.py", "--concurrency", "2"], cwd=tmp_path, env=env)
    folder = first_output(tmp_path / "orchestration")
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=60)
    assert run.returncode == 130, stderr[-3000:]
    command = stderr.split("continue with:\n")[1].strip().splitlines()[0]
    assert command == f"orchestra run --resume {folder.name}"
    state = json.loads((folder / "run.json").read_text())
    assert state["status"] == "cancelled"
    assert not list(folder.rglob("*.tmp"))
    slow.unlink()  # the resume need not wait
    resumed = orchestra(*shlex.split(command)[1:], cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stderr
    # 12 workers, 2 sub-coordinators (fan_in 8), 1 coordinator
    assert "skipped" in resumed.stdout and "15 agents" in resumed.stdout
    assert "ANTHROPIC_API_KEY" not in json.dumps(json.loads((folder / "options.json").read_text()))


@pytest.mark.parametrize(("flags", "message"), [
    (["--rpm", "-5"], "argument --rpm: must be at least 1, got -5"),
    (["--rpm", "0"], "argument --rpm: must be at least 1, got 0"),
    (["--error-rate", "1.5"], "argument --error-rate: a share of requests goes from 0 to 1, got 1.5"),
    (["--invalid-rate", "2"], "argument --invalid-rate: a share of requests goes from 0 to 1, got 2"),
    (["--latency-ms", "-1"], "argument --latency-ms: a time cannot be negative, got -1"),
    (["--rpm-burst", "3"], "--rpm-burst shapes the limit --rpm sets: give --rpm too"),
])
def test_bad_fake_api_flags_are_one_line_and_exit_2(flags: list[str], message: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = main(["fake-api", *flags])
    except SystemExit as exit_:  # argparse's own refusals
        code = int(exit_.code or 0)
    assert code == 2 and message in capsys.readouterr().err


def test_vars_reach_the_spec_as_yaml_values(tmp_path: Path) -> None:
    spec = tmp_path / "vars.yaml"
    spec.write_text("name: '{{ name }}'\ndomains:\n  - name: a\n    coordinator: Sum {{ n + 1 }} items.\n"
                    "    workers:\n      - for_each: '{{ tickers }}'\n        task: 'Price of {{ item }}'\n")
    done = orchestra("run", str(spec), "--provider", "offline", "--var", "name=prices", "--var", "n=2",
                     "--var", "tickers=[AAPL, MSFT]", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (folder,) = (tmp_path / "orchestration").iterdir()
    assert folder.name.startswith("prices-")
    written = (folder / "spec.yaml").read_text()
    assert "Sum 3 items." in written and "Price of MSFT" in written


def test_runs_lists_the_runs_under_the_root_and_show_finds_one_by_id(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ORCHESTRA_ROOT", "kept")
    run = om.run(QUICKSTART, provider="offline")
    assert main(["runs"]) == 0
    listed = capsys.readouterr()
    assert f"1 run(s) under {tmp_path / 'kept'}" in listed.err and "ORCHESTRA_ROOT" in listed.err
    assert run.run_id in listed.out and "done" in listed.out
    assert main(["show", run.run_id]) == 0  # an id is enough: looked for under the root
    assert "25 agents: 25 done" in capsys.readouterr().out
    assert main(["runs", "elsewhere"]) == 0
    assert f"0 run(s) under {tmp_path / 'elsewhere'}" in capsys.readouterr().err
