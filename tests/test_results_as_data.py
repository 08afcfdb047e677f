"""Results as data: DataFrame rows in (`for_each`), typed answers out (`roles.<role>.output`), `run.results`
joined back to the input, with the offline provider and the real SDK against the fake over HTTP."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pytest
from pydantic import BaseModel

import orchestra_magic as om
from orchestra_magic.engine.retry import RetryPolicy
from orchestra_magic.errors import ConfigError, SpecError
from orchestra_magic.fake.server import SIMULATED_MARK, FakeMessagesAPI
from orchestra_magic.providers import AgentRequest, PythonProvider
from orchestra_magic.providers.anthropic.batches import BatchPolicy
from orchestra_magic.providers.anthropic.provider import AnthropicProvider
from orchestra_magic.spec.load import load_spec

FIELDS = {"price": "number", "currency": "string", "tiers": ["string"], "units": "integer", "notes": "string"}
DTYPES = {"price": "float64", "currency": "str", "tiers": "object", "units": "Int64", "notes": "str",
          "agent": "str", "domain": "str"}
FAST = RetryPolicy(attempts=6, base=0.001)  # 10 % invalid six times in a row: one agent in a million
BATCHES = BatchPolicy(quiet=0.05, first_poll=0.01, max_poll=0.05)


def vendors(n: int) -> pd.DataFrame:
    """A table keyed by a string index (not positions), so a join that lines up proves the keys."""
    return pd.DataFrame({"vendor": [f"Vendor{i}" for i in range(n)], "employees": range(n)},
                        index=pd.Index([f"v{i:03d}" for i in range(n)], name="vendor_key"))


def priced(**settings: Any) -> dict[str, Any]:
    return {"concurrency": 100, **settings, "roles": {"worker": {"output": FIELDS}},
            "domains": [{"name": "pricing", "coordinator": "Compare the prices.", "workers": [
                {"for_each": "{{ df }}", "as": "row", "id": "price-{{ row.vendor | lower }}",
                 "task": "Collect {{ row.vendor }}'s published prices."}]}]}


def against(fake: FakeMessagesAPI, tmp_path: Path, spec: dict[str, Any], mode: str = "messages",
            **options: Any) -> om.Run:
    """Run with the real SDK against `fake` over HTTP on 127.0.0.1."""
    async def main() -> om.Run:
        await fake.start()
        try:
            provider = AnthropicProvider(api_key="sk-test", base_url=fake.base_url, batch=BATCHES)
            return await om.arun({**spec, "mode": mode}, provider=provider, root=tmp_path, **options)
        finally:
            await fake.stop()

    return asyncio.run(main())


def requests_per_worker(fake: FakeMessagesAPI) -> Counter[str]:
    bodies = fake.requests + [r["params"] for b in fake.batches.created for r in b.requests]
    found = (re.search(r"workers/([\w-]+)\.md", b["messages"][0]["content"]) for b in bodies)
    return Counter(m.group(1) for m in found if m)


# --- Rows in -------------------------------------------------------------------------------------------------

def test_a_dataframe_gives_one_worker_per_row_with_its_fields_and_its_index_as_key() -> None:
    frame = pd.DataFrame({"vendor": ["Acme", "Bolt"], "price": [1.5, 2.0]}, index=[10, 20])
    spec = load_spec({"domains": [{"name": "p", "coordinator": "c", "workers": [
        {"for_each": "{{ df }}", "as": "row", "id": "price-{{ row.vendor | lower }}",
         "task": "{{ row.vendor }} at {{ row.price }} (row {{ key }})"}]}]}, {"df": frame})
    workers = spec.domains[0].workers
    assert [(w.id, w.task, w.key) for w in workers] == [("price-acme", "Acme at 1.5 (row 10)", 10),
                                                       ("price-bolt", "Bolt at 2.0 (row 20)", 20)]
    assert load_spec(spec.to_yaml()) == spec  # spec.yaml keeps the keys


@pytest.mark.parametrize(("items", "task", "expected"), [
    ([{"vendor": "Acme"}, {"vendor": "Bolt"}], "{{ item.vendor }}", [("Acme", 0), ("Bolt", 1)]),
    (["a", "b"], "{{ item }}", [("a", 0), ("b", 1)]),
    (range(2), "n{{ item }}", [("n0", 0), ("n1", 1)]),
], ids=["list-of-mappings", "list", "range"])
def test_sequences_are_keyed_by_position(items: Any, task: str, expected: list[tuple[str, int]]) -> None:
    spec = load_spec({"domains": [{"name": "p", "coordinator": "c", "workers": [
        {"for_each": "{{ xs }}", "task": task}]}]}, {"xs": items})
    assert [(w.task, w.key) for w in spec.domains[0].workers] == expected


@pytest.mark.parametrize(("value", "fragment"), [
    ({"a": 1, "b": 2}, "got a dict (iterating it gives its 2 keys"),
    ("abc", "got a str of 3 characters (iterating it gives the characters)"),
    (5, "got int"),
    (None, "got nothing"),
], ids=["dict", "string", "number", "none"])
def test_for_each_over_what_is_not_rows_is_refused_saying_what_was_given(value: Any, fragment: str) -> None:
    with pytest.raises(SpecError, match=re.escape(fragment)) as caught:
        load_spec({"domains": [{"name": "p", "coordinator": "c", "workers": [
            {"for_each": "{{ x }}", "task": "t"}]}]}, {"x": value})
    assert "\n" not in str(caught.value) and caught.value.path == "domains[0].workers[0].for_each"


class Columns:
    """A table that is not a pandas DataFrame (as polars' and arrow's are): iterating it gives its columns."""

    columns = ("vendor",)

    def __iter__(self) -> Any:
        return iter(self.columns)


class PolarsLike(Columns):
    def to_dicts(self) -> list[dict[str, Any]]:
        return [{"vendor": "Acme"}, {"vendor": "Bolt"}]


def test_other_tables_give_their_rows_or_are_refused_but_never_their_columns() -> None:
    def workers(table: object) -> list[tuple[str, Any]]:
        spec = load_spec({"domains": [{"name": "p", "coordinator": "c", "workers": [
            {"for_each": "{{ t }}", "task": "{{ item.vendor }}"}]}]}, {"t": table})
        return [(w.task, w.key) for w in spec.domains[0].workers]

    assert workers(PolarsLike()) == [("Acme", 0), ("Bolt", 1)]
    with pytest.raises(SpecError, match="for_each got a Columns, a table whose iteration gives its columns"):
        workers(Columns())


def test_loading_a_spec_and_the_engine_import_no_pandas() -> None:
    code = ("import sys, orchestra_magic.spec.model, orchestra_magic.engine.scheduler; "
            "print('pandas' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


# --- Typed out: the shape of an answer -----------------------------------------------------------------------

class Price(BaseModel):
    price: float
    currency: str
    tiers: list[str]


FIELD_MAP_SCHEMA = {"type": "object", "properties": {"price": {"type": "number"}, "tiers": {
    "type": "array", "items": {"type": "string"}}}, "required": ["price", "tiers"], "additionalProperties": False}


@pytest.mark.parametrize(("output", "variables", "properties"), [
    ({"price": "number", "tiers": ["string"]}, {}, {"price": "number", "tiers": "array"}),
    (FIELD_MAP_SCHEMA, {}, {"price": "number", "tiers": "array"}),
    ({"type": "object", "properties": {"n": {"type": "integer"}}}, {}, {"n": "integer"}),
    (Price, {}, {"price": "number", "currency": "string", "tiers": "array"}),
    ("Price", {"Price": Price}, {"price": "number", "currency": "string", "tiers": "array"}),
], ids=["field-map", "json-schema", "json-schema-without-additional-properties", "pydantic-class",
        "pydantic-class-by-name"])
def test_an_output_becomes_one_json_schema_the_api_accepts(output: Any, variables: dict[str, Any],
                                                         properties: dict[str, str]) -> None:
    spec = load_spec({"roles": {"worker": {"output": output}},
                      "domains": [{"name": "p", "coordinator": "c", "workers": [{"task": "t"}]}]}, variables)
    schema = spec.settings("worker").output
    assert schema is not None and schema["additionalProperties"] is False
    assert {k: v["type"] for k, v in schema["properties"].items()} == properties
    assert spec.settings("coordinator").output is None
    assert load_spec(spec.to_yaml()) == spec


def _refused(output: Any) -> str:
    with pytest.raises(SpecError) as caught:
        load_spec({"roles": {"worker": {"output": output}},
                   "domains": [{"name": "p", "coordinator": "c", "workers": [{"task": "t"}]}]})
    assert caught.value.path == "roles.worker.output" and "\n" not in str(caught.value)
    return caught.value.problem


def obj(**properties: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties}


@pytest.mark.parametrize(("output", "fragment"), [
    ({"price": "money"}, "field 'price' has the unknown type 'money'"),
    ({"price": ["number", "string"]}, "field 'price' has the unknown type"),
    ({}, "has no fields"),
    (obj(p={"type": "number", "minimum": 0}), "'minimum': numeric bounds are not supported"),
    (obj(p={"type": "string", "maxLength": 9}), "'maxLength': string length bounds are not supported"),
    (obj(p={"type": "array", "items": {"type": "string"}, "maxItems": 3}), "'maxItems': array bounds"),
    (obj(p={"type": "array", "items": {"type": "string"}, "minItems": 2}), "minItems above 1"),
    (obj(p={"oneOf": [{"type": "string"}, {"type": "number"}]}), "oneOf is not supported; use anyOf"),
    (obj(p={"type": ["string", "null"]}), "a list of types is not supported"),
    (obj(p={"type": "string", "format": "credit-card"}), "string format 'credit-card' is not supported"),
    ({**obj(p={"type": "string"}), "additionalProperties": True}, "additionalProperties must be false"),
    ({**obj(p={"$ref": "#/$defs/N"}), "$defs": {"N": obj(next={"$ref": "#/$defs/N"})}}, "recursive schemas"),
    (obj(p={"$ref": "https://example.com/schema.json"}), "only local references"),
    (obj(p={"type": "string", "not": {"const": "x"}}), "conditional schemas are not supported"),
    ({"type": "object", "properties": {}, "patternProperties": {}}, "object constraints"),
    ({"$ref": "#/$defs/S", "$defs": {"S": {"type": "string"}}}, "the answer must be an object"),
    ("Missing", "'Missing' names no pydantic model among the variables"),
    (3, "not a int"),
], ids=["unknown-field-type", "list-of-two-types", "empty-field-map", "minimum", "max-length", "max-items",
        "min-items-2", "one-of", "type-list", "format", "additional-properties", "recursive", "external-ref",
        "not", "pattern-properties", "root-not-object", "name-of-nothing", "number"])
def test_an_output_the_api_cannot_honour_is_refused_in_one_line(output: Any, fragment: str) -> None:
    assert fragment in _refused(output)


def test_a_pydantic_field_with_bounds_is_refused_naming_it() -> None:
    from pydantic import Field

    class Bounded(BaseModel):
        price: float = Field(ge=0)

    assert "'minimum'" in _refused(Bounded) and "(at price)" in _refused(Bounded)


def test_the_schema_is_part_of_the_input_hash() -> None:
    from orchestra_magic.engine.planning import input_hash, render_request
    from orchestra_magic.engine.tree import plan_agents
    from orchestra_magic.spec.prompts import Prompts

    def digest(output: Any) -> str:
        roles = {"worker": {"output": output}} if output else {}
        spec = load_spec({"roles": roles, "domains": [{"name": "p", "coordinator": "c", "workers": [{"task": "t"}]}]})
        request = render_request(spec, Prompts(spec.templates), plan_agents(spec)[0], ())
        return input_hash(request, "offline")

    assert len({digest(None), digest({"price": "number"}), digest({"price": "string"})}) == 3


# --- Columns back ---------------------------------------------------------------------------------------------

def check_results(run: om.Run, frame: pd.DataFrame) -> None:
    results = run.results
    workers = sum(a.role == "worker" for a in run.state.agents.values())  # besides sub-coordinators (fan_in)
    assert run.status == "done" and len(results) == len(frame) == workers
    assert results.dtypes.astype(str).to_dict() == DTYPES
    joined = frame.join(results)
    assert joined.agent.tolist() == [f"price-{v.lower()}" for v in frame.vendor]  # each answer on its own row
    assert joined[["price", "units", "currency"]].notna().all().all()
    first = json.loads((Path(run.path) / "workers" / f"{joined.agent.iloc[0]}.json").read_text())
    assert joined.price.iloc[0] == first["price"] and joined.tiers.iloc[0] == first["tiers"]
    assert joined.currency.str.startswith(SIMULATED_MARK).all()


def test_300_rows_come_back_as_300_typed_rows_with_the_offline_provider(tmp_path: Path) -> None:
    frame = vendors(300)
    run = om.run(priced(), provider="offline", variables={"df": frame}, root=tmp_path)
    check_results(run, frame)
    readable = run.output("price-vendor0")
    assert "- **price**: " in readable and not readable.lstrip().startswith("{")  # the .md is for people


@pytest.mark.parametrize("mode", ["messages", "batch"])
def test_300_rows_come_back_typed_over_http_with_invalid_answers_retried(tmp_path: Path, mode: str) -> None:
    """The real SDK against the fake, which breaks a seeded 10 % of the answers: those agents are asked
    again (and again) until their answer fits, and every row ends valid and typed."""
    frame, fake = vendors(300), FakeMessagesAPI(invalid_rate=0.1, seed=7)
    run = against(fake, tmp_path, priced(), mode, variables={"df": frame}, retry=FAST)
    check_results(run, frame)
    sent = fake.requests[0] if mode == "messages" else fake.batches.created[0].requests[0]["params"]
    assert sent["output_config"]["format"]["schema"]["properties"]["price"] == {"type": "number"}
    assert run.agents.batch.all() == (mode == "batch")
    retried = run.agents[run.agents.attempts > 1].agent.tolist()
    assert 10 < len(retried) < 60 and fake.faults["invalid"] >= len(retried)
    asked = requests_per_worker(fake)
    assert all(asked[agent] > 1 for agent in retried)


def test_with_one_attempt_an_invalid_answer_fails_naming_the_field(tmp_path: Path) -> None:
    frame, fake = vendors(300), FakeMessagesAPI(invalid_rate=0.1, seed=7)
    run = against(fake, tmp_path, priced(attempts=1), "batch", variables={"df": frame})
    failed = run.agents[run.agents.status == "failed"]
    assert len(failed) == fake.faults["invalid"] > 10
    pattern = r"the answer does not fit the output schema: (?:price|currency|tiers|units|notes): (?:missing|expected)"
    assert failed.error.str.contains(pattern).all(), failed.error.iloc[0]
    results = run.results
    assert len(results) == 300 and results.price.isna().sum() == len(failed)  # the failed rows are missing
    assert results.price.dtype == "float64"


def test_a_resumed_run_keeps_its_typed_results_and_redoes_an_agent_whose_json_is_gone(tmp_path: Path) -> None:
    frame = vendors(40)
    first = om.run(priced(), provider="offline", variables={"df": frame}, root=tmp_path)
    (Path(first.path) / "workers" / "price-vendor7.json").unlink()
    again = om.run(priced(), provider="offline", variables={"df": frame}, root=tmp_path, resume=first.path)
    statuses = again.agents.set_index("agent").status
    # The worker whose JSON was gone ran again; the rest (and the coordinator, whose inputs came out the
    # same) were skipped.
    assert statuses["price-vendor7"] == "done" and (statuses.drop("price-vendor7") == "skipped").all()
    pd.testing.assert_frame_equal(again.results, first.results)
    pd.testing.assert_frame_equal(om.load_run(again.path).results, first.results)


def test_results_without_an_output_say_how_to_get_them(tmp_path: Path) -> None:
    run = om.run({"domains": [{"name": "p", "coordinator": "c", "workers": [{"task": "t"}]}]},
                 provider="offline", root=tmp_path)
    with pytest.raises(om.UsageError, match="declare no `output`"):
        _ = run.results


# --- The python provider --------------------------------------------------------------------------------------

class Quote(BaseModel):
    price: float
    currency: str


def quote(request: AgentRequest) -> Quote:
    return Quote(price=len(request.task), currency="EUR")


def bad_quote(request: AgentRequest) -> dict[str, Any]:
    return {"price": "cheap", "currency": "EUR"}


def text_only(request: AgentRequest) -> str:
    return "no numbers here"


def structured_coordinator(request: AgentRequest) -> dict[str, Any]:
    return {"cheapest": "Acme", "vendors": len(request.inputs), "summary": f"{len(request.inputs)} vendors priced."}


QUOTE = {"price": "number", "currency": "string"}


def quotes(coordinator_output: Any = None) -> dict[str, Any]:
    roles: dict[str, Any] = {"worker": {"output": QUOTE}}
    if coordinator_output:
        roles["coordinator"] = {"output": coordinator_output}
    return {"roles": roles, "domains": [{"name": "p", "coordinator": "Compare.", "workers": [
        {"for_each": ["Acme", "Bolt Ltd"], "task": "{{ item }}"}]}]}


def test_a_python_function_may_return_a_pydantic_model_and_gets_typed_columns(tmp_path: Path) -> None:
    run = om.run(quotes(), provider=PythonProvider(quote), root=tmp_path)
    assert run.results.price.tolist() == [4.0, 8.0] and run.results.index.tolist() == [0, 1]


def test_a_python_function_whose_answer_does_not_fit_fails_naming_the_field(tmp_path: Path) -> None:
    run = om.run(quotes(), provider=PythonProvider(bad_quote), root=tmp_path, retry=FAST)
    errors = run.agents[run.agents.role == "worker"].error
    assert errors.str.contains("price: expected a number, got 'cheap'").all()
    assert (run.agents[run.agents.role == "worker"].attempts == FAST.attempts).all()


@pytest.mark.parametrize(("provider", "spec", "fragment"), [
    (PythonProvider(text_only), quotes(), "declared to return str"),
    (PythonProvider(quote), quotes({"cheapest": "string"}), "default coordinator writes text"),
], ids=["worker-returns-str", "default-coordinator"])
def test_a_python_provider_that_cannot_honour_output_is_refused_before_anything_runs(
        tmp_path: Path, provider: PythonProvider, spec: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        om.run(spec, provider=provider, root=tmp_path)
    assert not any(tmp_path.iterdir())


def test_a_structured_coordinator_adds_columns_to_the_summaries(tmp_path: Path) -> None:
    run = om.run(quotes({"cheapest": "string", "vendors": "integer", "summary": "string"}),
                 provider=PythonProvider(quote, structured_coordinator), root=tmp_path)
    row = run.summaries.iloc[0]
    assert (row.summary, row.cheapest, row.vendors) == ("2 vendors priced.", "Acme", 2)
    synthesis = run.synthesis("p")
    assert "- **cheapest**: Acme" in synthesis and "<summary>2 vendors priced.</summary>" in synthesis
    assert json.loads((Path(run.path) / "synthesis" / "p.json").read_text())["vendors"] == 2


# --- Readable prose -------------------------------------------------------------------------------------------

def test_a_synthesis_is_a_str_that_renders_as_markdown_without_summary_tags(tmp_path: Path) -> None:
    run = om.run(quotes(), provider=PythonProvider(quote), root=tmp_path)
    synthesis = run.synthesis("p")
    assert isinstance(synthesis, str) and "<summary>" in synthesis
    shown = synthesis._repr_markdown_()
    assert "<summary>" not in shown and "> **Summary.** 2 of 2 workers in p produced results." in shown


def test_the_cell_shows_each_summary_whole_and_wrapped(tmp_path: Path) -> None:
    from orchestra_magic.display.tables import SummaryFrame

    long = " ".join(f"word{i}" for i in range(120))
    plain = pd.DataFrame({"domain": ["d"], "summary": [long], "status": ["done"], "missing": [[]],
                          "synthesis_path": ["x/synthesis/d.md"]})
    shown = SummaryFrame(plain)
    assert isinstance(shown, pd.DataFrame) and type(shown[["domain"]]) is pd.DataFrame
    assert long in shown._repr_html_() and "pre-wrap" in shown._repr_html_()
    text = repr(shown)
    assert " ".join(text.split()).endswith(f"d: {long}") and max(map(len, text.splitlines())) <= 200
    assert "…" not in text and "..." not in text


def test_the_tree_opens_a_synthesis_as_it_opens_worker_outputs(tmp_path: Path) -> None:
    from orchestra_magic.display.widget import RunView

    run = om.run(quotes(), provider=PythonProvider(quote), root=tmp_path)
    domain = RunView(run, on_stop=lambda: None, on_retry=lambda: None).domains[0]
    domain.toggle.value = True
    assert [label for label, _ in domain.picker.options] == ["synthesis (coordinator:p)", "p-1", "p-2"]
    domain.picker.value = "coordinator:p"
    domain._show_output()
    assert "2 of 2 workers in p produced results." in domain.preview.value


def test_in_a_shell_a_namespace_dataframe_and_model_drive_the_cell_and_the_summary_shows_whole(shell: Any) -> None:
    from helpers import cell

    shell.user_ns.update(table=vendors(3), Price=Price)
    shown = cell(shell, "%%orchestrate --provider offline -o run\nroles:\n  worker:\n    output: Price\n"
                        "domains:\n  - name: p\n    coordinator: Compare.\n    workers:\n"
                        "      - for_each: '{{ table }}'\n        as: row\n        task: 'Price {{ row.vendor }}.'\n")
    handle = shell.user_ns["run"]
    assert type(handle.summaries) is pd.DataFrame and isinstance(shown, pd.DataFrame)
    summary = handle.summaries.summary.iloc[0]
    assert len(summary) > 50 and summary in shown._repr_html_() and summary in " ".join(repr(shown).split())
    joined = shell.user_ns["table"].join(handle.results)
    assert joined.price.dtype == "float64" and joined.price.notna().all() and len(joined) == 3


# --- Checking an answer -----------------------------------------------------------------------------------------

class Address(BaseModel):
    city: str
    zip: str | None = None


class Company(BaseModel):
    name: str
    size: Literal["small", "large"]
    offices: list[Address]
    public: bool
    founded: int | None


COMPANY = load_spec({"roles": {"worker": {"output": Company}}, "domains": [
    {"name": "p", "coordinator": "c", "workers": [{"task": "t"}]}]}).settings("worker").output
GOOD = {"name": "Acme", "size": "small", "offices": [{"city": "Lyon", "zip": None}], "public": True, "founded": 1990}


@pytest.mark.parametrize(("change", "problem"), [
    ({}, ""),
    ({"founded": 1990.0}, ""),
    ({"founded": None}, ""),
    ({"size": "medium"}, "size: 'medium' is not one of ['small', 'large']"),
    ({"public": 1}, "public: expected a boolean, got 1"),
    ({"founded": "1990"}, "founded: '1990' fits none of the allowed shapes"),
    ({"offices": [{"city": "Lyon"}, {"zip": "1"}]}, "offices[1].city: missing"),
    ({"offices": [{"city": 7}]}, "offices[0].city: expected a string, got 7"),
    ({"ceo": "X"}, "ceo: not a field of the schema"),
], ids=["fits", "integer-as-whole-float", "optional-null", "enum", "bool-for-number", "any-of", "nested-missing",
        "nested-type", "extra-field"])
def test_an_answer_that_does_not_fit_names_the_field(change: dict[str, Any], problem: str) -> None:
    from orchestra_magic.spec.answers import InvalidAnswer, parse_answer

    assert COMPANY is not None
    text = json.dumps({**GOOD, **change})
    if not problem:
        assert parse_answer(text, COMPANY) == json.loads(text)
        return
    with pytest.raises(InvalidAnswer) as caught:
        parse_answer(text, COMPANY)
    assert str(caught.value) == f"the answer does not fit the output schema: {problem}"


@pytest.mark.parametrize("seed", range(5))
def test_the_fake_answers_a_pydantic_schema_with_json_that_fits_and_breaks_it_when_asked(seed: int) -> None:
    import random

    from orchestra_magic.fake.structured import broken, fitting_answer
    from orchestra_magic.spec.answers import InvalidAnswer, parse_answer

    assert COMPANY is not None
    answer = fitting_answer(COMPANY, random.Random(seed))
    assert parse_answer(json.dumps(answer), COMPANY) == answer
    with pytest.raises(InvalidAnswer):
        parse_answer(json.dumps(broken(answer, COMPANY, random.Random(seed))), COMPANY)
