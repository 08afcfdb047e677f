"""The spec loader: each bad spec gets a message naming the key path and line; good specs expand."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestra_magic.errors import SpecError
from orchestra_magic.spec import Spec, load_spec

OK_DOMAIN = "domains:\n  - name: a\n    coordinator: c\n    workers:\n      - task: t\n"


def worker_yaml(*lines: str) -> str:
    """A spec whose first worker entry is `lines` (each line of the entry, first one after '- ')."""
    body = "\n".join(("      - " if i == 0 else "        ") + line for i, line in enumerate(lines))
    return f"domains:\n  - name: a\n    coordinator: c\n    workers:\n{body}\n"


BAD_SPECS = [
    pytest.param("", "", None, "the spec is empty", id="empty"),
    pytest.param("- a\n- b\n", "", None, "must be a mapping with a `domains:` key, not a list", id="top-level-list"),
    pytest.param("name: x\ndomains: [\n", "", 3, "invalid YAML", id="yaml-syntax"),
    pytest.param("name: x\n", "domains", 1, "missing required key 'domains'", id="no-domains"),
    pytest.param("domains: []\n", "domains", 1, "needs at least one entry", id="empty-domains"),
    pytest.param("concurency: 4\n" + OK_DOMAIN, "concurency", 1, "did you mean 'concurrency'?", id="typo-top"),
    pytest.param(worker_yaml("taks: t"), "domains[0].workers[0].taks", 5, "did you mean 'task'?", id="typo-worker"),
    pytest.param("name: a\nname: b\n" + OK_DOMAIN, "name", 2, "duplicate key 'name'", id="duplicate-key"),
    pytest.param(OK_DOMAIN.replace("name: a", "name: a/b"), "domains[0].name", 2, "'a/b' is not a safe name",
                 id="unsafe-domain"),
    pytest.param(OK_DOMAIN.replace("name: a", "name: con"), "domains[0].name", 2, "reserved device name",
                 id="reserved-name"),
    pytest.param(OK_DOMAIN.replace("name: a", "name: " + "x" * 65), "domains[0].name", 2, "the limit is 64",
                 id="long-name"),
    pytest.param(OK_DOMAIN + OK_DOMAIN[9:], "domains[1].name", 6, "domain name 'a' is used twice", id="dup-domain"),
    pytest.param(OK_DOMAIN.replace("- task: t", "- {id: w, task: t}\n      - {id: w, task: u}"),
                 "domains[0].workers[1].id", 6, "worker id 'w' is used twice", id="dup-worker"),
    pytest.param(worker_yaml("task: '  '"), "domains[0].workers[0].task", 5, "must not be empty", id="blank-task"),
    pytest.param("mode: bach\n" + OK_DOMAIN, "mode", 1, "should be 'messages' or 'batch' (got 'bach')",
                 id="bad-choice"),
    pytest.param("concurrency: 0\n" + OK_DOMAIN, "concurrency", 1, "greater than or equal to 1", id="concurrency-0"),
    pytest.param("concurrency: 5000\n" + OK_DOMAIN, "concurrency", 1, "less than or equal to 1000",
                 id="concurrency-5000"),
    pytest.param("concurrency: eight\n" + OK_DOMAIN, "concurrency", 1, "valid integer", id="concurrency-text"),
    pytest.param("timeout: '600'\n" + OK_DOMAIN, "timeout", 1, "valid number (got '600')", id="timeout-quoted"),
    pytest.param("budget_usd: -1\n" + OK_DOMAIN, "budget_usd", 1, "greater than 0", id="budget-negative"),
    pytest.param("mode: batch\nroles:\n  worker: {tools: [web_search]}\n" + OK_DOMAIN, "mode", 1,
                 "agents with tools cannot use mode: batch", id="batch-with-tools"),
    pytest.param(worker_yaml("task: 42"), "domains[0].workers[0].task", 5, "valid string", id="task-number"),
    pytest.param("schedule: burst\n" + OK_DOMAIN, "schedule", 1, "'pool' or 'waves'", id="bad-schedule"),
    pytest.param(worker_yaml("task: 'About {{ missing }}'"), "domains[0].workers[0].task", 5,
                 "'missing' is undefined", id="undefined-variable"),
    pytest.param(worker_yaml("for_each: [1, 2]", "task: t", "colour: red"), "domains[0].workers[0].colour", 7,
                 "unknown key 'colour'", id="for-each-unknown-key"),
    pytest.param(worker_yaml("for_each: '{{ 5 }}'", "task: t"), "domains[0].workers[0].for_each", 5,
                 "for_each needs a list of items, got int", id="for-each-not-list"),
    pytest.param(worker_yaml("for_each: []", "task: t"), "domains[0].workers[0].for_each", 5,
                 "for_each produced no items", id="for-each-empty"),
    pytest.param(worker_yaml("for_each: [1]"), "domains[0].workers[0]", 5, "needs a `task:` template",
                 id="for-each-no-task"),
    pytest.param(worker_yaml("for_each: [1]", "as: 2x", "task: t"), "domains[0].workers[0].as", 6,
                 "must be a variable name", id="for-each-bad-as"),
    pytest.param(worker_yaml("for_each: [a, a]", "id: 'w-{{ item }}'", "task: t"), "domains[0].workers[0].id", 6,
                 "worker id 'w-a' is used twice", id="for-each-duplicate-ids"),
    pytest.param("effort: extreme\n" + OK_DOMAIN, "effort", 1, "'low', 'medium', 'high', 'xhigh' or 'max'",
                 id="bad-effort"),
]


@pytest.mark.parametrize(("text", "path", "line", "message"), BAD_SPECS)
def test_a_bad_spec_is_refused_with_its_key_path_and_line(text: str, path: str, line: int | None,
                                                          message: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(text)
    error = caught.value
    assert (error.path, error.line) == (path, line)
    assert message in str(error)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SpecError) as caught:
        load_spec("concurency: 4\nattempts: 0\n" + OK_DOMAIN)
    assert "did you mean 'concurrency'?" in str(caught.value) and "also: attempts (line 2)" in str(caught.value)


def test_a_missing_spec_file_is_named() -> None:
    with pytest.raises(SpecError, match=r"spec file not found: nowhere/spec\.yaml"):
        load_spec("nowhere/spec.yaml")


@pytest.mark.parametrize("source", [{"domains": 5}, {"domains": [5]}, {"domains": [{"workers": "oops"}]},
                                    {"templates": [1], "domains": []}, {1: 2}, {"domains": [{"workers": [None]}]}])
def test_odd_structures_are_spec_errors(source: dict[Any, Any]) -> None:
    with pytest.raises(SpecError):
        load_spec(source)


MINIMAL = """name: vendor-review
model: claude-sonnet-5-5
concurrency: 8
domains:
  - name: pricing
    coordinator: "Compare the vendors' pricing and name the cheapest for our use."
    workers:
      - id: a1
        task: "Collect Vendor A's published pricing tiers."
      - task: "Collect Vendor B's published pricing tiers."
