"""Property tests: whatever text or structure arrives as a spec, it loads or raises SpecError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestra_magic.errors import SpecError
from orchestra_magic.spec.model import Spec, load_spec

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
def test_names_that_could_escape_the_run_folder_are_refused(name: str, tmp_path: Path) -> None:
    spec = {"domains": [{"name": "ok", "coordinator": "c", "workers": [{"id": name, "task": "t"}]}]}
    with pytest.raises(SpecError):
        load_spec(spec)
    with pytest.raises(SpecError):
        load_spec({"domains": [{"name": name, "coordinator": "c", "workers": [{"task": "t"}]}]})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("expression", ["{{ ''.__class__.__mro__ }}", "{{ x.__class__.__subclasses__() }}",
                                        "{{ cycler.__init__.__globals__ }}"])
def test_spec_templates_run_sandboxed(expression: str) -> None:
    for spec in ({"name": expression, "domains": [{"name": "a", "coordinator": "c", "workers": [{"task": "t"}]}]},
                 {"domains": [{"name": "a", "coordinator": "c", "workers": [{"for_each": expression, "task": "t"}]}]}):
        with pytest.raises(SpecError):
            load_spec(spec, {"x": [1]})
