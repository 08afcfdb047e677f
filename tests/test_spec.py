"""`load_spec`: good specs load, expand and number their workers; every bad one is one `SpecError`
that names the key path, the YAML line and what is wrong."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestra_magic.errors import SpecError
from orchestra_magic.spec.load import load_spec
from orchestra_magic.spec.model import DEFAULT_MODEL, MAX_ID_LENGTH

CONTRACT_SPEC = """\
name: vendor-review            # optional; part of the run id
model: claude-sonnet-5-5       # optional default model
concurrency: 8                 # optional; max agents in flight
domains:
  - name: pricing              # unique, [A-Za-z0-9_-]+
    coordinator: "Compare the vendors' pricing and name the cheapest for our use."
    workers:
      - id: a1                 # optional, unique within the run, [A-Za-z0-9_-]+; generated if absent
        task: "Collect Vendor A's published pricing tiers."
      - task: "Collect Vendor B's published pricing tiers."
"""

# Line 1 is `domains:`, line 2 the domain's name, line 5 the first worker entry.
ONE_DOMAIN = "domains:\n  - name: a\n    coordinator: c\n    workers:\n      - task: t\n"
ONE_DOMAIN_DICT = {"domains": [{"name": "a", "coordinator": "c", "workers": [{"task": "t"}]}]}


def domain(name: str = "a") -> str:
    """One domain with one worker, as YAML lines under `domains:` (4 lines, name on the first)."""
    return f"  - name: {name}\n    coordinator: c\n    workers:\n      - task: t\n"


def worker(*lines: str) -> str:
    """A spec whose only worker entry is `lines`; the entry starts on line 5."""
    body = "\n".join(("      - " if i == 0 else "        ") + line for i, line in enumerate(lines))
    return f"domains:\n  - name: a\n    coordinator: c\n    workers:\n{body}\n"


def bad(source: Any, path: str, line: int | None, fragment: str, id: str, variables: Any = None) -> Any:
    return pytest.param(source, variables, path, line, fragment, id=id)


BAD_SPECS = [
    # The document as a whole
    bad("", "", None, "the spec is empty; it needs at least a `domains:` list", "empty-text"),
    bad("# only a comment\n", "", None, "the spec is empty", "comment-only-text"),
    bad("- a\n- b\n", "", None, "must be a mapping with a `domains:` key, not a list", "top-level-list"),
    bad("name: x\ndomains: [\n", "", 3, "invalid YAML: expected the node content", "unclosed-flow-list"),
    bad("name: x\n\tdomains: 1\n", "", 2, "invalid YAML: found character '\\t'", "tab-indentation"),
    bad("name: x\n", "domains", 1, "missing required key 'domains'", "missing-domains"),
    bad("domains: []\n", "domains", 1, "needs at least one entry", "empty-domains"),
    bad("domains: 5\n", "domains", 1, "should be a list (one '- ' entry per item), got 5", "domains-not-a-list"),
    bad("concurency: 4\n" + ONE_DOMAIN, "concurency", 1, "unknown key 'concurency'; did you mean 'concurrency'?",
        "top-level-typo"),
    bad("name: a\nname: b\n" + ONE_DOMAIN, "name", 2, "duplicate key 'name'", "duplicate-top-level-key"),
    bad("key: &a [*a]\n", "", None, "or a YAML alias refers to itself", "self-referring-alias"),
    bad("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(  # "billion laughs": 10^7 values from 9 lines
        f"{n}: &{n} [{', '.join([f'*{p}'] * 10)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)),
        "", None, "over 1,000,000 values once its YAML aliases", "alias-bomb"),
    bad("no/such/dir/spec.yaml", "", None, "no such file: no/such/dir/spec.yaml", "missing-spec-file"),
    # Settings
    bad("concurrency: 0\n" + ONE_DOMAIN, "concurrency", 1, "greater than or equal to 1 (got 0)", "concurrency-zero"),
    bad("concurrency: 5000\n" + ONE_DOMAIN, "concurrency", 1, "less than or equal to 1000 (got 5000)",
        "concurrency-too-high"),
    bad('concurrency: "eight"\n' + ONE_DOMAIN, "concurrency", 1, "valid integer (got 'eight')", "concurrency-as-text"),
    bad("schedule: burst\n" + ONE_DOMAIN, "schedule", 1, "'pool' or 'waves'", "unknown-schedule"),
    bad("templates: [1]\n" + ONE_DOMAIN, "templates", 1, "should be a mapping of `key: value`, got a list",
        "templates-not-a-mapping"),
    bad("timeout: '600'\n" + ONE_DOMAIN, "timeout", 1, "valid number (got '600')", "timeout-quoted"),
    bad("budget_usd: -1\n" + ONE_DOMAIN, "budget_usd", 1, "greater than 0", "budget-negative"),
    bad("mode: bach\n" + ONE_DOMAIN, "mode", 1, "should be 'messages' or 'batch' (got 'bach')", "mode-unknown"),
    bad("effort: extreme\n" + ONE_DOMAIN, "effort", 1, "'low', 'medium', 'high', 'xhigh' or 'max' (got 'extreme')",
        "effort-unknown"),
    bad("mode: batch\nroles:\n  worker: {tools: [web_search]}\n" + ONE_DOMAIN, "mode", 1,
        "agents with tools cannot use mode: batch", "batch-with-tools"),
    bad("thinking: 500\n" + ONE_DOMAIN, "thinking", 1,
        "thinking takes 'adaptive' or a budget of 1024 to 128000 tokens, got 500", "thinking-too-small"),
    # Per-role settings (a dict spec: paths, no lines)
    bad({"roles": {"worker": {"modle": "x"}}, **ONE_DOMAIN_DICT}, "roles.worker.modle", None,
        "did you mean 'model'?", "role-setting-typo"),
    bad({"roles": {"workers": {}}, **ONE_DOMAIN_DICT}, "roles.workers", None, "did you mean 'worker'?",
        "role-name-typo"),
    bad({"roles": {"coordinator": {"thinking": 8000}}, **ONE_DOMAIN_DICT}, "roles.coordinator.thinking", None,
        "coordinators' max_tokens (4096) must be larger than their thinking budget (8000)",
        "role-thinking-over-max-tokens"),
    bad({"roles": {"worker": {"thinking": "deep"}}, **ONE_DOMAIN_DICT}, "roles.worker.thinking", None, "'adaptive'",
        "role-thinking-unknown"),
    # Domain names become folder and file names
    bad(ONE_DOMAIN.replace("name: a", "name: a/b"), "domains[0].name", 2, "it contains '/'", "name-with-slash"),
    bad(ONE_DOMAIN.replace("name: a", "name: '..'"), "domains[0].name", 2, "it contains '.' (U+002E FULL STOP)",
        "name-dot-dot"),
    bad(ONE_DOMAIN.replace("name: a", "name: con"), "domains[0].name", 2, "'con' is a reserved device name on Windows",
        "name-reserved-on-windows"),
    bad(ONE_DOMAIN.replace("name: a", "name: LPT1"), "domains[0].name", 2, "reserved device name",
        "name-reserved-upper"),
    bad(ONE_DOMAIN.replace("name: a", "name: " + "x" * 65), "domains[0].name", 2,
        "is 65 characters long; the limit is 64", "name-65-characters"),
    bad(ONE_DOMAIN.replace("name: a", "name: dаta"), "domains[0].name", 2,  # Cyrillic 'а' (U+0430)
        "it contains 'а' (U+0430 CYRILLIC SMALL LETTER A); use only ASCII letters", "name-with-cyrillic-look-alike"),
    bad(ONE_DOMAIN.replace("name: a", 'name: "a\\0b"'), "domains[0].name", 2, "it contains '\\x00' (U+0000",
        "name-with-nul"),
    bad(ONE_DOMAIN.replace("name: a", "name: ''"), "domains[0].name", 2, "must not be empty", "name-empty"),
    bad("domains:\n" + domain("a") + domain("b") + domain("a"), "domains[2].name", 10,
        "domain name 'a' is used twice (also domains[0])", "duplicate-domain-names"),
    bad("domains:\n" + domain("data") + domain("Data"), "domains[1].name", 6,
        "domain name 'Data' differs only in case from 'data'", "domain-names-differing-only-in-case"),
    # Workers
    bad(worker("taks: t"), "domains[0].workers[0].taks", 5, "unknown key 'taks'; did you mean 'task'?", "worker-typo"),
    bad(worker("task: t", "task: u"), "domains[0].workers[0].task", 6, "duplicate key 'task'", "duplicate-worker-key"),
    bad(worker("task: '   '"), "domains[0].workers[0].task", 5, "must not be empty", "worker-blank-task"),
    bad(worker("task: 42"), "domains[0].workers[0].task", 5, "valid string (got 42)", "worker-task-number"),
    bad(worker("id: w", "task: t") + "      - id: x\n        task: t\n      - id: w\n        task: t\n",
        "domains[0].workers[2].id", 9, "worker id 'w' is used twice (also in domain 'a')", "duplicate-ids-in-domain"),
    bad("domains:\n" + domain("a").replace("- task: t", "- {id: w1, task: t}")
        + domain("b").replace("- task: t", "- {id: w1, task: u}"),
        "domains[1].workers[0].id", 9, "worker id 'w1' is used twice (also in domain 'a')",
        "duplicate-ids-across-domains"),
    bad(worker("{id: Report, task: t}") + "      - {id: report, task: u}\n", "domains[0].workers[1].id", 6,
        "worker id 'report' differs only in case from 'Report'", "ids-differing-only-in-case"),
    bad(worker("id: a-2", "task: t") + "      - task: u\n", "domains[0].workers[1]", 7,
        "this worker has no `id:`, so it is named 'a-2'", "explicit-id-taken-by-a-generated-one"),
    bad(worker("Summarise the filings"), "domains[0].workers[0]", 5,
        "should be a mapping of `key: value`, got 'Summarise the filings'", "worker-as-plain-string"),
    bad(ONE_DOMAIN.replace("workers:\n      - task: t\n", "workers:\n"), "domains[0].workers", 4,
        "should be a list (one '- ' entry per item), got nothing", "domain-without-workers"),
    # Jinja
    bad(worker("task: 'About {{ company }}'"), "domains[0].workers[0].task", 5, "'company' is undefined",
        "undefined-variable-in-task"),
    bad(ONE_DOMAIN.replace("coordinator: c", "coordinator: '{{ goal }}'"), "domains[0].coordinator", 3,
        "'goal' is undefined", "undefined-variable-in-coordinator"),
    bad(worker("task: '{{ 1 / 0 }}'"), "domains[0].workers[0].task", 5, "ZeroDivisionError", "expression-raises"),
    bad(worker("task: '{% if %}'"), "domains[0].workers[0].task", 5, "template problem", "template-syntax-error"),
    # for_each
    bad(worker("for_each: [1, 2]", "task: t", "colour: red"), "domains[0].workers[0].colour", 7,
        "unknown key 'colour'; known keys: for_each, as, id, task", "for-each-unknown-key"),
    bad(worker("for_each: [1, 2]", "taks: t"), "domains[0].workers[0].taks", 6, "did you mean 'task'?",
        "for-each-typo"),
    bad(worker("for_each: '{{ 5 }}'", "task: t"), "domains[0].workers[0].for_each", 5,
        "for_each needs a list of items (or a DataFrame), got int", "for-each-expression-not-a-list"),
    bad(worker("for_each: '{{ ticker }}'", "task: t"), "domains[0].workers[0].for_each", 5,
        "got a str of 4 characters (iterating it gives the characters)", "for-each-expression-a-string",
        {"ticker": "AAPL"}),
    bad(worker("for_each: {x: 1}", "task: t"), "domains[0].workers[0].for_each", 5,
        "got a dict (iterating it gives its 1 keys; pass a list of its values)", "for-each-mapping"),
    bad(worker("for_each: []", "task: t"), "domains[0].workers[0].for_each", 5, "for_each produced no items",
        "for-each-empty-literal"),
    bad(worker("for_each: '{{ tickers }}'", "task: t"), "domains[0].workers[0].for_each", 5,
        "for_each produced no items", "for-each-empty-variable", {"tickers": []}),
    bad(worker("for_each: '{{ tickers }}'", "task: t"), "domains[0].workers[0].for_each", 5,
        "cannot evaluate 'tickers': 'tickers' is undefined", "for-each-undefined-variable"),
    bad(worker("for_each: [1]"), "domains[0].workers[0]", 5, "a for_each entry needs a `task:` template",
        "for-each-without-task"),
    bad(worker("for_each: [1]", "as: 2x", "task: t"), "domains[0].workers[0].as", 6,
        "`as:` must be a variable name, got '2x'", "for-each-as-not-identifier"),
    bad(worker("for_each: [1]", "as: my-item", "task: t"), "domains[0].workers[0].as", 6,
        "`as:` must be a variable name", "for-each-as-with-dash"),
    bad(worker("for_each: [1]", "task: '{{ item }} {{ nope }}'"), "domains[0].workers[0].task", 6,
        "'nope' is undefined", "for-each-task-undefined-variable"),
    bad(worker("for_each: [a, a]", "id: 'w-{{ item }}'", "task: t"), "domains[0].workers[0].id", 6,
        "worker id 'w-a' is used twice", "for-each-duplicate-ids"),
    # An error in a later for_each entry names that entry, not the first one (the entries expand to 3 workers).
    bad(worker("for_each: [1, 2, 3]", "task: 't{{ item }}'") + "      - for_each: [1]\n        task: '{{ zz }}'\n",
        "domains[0].workers[1].task", 8, "'zz' is undefined", "second-for-each-entry"),
    bad(worker("for_each: [1, 2]", "task: t") + "      - task: 42\n", "domains[0].workers[1].task", 7,
        "valid string", "plain-worker-after-for-each"),
]


@pytest.mark.parametrize(("source", "variables", "path", "line", "fragment"), BAD_SPECS)
def test_a_bad_spec_names_its_key_path_line_and_problem(source: str, variables: dict[str, Any] | None, path: str,
                                                        line: int | None, fragment: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(source, variables)
    error = caught.value
    assert (error.path, error.line) == (path, line), str(error)
    assert fragment in error.problem


def test_the_error_text_leads_with_the_path_and_line() -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(worker("taks: t"))
    assert str(caught.value).startswith("spec error at domains[0].workers[0].taks (line 5): unknown key 'taks'")


def test_a_dict_spec_has_paths_but_no_lines() -> None:
    with pytest.raises(SpecError) as caught:
        load_spec({"domains": [{"name": "a", "coordinator": "c", "workers": [{"id": "w", "task": ""}]}]})
    assert (caught.value.path, caught.value.line) == ("domains[0].workers[0].task", None)
    assert str(caught.value) == "spec error at domains[0].workers[0].task: must not be empty"


def test_a_missing_spec_path_object_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "absent.yaml")


ODD_INPUTS = [
    pytest.param({"domains": 5}, id="domains-is-a-number"),
    pytest.param({"domains": [5]}, id="domain-is-a-number"),
    pytest.param({"domains": [None]}, id="domain-is-null"),
    pytest.param({"domains": [{"workers": "oops"}]}, id="workers-is-a-string"),
    pytest.param({"domains": [{"name": "a", "coordinator": "c", "workers": [None, 3, []]}]}, id="workers-odd-items"),
    pytest.param({"templates": [1]}, id="templates-is-a-list"),
    pytest.param({1: 2}, id="non-string-key"),
    pytest.param({"domains": [{"name": 7, "coordinator": ["x"], "workers": [{"for_each": 5, "task": "t"}]}]},
                 id="wrong-types-everywhere"),
    pytest.param({"domains": [{"name": "a", "coordinator": "c", "workers": [{"for_each": [1], "task": {"x": 1}}]}]},
                 id="for-each-task-a-mapping"),
    pytest.param("domains:\n  - name: a\n    coordinator: '{{ \"\".__class__.__mro__ }}'\n    workers: [{task: t}]\n",
                 id="sandboxed-expression"),
    pytest.param("[unclosed", id="yaml-flow-error"),
    pytest.param("key: &a [*a]\n", id="yaml-recursive-alias"),
    pytest.param([1], id="list-source"),
    pytest.param(b"domains: []", id="bytes-source"),
    pytest.param(None, id="none-source"),
]


@pytest.mark.parametrize("source", ODD_INPUTS)
def test_every_problem_is_a_spec_error(source: Any) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(source)
    assert str(caught.value).startswith("spec error")


def test_an_iterable_that_fails_while_listed_is_a_spec_error() -> None:
    def broken() -> Any:
        yield 1
        raise RuntimeError("feed went away")

    with pytest.raises(SpecError, match="cannot list the items: RuntimeError: feed went away"):
        load_spec(worker("for_each: '{{ feed }}'", "task: t"), {"feed": broken()})


def test_several_problems_are_reported_together_with_the_typo_first() -> None:
    with pytest.raises(SpecError) as caught:
        load_spec("attempts: 0\nconcurency: 4\n" + ONE_DOMAIN)
    assert caught.value.path == "concurency"
    assert "also: attempts (line 1): Input should be greater than or equal to 1" in caught.value.problem


# --- Good specs ------------------------------------------------------------------------------------------


def test_the_contract_example_loads() -> None:
    spec = load_spec(CONTRACT_SPEC)
    assert (spec.name, spec.model, spec.concurrency) == ("vendor-review", "claude-sonnet-5-5", 8)
    (pricing,) = spec.domains
    assert pricing.name == "pricing"
    assert pricing.coordinator == "Compare the vendors' pricing and name the cheapest for our use."
    assert [(w.id, w.task) for w in pricing.workers] == [
        ("a1", "Collect Vendor A's published pricing tiers."),
        ("pricing-2", "Collect Vendor B's published pricing tiers."),
    ]


def test_a_role_inherits_what_it_does_not_override() -> None:
    spec = load_spec({"model": "m-top", "max_tokens": 999, "roles": {"worker": {"model": "m-worker"}},
                      **ONE_DOMAIN_DICT})
    assert (spec.settings("worker").model, spec.settings("worker").max_tokens) == ("m-worker", 999)
    assert spec.settings("coordinator").model == "m-top"


def test_left_out_settings_take_their_defaults() -> None:
    spec = load_spec(ONE_DOMAIN)
    assert (spec.name, spec.model, spec.concurrency, spec.schedule) == ("run", DEFAULT_MODEL, 8, "pool")
    assert spec.domains[0].context == ""


def test_unnamed_workers_are_numbered_by_position_and_stable_across_loads() -> None:
    text = ("domains:\n" + domain("alpha").replace("- task: t", "- task: t\n      - id: keep\n        task: u\n"
                                                    "      - task: v")
            + domain("beta"))
    first, second = load_spec(text), load_spec(text)
    assert [w.id for _, w in first.workers] == ["alpha-1", "keep", "alpha-3", "beta-1"]
    assert first == second


def test_a_generated_id_fits_the_limit_even_for_the_longest_domain_name() -> None:
    name = "d" * MAX_ID_LENGTH
    spec = load_spec({"domains": [{"name": name, "coordinator": "c", "workers": [{"task": "t"}] * 10}]})
    ids = [w.id for w in spec.domains[0].workers]
    assert all(len(i) <= MAX_ID_LENGTH for i in ids) and len(set(ids)) == 10
    assert ids[0] == "d" * (MAX_ID_LENGTH - 2) + "-1" and ids[9] == "d" * (MAX_ID_LENGTH - 3) + "-10"


def test_jinja_variables_expand_in_names_coordinators_and_tasks() -> None:
    spec = load_spec(
        "name: '{{ project }}-run'\ndomains:\n  - name: '{{ area }}'\n"
        "    coordinator: 'Compare {{ vendors | join(\", \") }}.'\n"
        "    workers:\n      - task: 'Price of {{ vendors[0] | upper }}'\n",
        {"project": "acme", "area": "pricing", "vendors": ["a", "b"]},
    )
    assert spec.name == "acme-run"
    (d,) = spec.domains
    assert (d.name, d.coordinator, d.workers[0].task) == ("pricing", "Compare a, b.", "Price of A")
    assert d.workers[0].id == "pricing-1"  # generated from the expanded name


def test_for_each_over_a_literal_list_uses_item() -> None:
    spec = load_spec(worker("for_each: [red, green]", "task: 'Paint it {{ item }}'"))
    assert [(w.id, w.task) for w in spec.domains[0].workers] == [("a-1", "Paint it red"), ("a-2", "Paint it green")]


def test_for_each_over_a_variable_with_as_and_an_id_template() -> None:
    spec = load_spec(
        worker("for_each: '{{ tickers }}'", "as: ticker", "id: 'q-{{ ticker | lower }}'",
               "task: 'Quarterly results of {{ ticker }}'"),
        {"tickers": ["AAPL", "MSFT"]},
    )
    assert [(w.id, w.task) for w in spec.domains[0].workers] == [
        ("q-aapl", "Quarterly results of AAPL"), ("q-msft", "Quarterly results of MSFT")]


def test_for_each_accepts_a_bare_expression_and_any_iterable() -> None:
    spec = load_spec(worker("for_each: 'range(n)'", "task: 'Part {{ item + 1 }}'"), {"n": 3})
    assert [w.task for w in spec.domains[0].workers] == ["Part 1", "Part 2", "Part 3"]


def test_for_each_task_sees_the_item_and_the_outer_variables() -> None:
    spec = load_spec(
        worker("for_each: '{{ tickers }}'", "as: t", "task: '{{ t }} in {{ currency }}, {{ tickers | length }} total'"),
        {"tickers": ["AAPL", "MSFT"], "currency": "EUR"},
    )
    assert [w.task for w in spec.domains[0].workers] == ["AAPL in EUR, 2 total", "MSFT in EUR, 2 total"]


def test_for_each_item_shadows_an_outer_variable_of_the_same_name() -> None:
    spec = load_spec(worker("for_each: [x]", "task: '{{ item }}'"), {"item": "outer"})
    assert spec.domains[0].workers[0].task == "x"


def test_a_variable_called_self_does_not_break_for_each() -> None:
    spec = load_spec(worker("for_each: '{{ xs }}'", "task: '{{ item }}'"), {"xs": ["a"], "self": object()})
    assert spec.domains[0].workers[0].task == "a"


def test_for_each_and_plain_workers_are_numbered_together() -> None:
    spec = load_spec(
        "domains:\n  - name: mix\n    coordinator: c\n    workers:\n"
        "      - task: first\n"
        "      - for_each: [x, y]\n        task: 'each {{ item }}'\n"
        "      - id: named\n        task: middle\n"
        "      - for_each: [z]\n        id: 'z-{{ item }}'\n        task: 'each {{ item }}'\n"
        "      - task: last\n"
    )
    assert [(w.id, w.task) for w in spec.domains[0].workers] == [
        ("mix-1", "first"), ("mix-2", "each x"), ("mix-3", "each y"), ("named", "middle"), ("z-z", "each z"),
        ("mix-6", "last")]


def test_text_dict_path_and_path_string_sources_give_the_same_spec(tmp_path: Path) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(CONTRACT_SPEC, encoding="utf-8")
    from_text = load_spec(CONTRACT_SPEC)
    assert load_spec(yaml.safe_load(CONTRACT_SPEC)) == from_text
    assert load_spec(path) == from_text
    assert load_spec(str(path)) == from_text


def test_a_loaded_spec_passes_through_unchanged() -> None:
    spec = load_spec(CONTRACT_SPEC)
    assert load_spec(spec) is spec


def test_to_yaml_round_trips_to_an_equal_spec() -> None:
    spec = load_spec(
        "name: r\nconcurrency: 3\nschedule: waves\ncontext: shared\ndomains:\n"
        "  - name: a\n    coordinator: c\n    context: local\n    workers:\n"
        "      - for_each: [1, 2]\n        task: 'n{{ item }}'\n"
        "  - name: b\n    coordinator: 'd: with a colon'\n    workers:\n      - {id: x, task: \"multi\\nline\\n\"}\n"
    )
    assert load_spec(spec.to_yaml()) == spec


def test_to_yaml_round_trips_text_that_still_looks_like_jinja() -> None:
    spec = load_spec(
        worker("task: '{% raw %}Explain {{ name }} in Go templates{% endraw %}'").replace("coordinator: c",
                                                                                          "coordinator: '{{ c }}'"),
        {"c": "Use {% if %} and {# carefully"},
    )
    assert spec.domains[0].workers[0].task == "Explain {{ name }} in Go templates"
    assert load_spec(spec.to_yaml()) == spec
    assert load_spec(spec.to_yaml(), {"name": "ignored"}) == spec


@pytest.mark.parametrize("text", ["Close with {% endraw %} here", "{%- endraw -%} and {%endraw%}", "a {# note",
                                  "x'{% endraw %}'y"])
def test_to_yaml_round_trips_text_holding_jinja_raw_markers(text: str) -> None:
    spec = load_spec(worker("task: '{{ t }}'"), {"t": text})
    assert spec.domains[0].workers[0].task == text
    assert load_spec(spec.to_yaml()) == spec


def test_an_id_that_clashes_with_a_generated_one_names_the_unnamed_worker() -> None:
    head = "domains:\n  - name: x\n    coordinator: c\n    workers:\n"
    with pytest.raises(SpecError) as caught:
        load_spec(head + "      - task: one\n      - {id: x-1, task: two}\n")
    assert caught.value.path == "domains[0].workers[1].id"
    assert "is also the name of the worker without an `id:` at domains[0].workers[0]" in str(caught.value)
    with pytest.raises(SpecError) as caught:
        load_spec(head + "      - {id: x-2, task: one}\n      - task: two\n")
    assert caught.value.path == "domains[0].workers[1]" and "this worker has no `id:`" in str(caught.value)
