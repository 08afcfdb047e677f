"""Loading a spec: read and expand it (`source`), validate it into the models (`model`), then the
checks that need the whole spec (unique names, the API's rules for thinking, a budget's prices, tools
with batches). Every problem is one `SpecError` naming the key path and, for YAML, its line; a
validation error is told in the user's words (a typo's "did you mean", a list where a mapping was due).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import SpecError
from ..pricing import price_of
from ..runfolder.layout import RUN_DOMAIN
from .model import ROLES, Domain, ReaderSettings, Roles, RoleSettings, Spec, Templates, Worker
from .source import Expander, Path_, format_path, read_source, unknown_key

_FIELDS: dict[str, type[BaseModel]] = {"": Spec, "domains": Domain, "workers": Worker, "templates": Templates,
                                    "roles": Roles, "worker": RoleSettings, "coordinator": ReaderSettings,
                                    "subcoordinator": ReaderSettings}


def load_spec(source: str | Path | Mapping[str, Any] | Spec, variables: Mapping[str, Any] | None = None) -> Spec:
    """Load and validate a spec from YAML text, a ``.yaml`` path, a dict, or an already loaded `Spec`."""
    return load_spec_and_names(source, variables)[0]


def load_spec_and_names(source: str | Path | Mapping[str, Any] | Spec,
                        variables: Mapping[str, Any] | None = None) -> tuple[Spec, frozenset[str]]:
    """`load_spec`, and which of `variables` its templates named (what a run folder records for a resume)."""
    if isinstance(source, Spec):
        return source, frozenset()
    try:
        data, lines = read_source(source)
        expander = Expander(dict(variables or {}), lines)
        expanded = expander.expand(data)
        spec = _validate(expanded, expander)
    except RecursionError:  # `a: &a [*a]`, or thousands of nested lists
        raise SpecError("the spec is nested too deeply, or a YAML alias refers to itself") from None
    _check_unique(spec, expander)
    _check_thinking(spec, expander)
    _check_budget(spec, expander)
    _check_batch_tools(spec, expander)
    return spec, frozenset(expander.used)


def _validate(data: dict[str, Any], expander: Expander) -> Spec:
    try:
        return Spec.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    errors = sorted(errors, key=lambda e: e["type"] != "extra_forbidden")  # a typo explains what follows
    errors = [e for e in errors if not _explained_by_typo(e, errors)]
    # An empty-after-validation list is only an echo of its items' own errors: keep the root causes.
    locs = [tuple(e["loc"]) for e in errors]
    problems = [
        (_describe(e), loc)
        for e, loc in zip(errors, locs, strict=True)
        if e["type"] != "too_short" or not any(o[: len(loc)] == loc and o != loc for o in locs)
    ]
    first = expander.error(problems[0][0], problems[0][1])
    if len(problems) > 1:
        also = (str(expander.error(m, p)).removeprefix("spec error at ") for m, p in problems[1:10])
        more = "\n".join(f"  also: {line}" for line in also)
        raise SpecError(f"{first.problem}\n{more}", first.path, first.line)
    raise first


def _explained_by_typo(err: Any, errors: list[Any]) -> bool:
    """A missing key that an unknown key beside it was surely meant as ('coordinatr' for 'coordinator'):
    the typo is the one problem, reported once."""
    if err["type"] != "missing":
        return False
    loc = tuple(err["loc"])
    return any(e["type"] == "extra_forbidden" and tuple(e["loc"][:-1]) == loc[:-1]
               and f"did you mean {loc[-1]!r}" in _describe(e) for e in errors)


def _describe(err: Any) -> str:
    loc = err["loc"]
    if err["type"] == "extra_forbidden":
        model = _FIELDS.get(next((str(p) for p in reversed(loc[:-1]) if isinstance(p, str)), ""), Spec)
        return unknown_key(loc[-1], model.model_fields)
    if err["type"] == "missing":
        return f"missing required key {loc[-1]!r}"
    if err["type"] == "too_short":
        return "needs at least one entry"
    if err["type"] in ("tuple_type", "model_type"):
        shape = "a list (one '- ' entry per item)" if err["type"] == "tuple_type" else "a mapping of `key: value`"
        value = err.get("input")
        got = "nothing" if value is None else "a list" if isinstance(value, list) else repr(value)
        return f"should be {shape}, got {got}"
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "value_error" or isinstance(err.get("input"), dict | list):
        return message
    return f"{message} (got {err['input']!r})"


def _check_thinking(spec: Spec, expander: Expander) -> None:
    """The API's own rules for extended thinking, checked before anything is paid for."""
    for role in ROLES:
        settings = spec.settings(role)
        if not isinstance(settings.thinking, int):
            continue
        where = spec.key_of(role, "thinking")
        if settings.max_tokens <= settings.thinking:
            raise expander.error(f"{role}s' max_tokens ({settings.max_tokens}) must be larger than their "
                                 f"thinking budget ({settings.thinking})", where)


