"""Structured outputs at the fake: a request with `output_config.format` gets JSON that fits its schema.

The same request gets the same answer (seeded by the request), every string in it starts with
`[simulated]`, and numbers are plausible figures. For tests of what happens when an answer does not fit
(a model cut off, a grammar bug), the server can break a seeded share of answers (`invalid_rate`): one
required field is then dropped or given a value of the wrong type, as a real bad answer would.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from .text import sentence
from .tools import SIMULATED_MARK

MAX_DEPTH = 8  # a schema nested deeper than this gets empty objects and lists below it
_SHARES = frozenset({"confidence", "probability", "share", "ratio", "score", "likelihood"})


def requested_schema(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """The JSON Schema a request asks its answer to fit, or None; `ValueError` for a malformed format
    (which the server answers with a 400)."""
    config = body.get("output_config")
    if config is None or not isinstance(config, dict) or config.get("format") is None:
        return None
    fmt = config["format"]
    if not isinstance(fmt, dict) or fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        raise ValueError("output_config.format: expected {\"type\": \"json_schema\", \"schema\": {...}}")
    schema: dict[str, Any] = fmt["schema"]
    if schema.get("type") == "object" and schema.get("additionalProperties", False) is not False:
        raise ValueError("output_config.format.schema: additionalProperties must be false for objects")
    return schema


def fitting_answer(schema: Mapping[str, Any], rng: random.Random) -> Any:
    """A value that fits `schema` (the subset the API supports)."""
    return _value(schema, schema.get("$defs") or {}, rng, "", 0)


def _value(schema: Mapping[str, Any], defs: Mapping[str, Any], rng: random.Random, name: str, depth: int) -> Any:
    while "$ref" in schema:
        schema = defs[str(schema["$ref"]).removeprefix("#/$defs/")]
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return rng.choice(list(schema["enum"]))
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"] or schema["anyOf"]
        return _value(options[0], defs, rng, name, depth)
    if schema.get("allOf"):
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            value = _value(part, defs, rng, name, depth)
            merged.update(value if isinstance(value, dict) else {})
        return merged
    return _typed(schema, defs, rng, name, depth)


def _typed(schema: Mapping[str, Any], defs: Mapping[str, Any], rng: random.Random, name: str, depth: int) -> Any:
    kind = schema.get("type", "object")
    if kind == "object":
        properties = schema.get("properties") or {} if depth < MAX_DEPTH else {}
        return {key: _value(sub, defs, rng, key, depth + 1) for key, sub in properties.items()}
    if kind == "array":
        count = rng.randint(1, 3) if depth < MAX_DEPTH else 0
        return [_value(schema.get("items") or {"type": "string"}, defs, rng, name, depth + 1) for _ in range(count)]
    if kind == "number":  # a share for names that say so, else a plausible figure
        return round(rng.random(), 2) if name in _SHARES else round(rng.uniform(1, 500), 2)
    if kind == "integer":
        return rng.randint(1, 100)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    return _string(schema, rng, name)


def _string(schema: Mapping[str, Any], rng: random.Random, name: str) -> str:
    formats = {"date": "2026-01-15", "date-time": "2026-01-15T12:00:00Z", "time": "12:00:00", "email":
               "simulated@example.com", "uri": "https://example.com/simulated", "uuid":
               "00000000-0000-4000-8000-000000000000", "hostname": "example.com", "ipv4": "192.0.2.1",
               "ipv6": "2001:db8::1", "duration": "P1D"}
    if schema.get("format") in formats:
        return formats[schema["format"]]
    if name == "summary":
        return f"{SIMULATED_MARK} {sentence(rng)} {sentence(rng)}"
    return f"{SIMULATED_MARK} {sentence(rng)}" if name in ("notes", "reason", "rationale") else \
        f"{SIMULATED_MARK} {name or 'value'} {rng.randint(1, 999)}"


def broken(answer: Any, schema: Mapping[str, Any], rng: random.Random) -> Any:
    """`answer` made not to fit: a required field dropped, or a number field given text."""
    defs = schema.get("$defs") or {}
    while "$ref" in schema:
        schema = defs[str(schema["$ref"]).removeprefix("#/$defs/")]
    required = [f for f in schema.get("required") or () if isinstance(answer, dict) and f in answer]
    if not required:
        return "not the object the schema asks for"
    field = rng.choice(required)
    out = dict(answer)
    if isinstance(out[field], int | float) and not isinstance(out[field], bool):
        out[field] = "n/a"
    else:
        del out[field]
    return out