"""


def test_the_contract_example_loads_with_defaults_and_generated_ids() -> None:
    spec = load_spec(MINIMAL)
    assert (spec.name, spec.model, spec.concurrency, spec.schedule) == ("vendor-review", "claude-sonnet-5-5", 8, "pool")
    assert [w.id for w in spec.domains[0].workers] == ["a1", "pricing-2"]
    assert load_spec(MINIMAL) == spec  # generated ids are stable


def test_for_each_unrolls_lists_and_expressions_with_outer_variables() -> None:
    spec = load_spec(
        "domains:\n  - name: prices\n    coordinator: Compare {{ tickers | length }}.\n    workers:\n"
        "      - task: First.\n"
        "      - for_each: '{{ tickers }}'\n        as: t\n        id: 'p-{{ t | lower }}'\n"
        "        task: '{{ t }} in {{ currency }}'\n"
        "      - for_each: [x, y]\n        task: 'Item {{ item }}'\n",
        {"tickers": ["AAPL", "MSFT"], "currency": "EUR"},
    )
    domain = spec.domains[0]
    assert domain.coordinator == "Compare 2."
    assert [(w.id, w.task) for w in domain.workers] == [
        ("prices-1", "First."), ("p-aapl", "AAPL in EUR"), ("p-msft", "MSFT in EUR"),
        ("prices-4", "Item x"), ("prices-5", "Item y")]


def test_text_dict_and_file_sources_give_the_same_spec(tmp_path: Path) -> None:
    import yaml

    path = tmp_path / "spec.yaml"
    path.write_text(MINIMAL)
    from_text, from_file = load_spec(MINIMAL), load_spec(path)
    assert from_text == from_file == load_spec(str(path)) == load_spec(yaml.safe_load(MINIMAL))


def test_the_written_spec_round_trips() -> None:
    spec = load_spec(MINIMAL)
    assert load_spec(spec.to_yaml()) == spec
    assert isinstance(load_spec(spec), Spec)


@pytest.mark.parametrize(
    ("settings", "path", "message"),
    [
        ({"roles": {"worker": {"modle": "x"}}}, "roles.worker.modle", "did you mean 'model'?"),
        ({"roles": {"coordinator": {"thinking": 8000}}}, "roles.coordinator.thinking",
         "coordinators' max_tokens (4096) must be larger than their thinking budget (8000)"),
        ({"thinking": 500}, "thinking", "thinking takes 'adaptive' or a budget of 1024 to 128000 tokens, got 500"),
        ({"roles": {"worker": {"thinking": "deep"}}}, "roles.worker.thinking", "'adaptive'"),
        ({"roles": {"workers": {}}}, "roles.workers", "did you mean 'worker'?"),
    ],
)
def test_role_settings_are_checked(settings: dict[str, Any], path: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec({**settings, "domains": [{"name": "a", "coordinator": "c", "workers": [{"task": "t"}]}]})
    assert caught.value.path == path and message in str(caught.value)


def test_a_role_inherits_what_it_does_not_override() -> None:
    spec = load_spec({"model": "m-top", "max_tokens": 999, "roles": {"worker": {"model": "m-worker"}},
                      "domains": [{"name": "a", "coordinator": "c", "workers": [{"task": "t"}]}]})
    assert (spec.settings("worker").model, spec.settings("worker").max_tokens) == ("m-worker", 999)
    assert spec.settings("coordinator").model == "m-top"
