"""Reading a typed answer: parse it, check it against the role's schema, render it for people.

Why here and not in a provider: every provider's answer is checked the same way (the API's structured
outputs make a valid answer likely, not certain: a cut-off answer is not JSON, and the python provider's
functions are plain code). A problem names the field, so `agents.error` says what to fix.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any


class InvalidAnswer(ValueError):
    """The answer does not fit the schema; the message names the field."""


def parse_answer(text: str, schema: Mapping[str, Any]) -> dict[str, Any]:
    """The answer's JSON object, checked against `schema`; `InvalidAnswer` naming the field otherwise."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidAnswer(f"the answer is not JSON ({exc.msg} at character {exc.pos})") from None
    problem = _problem(value, schema, schema.get("$defs") or {}, "")
    if problem:
        raise InvalidAnswer(f"the answer does not fit the output schema: {problem}")
    return dict(value)


_TYPES: dict[str, Any] = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _fits_type(value: object, kind: str) -> bool:
    if kind == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer())
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    return isinstance(value, _TYPES[kind])


def _problem(value: Any, schema: Mapping[str, Any], defs: Mapping[str, Any], where: str) -> str:
    """The first way `value` does not fit `schema`, as "field: what is wrong", or "" when it fits."""
    while "$ref" in schema:
        schema = defs[str(schema["$ref"]).removeprefix("#/$defs/")]
    name = where or "the answer"
    if "anyOf" in schema and all(_problem(value, s, defs, where) for s in schema["anyOf"]):
        return f"{name}: {value!r} fits none of the allowed shapes"
    for sub in schema.get("allOf") or ():
        if found := _problem(value, sub, defs, where):
            return found
    if "const" in schema and value != schema["const"]:
        return f"{name}: expected {schema['const']!r}, got {value!r}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{name}: {value!r} is not one of {schema['enum']!r}"
    kind = schema.get("type")
    if isinstance(kind, str) and not _fits_type(value, kind):
        article = "an" if kind[0] in "aeio" else "a"
        return f"{name}: expected {article} {kind}, got {_shown(value)}"
    if isinstance(value, dict):
        return _object_problem(value, schema, defs, where)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            if found := _problem(item, schema["items"], defs, f"{where}[{i}]"):
                return found
    return ""


def _object_problem(value: dict[str, Any], schema: Mapping[str, Any], defs: Mapping[str, Any], where: str) -> str:
    properties = schema.get("properties") or {}
    prefix = f"{where}." if where else ""
    for field in schema.get("required") or ():
        if field not in value:
            return f"{prefix}{field}: missing"
    for field, item in value.items():
        if field not in properties:
            if schema.get("additionalProperties") is False and "properties" in schema:
                return f"{prefix}{field}: not a field of the schema"
            continue
        if found := _problem(item, properties[field], defs, f"{prefix}{field}"):
            return found
    return ""


def _shown(value: object) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


def render_answer(answer: Mapping[str, Any], summary_field: bool = False) -> str:
    """A readable Markdown rendering of a typed answer (the `.md` beside its `.json`). Short values are
    a list; long texts get a heading each. With `summary_field`, the `summary` is set in <summary> tags,
    where a coordinator's plain-text synthesis has it."""
    short, long = [], []
    for name, value in answer.items():
        if summary_field and name == "summary":
            continue
        if isinstance(value, str) and (len(value) > 80 or "\n" in value):
            long.append(f"## {name}\n\n{value.strip()}\n")
        else:
            short.append(f"- **{name}**: {_inline(value)}")
    parts = ["\n".join(short) + "\n"] if short else []
    parts += long
    if summary_field and "summary" in answer:
        parts.append(f"<summary>{answer['summary']}</summary>\n")
    return "\n".join(parts)


def _inline(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(_inline(v) for v in value) if value else "(none)"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_inline(v)}" for k, v in value.items())
    return "null" if value is None else str(value)
