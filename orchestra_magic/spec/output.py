"""The shape of a role's answer (`roles.<role>.output`): a field map, a JSON Schema or a pydantic model,
all made into one JSON Schema that the API's structured outputs accept.

Why one form: the schema is what the provider sends (`output_config.format`), what the answer is
checked against, what goes into the agent's input hash and into `spec.yaml`, and what gives
`run.results` its column types. A pydantic model is used for its schema; its own validators do not run.

The API compiles a schema into a grammar and accepts only part of JSON Schema. What it cannot honour
is refused here, before anything runs, rather than sent and answered with a 400 (or, as the SDK does,
moved into a description the model may ignore): see `REFUSED`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

FIELD_TYPES = {"string": "string", "str": "string", "number": "number", "float": "number", "integer": "integer",
               "int": "integer", "boolean": "boolean", "bool": "boolean"}
JSON_TYPES = ("object", "array", "string", "number", "integer", "boolean", "null")
KEYWORDS = frozenset({"type", "properties", "required", "additionalProperties", "items", "enum", "const", "anyOf",
                      "allOf", "$ref", "$defs", "description", "title", "default", "format", "minItems", "pattern",
                      "$schema", "examples"})
# What the API's structured outputs refuse (its documentation's list of JSON Schema limitations), and why.
REFUSED = {
    **dict.fromkeys(("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"),
                    "numeric bounds are not supported"),
    **dict.fromkeys(("minLength", "maxLength"), "string length bounds are not supported"),
    **dict.fromkeys(("maxItems", "uniqueItems", "contains", "prefixItems"), "array bounds are not supported"),
    **dict.fromkeys(("minProperties", "maxProperties", "patternProperties", "propertyNames", "dependentRequired",
                     "dependentSchemas"), "object constraints other than properties/required are not supported"),
    **dict.fromkeys(("not", "if", "then", "else"), "conditional schemas are not supported"),
    "oneOf": "oneOf is not supported; use anyOf",
}
STRING_FORMATS = frozenset({"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6",
                            "uuid"})


def output_schema(value: object) -> dict[str, Any]:
    """The JSON Schema for an `output:` value; a `ValueError` naming the problem and where otherwise."""
    if isinstance(value, type) and issubclass(value, BaseModel):
        schema = value.model_json_schema()
    elif isinstance(value, Mapping) and _is_json_schema(value):
        schema = copy.deepcopy(dict(value))
    elif isinstance(value, Mapping):
        schema = _field_map(value, "")
    elif isinstance(value, str):
        raise ValueError(f"{value!r} names no pydantic model among the variables; `output` takes a field map "
                         "({price: number, ...}), a JSON Schema, or a pydantic model class (defined before the spec)")
    else:
        raise ValueError(f"`output` takes a field map, a JSON Schema or a pydantic model class, "
                         f"not a {type(value).__name__}")
    schema.pop("$schema", None)
    _check(schema, schema.get("$defs") or {}, "", ())
    if _resolve(schema, schema.get("$defs") or {}).get("type") != "object":
        raise ValueError("the answer must be an object (its fields become columns): give `type: object`")
    return schema


def _is_json_schema(value: Mapping[str, Any]) -> bool:
    return value.get("type") == "object" or any(k in value for k in ("properties", "$ref", "$schema", "$defs"))


def _field_map(fields: Mapping[str, Any], where: str) -> dict[str, Any]:
    properties = {str(name): _field(kind, f"{where}{name}") for name, kind in fields.items()}
    if not properties:
        raise ValueError(f"{where or 'the field map'} has no fields")
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


def _field(kind: Any, where: str) -> dict[str, Any]:
    if isinstance(kind, str) and kind.strip().lower() in FIELD_TYPES:
        return {"type": FIELD_TYPES[kind.strip().lower()]}
    if isinstance(kind, list) and len(kind) == 1:
        return {"type": "array", "items": _field(kind[0], f"{where}[]")}
    if isinstance(kind, Mapping):
        return _field_map(kind, f"{where}.")
    known = ", ".join(sorted(set(FIELD_TYPES.values())))
    raise ValueError(f"field {where!r} has the unknown type {kind!r}; use one of {known}, [type] for a list, "
                     "or a mapping of fields")


def _check(schema: Any, defs: Mapping[str, Any], where: str, seen: tuple[str, ...]) -> None:
    """Refuse what the API cannot honour; give every object `additionalProperties: false` (the API needs it)."""
    at = f" (at {where})" if where else ""
    if not isinstance(schema, dict):
        raise ValueError(f"a schema must be a mapping, got {schema!r}{at}")
    for key in schema:
        if key in REFUSED:
            raise ValueError(f"{key!r}: {REFUSED[key]} by the API's structured outputs{at}")
        if key not in KEYWORDS:
            raise ValueError(f"{key!r} is not a JSON Schema keyword the API's structured outputs support{at}")
    _check_keywords(schema, where, at)
    if "$ref" in schema:
        name = _ref_name(schema["$ref"], defs, at)
        if name in seen:
            raise ValueError(f"recursive schemas are not supported ({name} refers to itself){at}")
        _check(defs[name], defs, f"$defs.{name}", (*seen, name))
    for name, sub in (schema.get("$defs") or {}).items() if not where else ():
        _check(sub, defs, f"$defs.{name}", (name,))
    for name, sub in (schema.get("properties") or {}).items():
        _check(sub, defs, f"{where}.{name}".lstrip("."), seen)
    if "items" in schema:
        _check(schema["items"], defs, f"{where}[]", seen)
    for key in ("anyOf", "allOf"):
        for i, sub in enumerate(schema.get(key) or ()):
            _check(sub, defs, f"{where}.{key}[{i}]".lstrip("."), seen)


def _check_keywords(schema: dict[str, Any], where: str, at: str) -> None:
    kind = schema.get("type")
    if isinstance(kind, list):
        raise ValueError(f"a list of types is not supported; use anyOf with one schema per type{at}")
    if kind is not None and kind not in JSON_TYPES:
        raise ValueError(f"unknown type {kind!r}; use one of {', '.join(JSON_TYPES)}{at}")
    if kind == "object" or "properties" in schema:
        if schema.get("additionalProperties", False) is not False:
            raise ValueError(f"additionalProperties must be false for the API's structured outputs{at}")
        schema["additionalProperties"] = False
    if schema.get("minItems", 0) not in (0, 1):
        raise ValueError(f"minItems above 1 is not supported by the API's structured outputs{at}")
    if "format" in schema and schema["format"] not in STRING_FORMATS:
        raise ValueError(f"string format {schema['format']!r} is not supported; the API supports "
                         f"{', '.join(sorted(STRING_FORMATS))}{at}")


def _ref_name(ref: object, defs: Mapping[str, Any], at: str) -> str:
    if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
        raise ValueError(f"only local references (#/$defs/<name>) are supported, got {ref!r}{at}")
    name = ref.removeprefix("#/$defs/")
    if name not in defs:
        raise ValueError(f"{ref!r} refers to no entry of $defs{at}")
    return name


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        schema = defs[str(schema["$ref"]).removeprefix("#/$defs/")]
    return schema


def fields(schema: Mapping[str, Any]) -> dict[str, str]:
    """The answer's top-level fields and the pandas dtype of each (`run.results`' columns)."""
    defs = schema.get("$defs") or {}
    root = _resolve(schema, defs)
    return {name: _dtype(_resolve(sub, defs), defs) for name, sub in (root.get("properties") or {}).items()}


_DTYPES = {"number": "float64", "integer": "Int64", "boolean": "boolean", "string": "str"}


def _dtype(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> str:
    """Numbers as float64, integers and booleans as nullable types (a failed worker's row is missing)."""
    options = [_resolve(s, defs) for s in schema.get("anyOf") or ()]
    options = [s for s in options if s.get("type") != "null"]
    if len(options) == 1:
        return _dtype(options[0], defs)
    values = schema.get("enum") or ([schema["const"]] if "const" in schema else [])
    if values and all(isinstance(v, str) for v in values):
        return "str"
    return _DTYPES.get(str(schema.get("type")), "object")
