"""Property tests: whatever text or structure arrives as a spec, it loads or raises SpecError."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestra_magic.errors import SpecError
from orchestra_magic.spec.load import load_spec
from orchestra_magic.spec.model import Spec

KEYS = ["name", "model", "concurrency", "schedule", "attempts", "timeout", "domains", "workers", "coordinator",
        "task", "id", "for_each", "as", "context", "templates", "worker", "max_tokens", "effort", "thinking", "roles",
        "x"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                    st.text(max_size=30), st.sampled_from(["{{ x }}", "{% for %}", "..", "con", "a/b", "{{ 1/0 }}"]))
trees = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)), max_leaves=25)


def loads_or_refuses(source: Any) -> None:
    try:
        spec = load_spec(source, {"x": [1, 2]})
    except SpecError as exc:
        assert str(exc).startswith("spec error")
    else:
        assert isinstance(spec, Spec)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees)
def test_any_structure_loads_or_raises_a_spec_error(tree: Any) -> None:
    loads_or_refuses({"domains": tree} if not isinstance(tree, dict) else tree)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_loads_or_raises_a_spec_error(text: str) -> None:
    loads_or_refuses(text)


@settings(max_examples=150, deadline=None)
@given(trees)
def test_any_yaml_of_a_structure_loads_or_raises_a_spec_error(tree: Any) -> None:
    loads_or_refuses(yaml.safe_dump({"domains": [{"name": "a", "coordinator": "c", "workers": tree}]}))


@pytest.mark.parametrize("name", ["..", "../escape", "/etc/passwd", "a/b", "a\\b", "nul", "CON", "com1", "x" * 65,
                                  "bad\x00name", "раздел", "ａ", "a b", "", ".hidden"])
def test_names_that_could_escape_the_run_folder_are_refused_by_the_spec(name: str) -> None:
    for spec in ({"domains": [{"name": "ok", "coordinator": "c", "workers": [{"id": name, "task": "t"}]}]},
                 {"domains": [{"name": name, "coordinator": "c", "workers": [{"task": "t"}]}]}):
        with pytest.raises(SpecError, match=r"^spec error at domains\[0\]\.(name|workers\[0\]\.id)"):
            load_spec(spec)


def one_worker(**worker: Any) -> dict[str, Any]:
    return {"domains": [{"name": "a", "coordinator": "c", "workers": [worker]}]}


ALIASED = ("big: &big " + "x" * 100_000 + "\ndomains:\n  - name: d\n    coordinator: c\n    workers:\n"
           + "      - task: *big\n" * 20_000)  # 2 MB of YAML that is 2 GB once its aliases are expanded
NESTED_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
DOUBLING_MACRO = "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}{{ f(60) }}"
HOSTILE = [  # each took seconds to minutes and gigabytes before it failed (or never finished)
    pytest.param({"name": "{{ 'a' * 10**9 }}", **one_worker(task="t")}, "name", "1,000,000,000 characters",
                 id="a-billion-characters"),
    pytest.param(ALIASED, r"domains\[0\]\.workers\[\d+\]\.task \(line \d+\)", "passes 50,000,000 characters",
                 id="a-100KB-scalar-aliased-20000-times"),
    pytest.param(one_worker(for_each="{{ [0] * 10**6 }}", task="t"), r"domains\[0\]\.workers\[0\]\.for_each",
                 "1,000,000 items", id="a-million-items-in-for_each"),
    pytest.param(one_worker(task=NESTED_LOOPS), r"domains\[0\]\.workers\[0\]\.task", "loop rounds and calls",
                 id="nested-range-loops"),
    pytest.param(one_worker(task=DOUBLING_MACRO), r"domains\[0\]\.workers\[0\]\.task", "loop rounds and calls",
                 id="a-macro-that-doubles-its-work"),
    pytest.param(one_worker(task="{{ 'a'.ljust(10**9) }}"), r"domains\[0\]\.workers\[0\]\.task",
                 "width or count of 1,000,000,000", id="a-str-method-given-a-huge-width"),
    pytest.param(one_worker(task="{{ 'a' | center(10**9) }}"), r"domains\[0\]\.workers\[0\]\.task",
                 "width or count of 1,000,000,000", id="a-filter-given-a-huge-width"),
    pytest.param(one_worker(task="{{ '%0999999999d' % 1 }}"), r"domains\[0\]\.workers\[0\]\.task",
                 "width of a million", id="a-huge-format-width"),
    pytest.param(one_worker(task="{% set s = 'a' * 10**6 %}{% set s = s ~ s %}{{ s }}"),
                 r"domains\[0\]\.workers\[0\]\.task", "2,000,000 characters", id="a-join-past-the-limit"),
    pytest.param(one_worker(task="{% for i in range(100000) %}{{ 'a' * 100 }}{% endfor %}"),
                 r"domains\[0\]\.workers\[0\]\.task", "text it renders passes", id="a-rendered-value-too-long"),
    pytest.param({"domains": [{"name": f"d{n}", "coordinator": "c",
                               "workers": [{"for_each": "{{ range(100000) }}", "task": "t"}]} for n in range(20)]},
                 r"domains\[1\]\.workers\[0\]\.for_each", "a run has at most 100,000", id="20-domains-of-100000"),
]


@pytest.mark.timeout(20)  # the refusals take well under a second (benchmarks/hostile_specs.py); hung, they'd take hours
@pytest.mark.parametrize(("source", "key", "problem"), HOSTILE)
def test_a_spec_that_would_expand_without_bound_is_refused_naming_the_key(source: Any, key: str, problem: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(source)
    message = str(caught.value)
    assert re.match(rf"spec error at {key}: ", message) and "\n" not in message, message
    assert problem in message, message


def test_templates_within_the_limits_still_render() -> None:
    task = ("{% for i in range(3) %}{{ i }}{% endfor %} {{ '{:,}'.format(10**9) }} {{ 5000000000 | filesizeformat }} "
            "{{ 'ab' * 3 }} {{ x | upper }} {{ '%05d' % 42 }} {{ 'a'.ljust(3) }}|")
    spec = load_spec({"domains": [{"name": "a", "coordinator": "c",
                                   "workers": [{"for_each": "{{ range(1000) }}", "task": task}]}]}, {"x": "hi"})
    assert spec.domains[0].workers[0].task == "012 1,000,000,000 5.0 GB ababab HI 00042 a  |"
    assert len(spec.domains[0].workers) == 1000


@pytest.mark.parametrize("expression", ["{{ ''.__class__.__mro__ }}", "{{ x.__class__.__subclasses__() }}",
                                        "{{ cycler.__init__.__globals__ }}"])
def test_spec_templates_run_sandboxed(expression: str) -> None:
    for spec in ({"name": expression, "domains": [{"name": "a", "coordinator": "c", "workers": [{"task": "t"}]}]},
                 {"domains": [{"name": "a", "coordinator": "c", "workers": [{"for_each": expression, "task": "t"}]}]}):
        with pytest.raises(SpecError):
            load_spec(spec, {"x": [1]})