def _check_batch_tools(spec: Spec, expander: Expander) -> None:
    """A tool loop takes a round trip per turn, and a batch round can take hours: refuse the pair rather
    than quietly sending those agents (at full price) through the Messages API."""
    for role in ROLES:
        settings = spec.settings(role)
        if settings.mode == "batch" and settings.tools:
            where = spec.key_of(role, "mode")
            raise expander.error(f"the {role}s have tools, and agents with tools cannot use mode: batch (each tool "
                                 f"turn would wait for a batch round); set roles.{role}.mode: messages", where)


def _check_budget(spec: Spec, expander: Expander) -> None:
    """A budget is only as good as the prices behind it: refuse one that could never be counted."""
    if spec.budget_usd is None:
        return
    for role in ROLES:
        model = spec.settings(role).model
        if price_of(model) is None:
            raise expander.error(f"budget_usd needs a price for the {role}s' model {model!r}, and the price "
                                 "table (orchestra_magic/pricing.py) has none; add it there", ("budget_usd",))


def _check_unique(spec: Spec, expander: Expander) -> None:
    # Names and ids become file names, and macOS and Windows do not tell 'A.md' from 'a.md'.
    seen_domains: dict[str, tuple[str, int]] = {}
    seen_workers: dict[str, tuple[str, str, Path_]] = {}
    for d_index, domain in enumerate(spec.domains):
        if domain.name.lower() == RUN_DOMAIN:
            raise expander.error(f"the domain name {RUN_DOMAIN!r} is reserved for the run-level coordinator "
                                 "(the top-level `coordinator:`); choose another", ("domains", d_index, "name"))
        if domain.name.lower() in seen_domains:
            other, o_index = seen_domains[domain.name.lower()]
            clash = "is used twice" if other == domain.name else f"differs only in case from {other!r}"
            raise expander.error(f"domain name {domain.name!r} {clash} (also domains[{o_index}])",
                                 ("domains", d_index, "name"))
        seen_domains[domain.name.lower()] = (domain.name, d_index)
        for w_index, worker in enumerate(domain.workers):
            path: Path_ = ("domains", d_index, "workers", w_index)
            if worker.id.lower() in seen_workers:
                other, o_domain, o_path = seen_workers[worker.id.lower()]
                clash = "is used twice" if other == worker.id else f"differs only in case from {other!r}"
                if path in expander.generated or o_path in expander.generated:
                    raise _generated_clash(expander, worker.id, path, o_path)
                raise expander.error(
                    f"worker id {worker.id!r} {clash} (also in domain {o_domain!r}); ids must be unique within the run",
                    (*path, "id"),
                )
            seen_workers[worker.id.lower()] = (worker.id, domain.name, path)


def _generated_clash(expander: Expander, worker_id: str, path: Path_, other: Path_) -> SpecError:
    """Two workers share an id and one of them never wrote it: name the one the user can see."""
    if path in expander.generated:
        return expander.error(f"this worker has no `id:`, so it is named {worker_id!r} (<domain>-<position>), "
                              f"which {format_path(other)} also uses; give one of them another id", path)
    return expander.error(f"worker id {worker_id!r} is also the name of the worker without an `id:` at "
                          f"{format_path(other)} (<domain>-<position>); give one of them another id", (*path, "id"))
