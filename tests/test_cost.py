"""Cost and budgets: the price table, `cost_usd` per agent and domain, and `budget_usd` stopping a run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from helpers import make_spec

import orchestra_magic as om
from orchestra_magic.errors import SpecError
from orchestra_magic.pricing import cost_usd, price_of


def test_a_call_costs_its_tokens_at_the_models_rates() -> None:
    # Sonnet 5.5: $2 in, $10 out, $2.50 cache write, $0.10 cache read per million tokens.
    assert cost_usd("claude-sonnet-5-5", 1_000_000, 0) == pytest.approx(2.0)
    assert cost_usd("claude-sonnet-5-5", 1000, 500, 2000, 30_000) == pytest.approx(
        (1000 * 2 + 500 * 10 + 2000 * 2.5 + 30_000 * 0.1) / 1e6)


def test_batch_answers_cost_half() -> None:
    full = cost_usd("claude-opus-5-5", 5000, 800, 1200, 9000)
    assert full is not None
    assert cost_usd("claude-opus-5-5", 5000, 800, 1200, 9000, batch=True) == pytest.approx(full / 2)


def test_haiku_5_5_prices_long_prompts_at_its_higher_rates() -> None:
    short = cost_usd("claude-haiku-5-5", 100_000, 1000)
    long = cost_usd("claude-haiku-5-5", 100_001, 1000)
    assert short == pytest.approx((100_000 * 0.10 + 1000 * 0.50) / 1e6)
    assert long == pytest.approx((100_001 * 0.50 + 1000 * 2.50) / 1e6)


def test_dated_and_1m_ids_share_their_models_price_and_unknown_models_have_none() -> None:
    assert price_of("claude-haiku-4-5-20251001") == price_of("claude-haiku-4-5") is not None
    assert price_of("claude-sonnet-5-5[1m]") == price_of("claude-sonnet-5-5")
    assert price_of("claude-sonnet-4-5-2025") is None  # not a date: no guessing
    assert cost_usd("my-finetune", 1000, 1000) is None


def test_agents_and_summaries_carry_cost_and_the_run_totals_it(tmp_path: Path) -> None:
    spec = make_spec({"a": 3, "b": 2}, model="claude-haiku-4-5", roles={"coordinator": {"model": "claude-opus-5-5"}})
    run = om.run(spec, provider="offline", root=tmp_path)
    agents = run.agents.set_index("agent")
    for name, row in agents.iterrows():
        model = "claude-opus-5-5" if str(name).startswith("coordinator:") else "claude-haiku-4-5"
        expected = cost_usd(model, row.input_tokens, row.output_tokens, row.cache_write_tokens, row.cache_read_tokens)
        assert row.cost_usd == pytest.approx(expected)
    summaries = run.summaries.set_index("domain")
    assert summaries.loc["a", "cost_usd"] == pytest.approx(agents[agents.domain == "a"].cost_usd.sum())
    assert run.state.cost_usd == pytest.approx(agents.cost_usd.sum()) and run.state.cost_usd > 0
    assert om.load_run(run.path).state.cost_usd == pytest.approx(run.state.cost_usd)  # kept in the manifest


def test_a_model_without_a_price_is_unknown_never_zero(tmp_path: Path) -> None:
    run = om.run(make_spec({"a": 2}, model="my-finetune"), provider="offline", root=tmp_path)
    assert run.agents.cost_usd.isna().all() and math.isnan(run.summaries.cost_usd[0])
    assert run.state.cost() == "cost unknown (3 agents unpriced)"


def test_python_provider_runs_show_no_cost(tmp_path: Path) -> None:
    run = om.run(make_spec({"a": 2}), provider=om.PythonProvider(lambda r: "ok", lambda r: "Done."), root=tmp_path)
    assert run.state.cost() == "" and run.agents.cost_usd.isna().all()


def test_a_budget_stops_starting_agents_and_the_run_says_why(tmp_path: Path) -> None:
    spec = make_spec({"a": 10, "b": 10}, concurrency=2)
    probe = om.run(spec, provider="offline", root=tmp_path / "probe")
    one_worker = probe.agents.cost_usd.iloc[0]
    budget = 4.5 * one_worker  # room for about four workers

    run = om.run({**spec, "budget_usd": budget}, provider="offline", root=tmp_path)
    state = run.state
    assert run.status == "cancelled" and "raise budget_usd" in state.reason
    assert f"the budget of ${budget:,.4f} was reached" in state.reason  # a budget under $1 shown to the cent
    done = state.counts["done"]
    assert 3 <= done <= 6  # stopped near the budget, not at the end
    assert state.cost_usd <= budget + 2 * one_worker  # at most the agents in flight go over
    unstarted = [a for a in state.agents.values() if a.status == "cancelled"]
    assert len(unstarted) == state.total - done
    assert all(a.error.startswith("not started: the budget of $") for a in unstarted)

    resumed = om.run({**spec, "budget_usd": 1000.0}, provider="offline", root=tmp_path, resume=run.run_id)
    assert resumed.status == "done" and resumed.state.counts["skipped"] == done


def test_a_budget_needs_a_price_for_every_model_it_counts() -> None:
    with pytest.raises(SpecError) as caught:
        om.plan(make_spec({"a": 1}, budget_usd=5, roles={"worker": {"model": "my-finetune"}}))
    assert caught.value.path == "budget_usd" and "'my-finetune'" in str(caught.value)


def test_the_cli_closing_line_shows_the_cost(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from orchestra_magic.cli import main

    spec = tmp_path / "spec.yaml"
    spec.write_text("domains:\n  - name: a\n    coordinator: Sum up.\n    workers: [{task: One.}, {task: Two.}]\n")
    assert main(["run", str(spec), "--provider", "offline", "--root", str(tmp_path)]) == 0
    assert "Cost: $0.0" in capsys.readouterr().out


def test_the_cli_closing_line_counts_the_tokens_that_went_through_the_prompt_cache(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rich.console import Console

    from orchestra_magic.display.summary import print_run

    def cached(request: om.AgentRequest) -> om.Completion:
        return om.Completion("Done.", 10, 5, cache_write_tokens=100, cache_read_tokens=1_000)

    result = om.run(make_spec({"a": 2}), provider=om.PythonProvider(cached, cached), root=tmp_path)
    print_run(result, Console(width=200))
    assert "Tokens: 30 in (+3,300 through the prompt cache), 15 out" in capsys.readouterr().out


def test_the_price_table_holds_well_formed_ids_and_prices_the_default() -> None:
    """The table follows the models the API serves, not one SDK release's list: an id the installed SDK
    no longer names is reported as a warning (the API may still serve it), never a failure."""
    import re
    import warnings
    from typing import get_args

    from anthropic.types.model_param import ModelParam

    from orchestra_magic.pricing import PRICES
    from orchestra_magic.spec.model import DEFAULT_MODEL

    malformed = [model for model in PRICES if not re.fullmatch(r"claude-[a-z]+-\d+(-\d+)?", model)]
    assert not malformed, f"not a model id: {malformed}"
    assert price_of(DEFAULT_MODEL) is not None
    unknown = set(PRICES) - set(get_args(get_args(ModelParam)[0]))
    if unknown:
        warnings.warn(f"the installed anthropic SDK no longer names {sorted(unknown)}", stacklevel=1)


def test_the_widget_header_and_the_text_view_show_the_running_cost(tmp_path: Path) -> None:
    from orchestra_magic.display.text import status_line
    from orchestra_magic.display.widget import header_html

    run = om.run(make_spec({"a": 2}), provider="offline", root=tmp_path)
    dollars = run.state.cost()
    assert dollars.startswith("$0.0")
    assert dollars in header_html(run.state, now=0) and dollars in status_line(run.state, now=0)


def test_an_answer_whose_file_cannot_be_written_fails_but_keeps_what_it_cost(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestra_magic.runfolder import folder as runfolder

    real_replace = runfolder.os.replace

    def replace(src: object, dst: object) -> None:
        if str(dst).endswith("a-2.md"):
            raise OSError(28, "No space left on device", str(dst))
        real_replace(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(runfolder.os, "replace", replace)
    run = om.run(make_spec({"a": 3}), provider="offline", root=tmp_path)
    failed = run.agents.set_index("agent").loc["a-2"]
    assert failed.status == "failed" and failed.error.startswith("file error: No space left on device")
    assert failed.input_tokens > 0 and failed.cost_usd > 0  # paid for, and the bill says so
    assert run.state.cost_usd == pytest.approx(run.agents.cost_usd.sum())


def test_a_budget_counts_what_earlier_sessions_of_the_run_spent(tmp_path: Path) -> None:
    spec = make_spec({"a": 6}, concurrency=1)
    probe = om.run(spec, provider="offline", root=tmp_path / "probe")
    per_agent = float(probe.agents[probe.agents.role == "worker"].cost_usd.max())
    budget = 3.5 * per_agent
    first = om.run({**spec, "budget_usd": budget}, provider="offline", root=tmp_path)
    assert first.status == "cancelled"
    again = om.run({**spec, "budget_usd": budget}, provider="offline", root=tmp_path, resume=first.run_id)
    assert again.status == "cancelled"  # the same budget buys nothing more: the done ones are those kept as recorded
    assert again.state.counts["done"] == first.state.counts["done"] and again.state.counts["running"] == 0
    assert again.state.cost_usd == pytest.approx(first.state.cost_usd)


def test_an_agent_run_again_on_resume_adds_to_what_it_cost_before(tmp_path: Path) -> None:
    """A worker billed for a failed attempt, then run again by a resume: both bills stay on record (its
    row, the run's total, and so the budget), whether the resume reaches it or is stopped before."""
    paid = om.Completion("", 1_000, 100, model="claude-sonnet-5-5")
    one = cost_usd("claude-sonnet-5-5", 1_000, 100)
    assert one is not None

    def worker(request: om.AgentRequest) -> om.Completion:
        if request.task.startswith("fail"):
            error = om.AgentError("the tool loop gave up")
            error.spent = paid  # what a tool loop that gave up was billed for
            raise error
        return paid

    spec = {"domains": [{"name": "a", "coordinator": "c", "workers": [{"id": "w", "task": "fail"}]}]}
    first = om.run(spec, provider=om.PythonProvider(worker), root=tmp_path)
    assert first.agents.set_index("agent").loc["w", "cost_usd"] == pytest.approx(one)
    spec["domains"][0]["workers"][0]["task"] = "fail again"
    again = om.run(spec, provider=om.PythonProvider(worker), root=tmp_path, resume=first.run_id)
    spec["domains"][0]["workers"][0]["task"] = "work"
    done = om.run(spec, provider=om.PythonProvider(worker), root=tmp_path, resume=first.run_id)
    for session, bills in ((again, 2), (done, 3)):
        row = session.agents.set_index("agent").loc["w"]
        assert row.cost_usd == pytest.approx(bills * one) and row.input_tokens == bills * 1_000
        assert session.state.cost_usd == pytest.approx(bills * one)
    assert om.load_run(done.path).state.cost_usd == pytest.approx(3 * one)


def test_a_budget_holds_back_a_batch_until_it_knows_what_an_answer_costs(tmp_path: Path) -> None:
    spec = make_spec({"a": 20}, concurrency=2, mode="batch")
    probe = om.run(make_spec({"a": 20}, concurrency=2), provider="offline", root=tmp_path / "probe")
    workers = probe.agents[probe.agents.role == "worker"]
    budget = 3 * float(workers.cost_usd.max()) / 2  # about three workers at batch price
    run = om.run({**spec, "budget_usd": budget}, provider="offline", root=tmp_path)
    assert run.status == "cancelled" and run.state.counts["done"] < 10  # not the whole batch of 20
