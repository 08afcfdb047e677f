"""`%%orchestrate` in a real IPython shell (errors re-raised) and in real kernels (executed notebooks)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import cell
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import orchestra_magic as om

SPEC = """name: nb
domains:
  - name: a
    coordinator: Sum up {{ n }} findings.
    workers:
      - for_each: "{{ range(n) | list }}"
        task: "Finding {{ item }} about {{ topic }}"
"""


@pytest.fixture
def shell(shell: InteractiveShell) -> InteractiveShell:
    shell.user_ns.update(n=3, topic="caching")
    return shell


def test_the_cell_value_is_the_summaries_and_o_binds_the_run(shell: InteractiveShell, tmp_path: Path) -> None:
    summaries = cell(shell, f"%%orchestrate --provider offline -o myrun\n{SPEC}")
    assert list(summaries.columns[:3]) == ["domain", "summary", "status"]
    assert summaries.status.tolist() == ["done"]
    run = shell.user_ns["myrun"]
    assert isinstance(run, om.RunHandle) and run.path.parent == tmp_path / "orchestration"
    assert "Finding 2 about caching" in (run.path / "spec.yaml").read_text()  # notebook variables reached the spec


def test_the_magic_line_expands_notebook_variables(shell: InteractiveShell, tmp_path: Path) -> None:
    shell.user_ns["where"] = str(tmp_path / "elsewhere")
    cell(shell, f"%%orchestrate --provider offline --root {{where}}\n{SPEC}")
    assert len(list((tmp_path / "elsewhere").iterdir())) == 1


def test_config_sets_the_defaults(shell: InteractiveShell, tmp_path: Path) -> None:
    cell(shell, "%config OrchestraMagics.provider = 'offline'\n%config OrchestraMagics.root = 'configured'")
    summaries = cell(shell, f"%%orchestrate\n{SPEC}")
    assert summaries.status.tolist() == ["done"]
    assert (tmp_path / "configured").is_dir()


def test_a_provider_instance_from_the_namespace_can_be_named(shell: InteractiveShell) -> None:
    shell.user_ns["mine"] = om.PythonProvider(lambda request: f"{request.task}\nDone.")
    cell(shell, f"%%orchestrate --provider mine -o r\n{SPEC}")
    assert shell.user_ns["r"].output("a-1").startswith("Finding 0 about caching")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("%%orchestrate --provider offline\ndomains:\n  - name: a\n    coordinatr: x\n",  # line 4 of the cell
         "spec error at domains[0].coordinatr (line 4): unknown key 'coordinatr'; did you mean 'coordinator'?"),
        ("%%orchestrate --provider offline\ndomains: [{name: a, coordinator: '{{ nope }}', workers: [{task: t}]}]",
         "'nope' is undefined"),
        ("%%orchestrate --no-such-flag\n" + SPEC, "unrecognized arguments: --no-such-flag"),
        ("%%orchestrate\n" + SPEC, "ANTHROPIC_API_KEY is not set"),
        ("%orchestrate_load", "needs a run id"),
        ("%orchestrate_load nowhere", "is not a run folder"),
    ],
)
def test_user_mistakes_are_one_line_usage_errors(shell: InteractiveShell, tmp_path: Path, source: str,
                                                 message: str) -> None:
    with pytest.raises(UsageError) as caught:
        cell(shell, source)
    assert message in str(caught.value)
    assert not (tmp_path / "orchestration").exists()


def test_a_typo_is_reported_once_at_the_line_the_editor_shows(shell: InteractiveShell) -> None:
    with pytest.raises(UsageError) as caught:
        cell(shell, "%%orchestrate --provider offline\ndomains:\n  - name: a\n    coordinatr: x\n"
                    "    workers: [{task: t}]\n")
    assert str(caught.value) == ("spec error at domains[0].coordinatr (line 4): unknown key 'coordinatr'; "
                                 "did you mean 'coordinator'?")  # not also "missing required key 'coordinator'"


def test_dry_run_shows_the_plan_and_calls_nothing(shell: InteractiveShell, tmp_path: Path) -> None:
    plan = cell(shell, f"%%orchestrate --dry-run\n{SPEC}")
    assert isinstance(plan, om.Plan)
    assert plan.agents == 4 and plan.input_tokens > 0
    assert "Finding 0 about caching" in plan.worker_prompt[1]
    assert "<worker_result" in plan.coordinator_prompt[1]
    assert not (tmp_path / "orchestration").exists()


def test_runs_and_load_line_magics(shell: InteractiveShell) -> None:
    cell(shell, f"%%orchestrate --provider offline -o first\n{SPEC}")
    runs = cell(shell, "%orchestrate_runs")
    run_id = shell.user_ns["first"].run_id
    assert runs.run_id.tolist() == [run_id]
    assert runs.loc[0, "status"] == "done" and runs.loc[0, "agents"] == 4
    loaded = cell(shell, f"%orchestrate_load {run_id}")
    assert loaded.summaries.equals(shell.user_ns["first"].summaries)


def test_background_returns_at_once_and_the_run_can_be_waited_for(shell: InteractiveShell) -> None:
    run = cell(shell, f"%%orchestrate --provider offline --background\n{SPEC}")
    assert isinstance(run, om.RunHandle)
    assert run.wait().status == "done"
    assert run.summaries.status.tolist() == ["done"]


def test_text_progress_where_widgets_cannot_render(shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    cell(shell, f"%%orchestrate --provider offline\n{SPEC}")
    last = [line for line in capsys.readouterr().out.splitlines() if line.startswith("nb-")][-1]
    assert "[done] workers 3/3 (3 done), coordinators 1/1 (1 done)" in last


STOPPED_BY_BUDGET = "budget_usd: 0.000001\nconcurrency: 1\n" + SPEC  # the first answer spends it all


def test_a_stopped_runs_last_text_line_counts_each_status_apart_and_says_why(
        shell: InteractiveShell, capsys: pytest.CaptureFixture[str]) -> None:
    cell(shell, f"%%orchestrate --provider offline -o r\n{STOPPED_BY_BUDGET}")
    printed = capsys.readouterr().out
    last = [line for line in printed.splitlines() if line.startswith("nb-")][-1]
    assert "[cancelled] workers 1/3 (1 done · 2 cancelled), coordinators 0/1 (1 cancelled)" in last
    assert "stopped: the budget of" in last
    assert f"run the cell again with --resume {shell.user_ns['r'].run_id}" in printed


def test_the_widget_counts_workers_and_coordinators_apart_and_fills_bars_only_with_work_done(
        shell: InteractiveShell) -> None:
    from orchestra_magic.display.widget import RunView

    cell(shell, f"%%orchestrate --provider offline -o r\n{STOPPED_BY_BUDGET}")
    view = RunView(shell.user_ns["r"], on_stop=lambda: None, on_retry=lambda: None)
    (domain,) = view.domains
    assert domain.label.value.endswith("1/3 workers done · 2 cancelled · coordinator cancelled")
    assert (domain.bar.value, domain.bar.max) == (1, 4)  # cancelled agents do not fill it
    assert (view.bar.value, view.bar.max) == (1, 4)
    assert "stopped: the budget of" in view.header.value
    assert repr(view.widget).startswith(f"{shell.user_ns['r'].run_id} [cancelled]")  # its plain-text form


def test_the_widgets_plot_button_draws_the_run_under_its_header(shell: InteractiveShell) -> None:
    from orchestra_magic.display.widget import RunView

    cell(shell, f"%%orchestrate --provider offline -o r\n{SPEC}")
    view = RunView(shell.user_ns["r"], on_stop=lambda: None, on_retry=lambda: None)
    view.plot_button.click()
    (shown,) = view.plot_area.children
    assert bytes(shown.value).startswith(b"\x89PNG")


def test_resume_in_a_cell_needs_only_the_run_id(shell: InteractiveShell) -> None:
    cell(shell, f"%%orchestrate --provider offline -o r\n{STOPPED_BY_BUDGET}")
    run_id = shell.user_ns["r"].run_id
    del shell.user_ns["n"], shell.user_ns["topic"]  # the variables the spec used are recorded in the folder
    cell(shell, "%config OrchestraMagics.provider = 'anthropic'")  # the folder's record wins over a default
    cell(shell, f"%%orchestrate --resume {run_id} -o again\n")  # offline, as recorded: no key asked for
    again = shell.user_ns["again"]  # the folder's own spec.yaml was used, budget and all...
    assert (again.run_id, again.status, again.state.provider) == (run_id, "cancelled", "offline")
    summaries = cell(shell, f"%%orchestrate --resume {run_id} -o again\n{STOPPED_BY_BUDGET.replace('0.000001', '5')}")
    assert summaries.status.tolist() == ["done"]  # ...and a spec given again is an edit
    assert sorted(set(shell.user_ns["again"].agents.status)) == ["done", "skipped"]


def test_an_unknown_provider_gets_a_did_you_mean_that_knows_the_notebooks_providers(
        shell: InteractiveShell) -> None:
    shell.user_ns["slow"] = om.PythonProvider(_slow)
    with pytest.raises(UsageError, match=r"unknown provider 'sloww'; did you mean 'slow'\?.*a variable holding one"):
        cell(shell, f"%%orchestrate --provider sloww\n{SPEC}")


def test_orchestrate_runs_says_where_the_root_is_and_how_to_set_it(
        shell: InteractiveShell, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runs = cell(shell, "%orchestrate_runs")
    assert runs.empty
    said = capsys.readouterr().out
    assert f"0 run(s) under {tmp_path / 'orchestration'}" in said
    assert "%config OrchestraMagics.root" in said and "ORCHESTRA_ROOT" in said


def test_loading_the_extension_imports_no_heavy_library() -> None:
    heavy = ("pandas", "anthropic", "aiohttp", "ipywidgets", "pydantic", "jinja2")
    code = f"import sys, orchestra_magic.magic; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_orchestrate_stop_stops_a_background_run(shell: InteractiveShell) -> None:
    shell.user_ns["slow"] = om.PythonProvider(_slow)
    run = cell(shell, f"%%orchestrate --provider slow --background\n{SPEC.replace('range(n)', 'range(40)')}")
    cell(shell, "%orchestrate_stop")
    assert run.wait().status == "cancelled"
    assert run.state.counts["done"] < run.state.total


async def _slow(request: om.AgentRequest) -> str:
    import asyncio

    await asyncio.sleep(0.05)
    return "Done."


def test_the_scheduler_option_takes_a_notebook_client_or_an_address(shell: InteractiveShell,
                                                                    threads_cluster: Any) -> None:
    shell.user_ns["client"] = threads_cluster
    cell(shell, f"%%orchestrate --provider offline --scheduler client -o by_client\n{SPEC}")
    address = threads_cluster.scheduler.address
    cell(shell, f"%%orchestrate --provider offline --scheduler {address} -o by_address\n{SPEC}")
    for name in ("by_client", "by_address"):
        run = shell.user_ns[name]
        assert run.status == "done" and run.state.executor.startswith(f"dask ({address}")
    with pytest.raises(UsageError, match="a Dask scheduler or client was given but the executor is 'local'"):
        cell(shell, f"%%orchestrate --provider offline --executor local --scheduler client\n{SPEC}")
