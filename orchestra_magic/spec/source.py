"""Reading a spec: its YAML (with the line of every key), its Jinja2 expressions, its ``for_each`` entries.

This is the half of loading that happens before validation: it turns YAML text, a file or a dict into
plain data, expanded and unrolled, and remembers where each value came from, so that `spec.load_spec`
can name the key path and line of any problem it finds later.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined, TemplateError, Undefined, meta

from ..errors import SpecError, shown
from .sandbox import BoundedSandbox, checked

MAX_ID_LENGTH = 64
MAX_WORKERS = 100_000  # in the whole run, over all its domains
MAX_SPEC_CHARS = 50_000_000  # the text of a spec once expanded (aliases, templates and for_each)
MAX_VALUES = 1_000_000  # keys and items in a spec's YAML, aliases expanded
SAFE_ID = re.compile(r"[A-Za-z0-9_-]+")
FOR_EACH_KEYS = ("for_each", "as", "id", "task")
OUTPUT_PATH_LENGTH = 3  # ("roles", <role>, "output")

Path_ = tuple[str | int, ...]


def read_source(source: str | Path | Mapping[str, Any]) -> tuple[Any, dict[Path_, int]]:
    """A dict as it is; a `Path`, or one line naming a file that exists (whatever its suffix) or ending
    in .yaml, read from that file; any other text parsed as YAML."""
    if isinstance(source, Mapping):
        return dict(source), {}
    if not isinstance(source, str | Path):
        raise SpecError(f"a spec is YAML text, a .yaml path or a dict, not a {type(source).__name__}")
    if isinstance(source, Path) or ("\n" not in source and (
            os.path.isfile(source) or source.strip().lower().endswith((".yaml", ".yml")))):
        return _parse_yaml(_read_file(Path(source)))
    data, lines = _parse_yaml(source)
    if isinstance(data, str) and "\n" not in source and ":" not in source:  # a name, not a spec: a missing file?
        raise SpecError(f"no such file: {shown(source)} (and as YAML text it is not a spec either)")
    return data, lines


def _read_file(path: Path) -> str:
    if os.path.isdir(path):
        raise SpecError(f"{shown(str(path))} is a folder, not a spec file")
    if not os.path.isfile(path):  # False, not an error, for a name too long or with a NUL in it
        raise SpecError(f"no such file: {shown(str(path))}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SpecError(f"{shown(str(path))} is not UTF-8 text; a spec is a YAML file") from None
    except OSError as exc:
        raise SpecError(f"cannot read {shown(str(path))}: {exc.strerror or exc}") from None


def _parse_yaml(text: str) -> tuple[Any, dict[Path_, int]]:
    try:
        root, data = _load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise SpecError(f"invalid YAML: {exc.problem or exc.context}", line=line) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {exc}") from None
    lines: dict[Path_, int] = {}
    if root is not None:
        _map_lines(root, (), lines)
        if len(lines) > MAX_VALUES:  # aliases of aliases grow exponentially ("billion laughs")
            raise SpecError(f"the spec holds over {MAX_VALUES:,} values once its YAML aliases (*name) are "
                            "expanded; is an alias referring to other aliases by mistake?")
    return data, lines


def _load(text: str) -> tuple[yaml.Node | None, Any]:
    """The YAML's node tree (for the lines) and its data, from one parse. libyaml's parser (PyYAML's
    CSafeLoader) is 4x faster on a 20,000-line spec; on an error PyYAML's own parser reads the text
    again, for its clearer messages (and in case it accepts what libyaml does not)."""
    if hasattr(yaml, "CSafeLoader"):
        with suppress(yaml.YAMLError):
            return _load_with(yaml.CSafeLoader, text)
    return _load_with(yaml.SafeLoader, text)


def _load_with(loader_class: Any, text: str) -> tuple[yaml.Node | None, Any]:
    loader = loader_class(text)
    try:
        root = loader.get_single_node()
        return root, None if root is None else loader.construct_document(root)
    finally:
        loader.dispose()


def _map_lines(node: yaml.Node, path: Path_, lines: dict[Path_, int]) -> None:
    """Record the line of every key path, and refuse duplicate keys (PyYAML keeps the last silently)."""
    lines[path] = node.start_mark.line + 1
    if len(lines) > MAX_VALUES:
        return  # the caller refuses the spec; no need to walk the rest
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                where = format_path((*path, key))
                raise SpecError(f"duplicate key {key!r}", where, key_node.start_mark.line + 1)
            seen.add(key)
            _map_lines(value_node, (*path, key), lines)
            lines[(*path, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _map_lines(item, (*path, index), lines)


def format_path(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class Expander:
    """Expands Jinja2 in spec strings and unrolls ``for_each`` entries, remembering where each came from."""

    def __init__(self, variables: dict[str, Any], lines: dict[Path_, int]) -> None:
        self.variables = variables
        self.lines = lines
        self.origin: dict[Path_, Path_] = {}  # expanded worker path -> the entry it came from
        self.generated: set[Path_] = set()  # expanded worker paths whose id was generated
        self.env = BoundedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
        self.chars = 0  # of every string in the expanded spec so far: see `MAX_SPEC_CHARS`
        self.workers = 0  # in the domains unrolled so far: see `MAX_WORKERS`
        self.used: set[str] = set()  # the caller's variables the templates name (recorded for a resume)
        self._read: set[str] = set()  # template texts whose names are in `used` already

    def error(self, message: str, path: Path_) -> SpecError:
        source = self.origin.get(path[:4], path[:4]) + path[4:]
        line = next((self.lines[source[:n]] for n in range(len(source), -1, -1) if source[:n] in self.lines), None)
        return SpecError(message, format_path(path if path[:4] not in self.origin else source), line)

    def expand(self, data: Any) -> Any:
        if data is None:
            raise SpecError("the spec is empty; it needs at least a `domains:` list")
        if not isinstance(data, dict):
            raise SpecError(f"the spec must be a mapping with a `domains:` key, not a {type(data).__name__}")
        out = self.render_tree(data, (), self.variables)
        domains = out.get("domains")
        if isinstance(domains, list):
            for index, domain in enumerate(domains):
                if isinstance(domain, dict) and isinstance(domain.get("workers"), list):
                    domain["workers"] = self.unroll(domain, ("domains", index))
        return out

    def render_tree(self, value: Any, path: Path_, variables: Mapping[str, Any]) -> Any:
        if _names_a_model(value, path, variables):
            return variables[value.strip()]  # `output: Price`: the pydantic model of that name (the notebook's)
        if isinstance(value, str):
            return self.count(self.render(value, path, variables), path)
        if isinstance(value, dict):
            return {k: self.render_tree(v, (*path, k), variables) for k, v in value.items()}
        if isinstance(value, list):
            return [v if _is_for_each(v) else self.render_tree(v, (*path, i), variables) for i, v in enumerate(value)]
        return value

    def count(self, text: str, path: Path_) -> str:
        """`text`, counted against `MAX_SPEC_CHARS`: a 100 KB scalar behind 20,000 YAML aliases is one
        string in memory but 2 GB in spec.yaml."""
        self.chars += len(text)
        if self.chars > MAX_SPEC_CHARS:
            raise self.error(f"the spec passes {MAX_SPEC_CHARS:,} characters once expanded (YAML aliases, "
                             "templates and for_each included)", path)
        return text

    def render(self, text: str, path: Path_, variables: Mapping[str, Any]) -> str:
        if "{{" not in text and "{%" not in text:
            return text
        try:
            self._note_names(text)
            return self.env.render_text(text, variables)
        except Exception as exc:  # an expression may raise anything (1/0, a variable's own bug)
            raise self.error(f"template problem: {_describe_exception(exc)}", path) from None

    def _note_names(self, text: str) -> None:
        """Remember which of the caller's variables `text` names (once per distinct text: a `for_each`
        task is one text for all its items). A syntax error is left for the render to report."""
        if text in self._read:
            return
        self._read.add(text)
        try:
            names = meta.find_undeclared_variables(self.env.parse(text))
        except TemplateError:
            return
        self.used |= names & self.variables.keys()

    def unroll(self, domain: dict[str, Any], path: Path_) -> list[Any]:
        """Turn ``for_each`` entries into plain workers and give unnamed workers ``<domain>-<n>`` ids."""
        workers: list[Any] = []
        origin: dict[Path_, Path_] = {}  # kept apart until the end: errors raised here name source paths
        name = domain.get("name")
        prefix = name if isinstance(name, str) and SAFE_ID.fullmatch(name) else "worker"
        for index, entry in enumerate(domain["workers"]):
            entry_path = (*path, "workers", index)
            produced = self.for_each(entry, entry_path) if _is_for_each(entry) else [entry]
            for worker in produced:
                new_path = (*path, "workers", len(workers))
                origin[new_path] = entry_path
                if isinstance(worker, dict) and worker.get("id") is None:
                    suffix = f"-{len(workers) + 1}"  # a long domain name is cut so the id stays within the limit
                    worker = {"id": prefix[: MAX_ID_LENGTH - len(suffix)] + suffix, **worker}
                    self.generated.add(new_path)
                workers.append(worker)
                self.workers += 1
                if self.workers > MAX_WORKERS:
                    raise self.error(f"more than {MAX_WORKERS:,} workers in the run", entry_path)
        self.origin.update(origin)
        return workers

    def for_each(self, entry: dict[str, Any], path: Path_) -> list[dict[str, Any]]:
        for key in entry:
            if key not in FOR_EACH_KEYS:
                raise self.error(unknown_key(key, FOR_EACH_KEYS), (*path, key))
        if "task" not in entry:
            raise self.error("a for_each entry needs a `task:` template", path)
        name = entry.get("as", "item")
        if not isinstance(name, str) or not name.isidentifier():
            raise self.error(f"`as:` must be a variable name, got {name!r}", (*path, "as"))
        keys, items = self.items(entry["for_each"], (*path, "for_each"))
        if self.workers + len(items) > MAX_WORKERS:  # refused before a task is rendered for any of them
            raise self.error(f"for_each makes {len(items):,} workers; a run has at most {MAX_WORKERS:,}",
                             (*path, "for_each"))
        out = []
        for row_key, item in zip(keys, items, strict=True):
            variables = {"key": row_key, **self.variables, name: item}  # the caller's own `key` variable wins
            worker: dict[str, Any] = {"task": self.render_tree(entry["task"], (*path, "task"), variables),
                                      "key": row_key}
            if entry.get("id") is not None:
                worker["id"] = self.render_tree(entry["id"], (*path, "id"), variables)
            out.append(worker)
        return out

    def items(self, value: Any, path: Path_) -> tuple[list[RowKey], list[Any]]:
        """The items of a `for_each` and the key of each: a DataFrame's rows (as mappings of their
        fields) keyed by its index, or a sequence's items keyed by position."""
        if isinstance(value, str):
            value = self.evaluate(value, path)
        if is_dataframe(value):
            keys, items = dataframe_rows(value)
        elif hasattr(value, "columns"):  # another table (polars, arrow): iterating it would give its columns
            items = _table_rows(value, lambda message: self.error(message, path))
            keys = list(range(len(items)))
        else:
            if isinstance(value, str | bytes | Mapping) or not isinstance(value, Iterable):
                raise self.error(f"for_each needs a list of items (or a DataFrame), got {_what(value)}", path)
            try:
                items = list(value)
            except Exception as exc:
                raise self.error(f"cannot list the items: {_describe_exception(exc)}", path) from None
            keys = list(range(len(items)))
        if not items:
            raise self.error("for_each produced no items", path)
        return keys, items

    def evaluate(self, text: str, path: Path_) -> Any:
        expression = text.strip().removeprefix("{{").removesuffix("}}").strip()
        self._note_names(f"{{{{ {expression} }}}}")
        try:
            # The variables go in as one dict: as keywords, a variable named `self` would clash.
            value = checked(self.env.compile_expression(expression, undefined_to_none=False)(self.variables))
            if isinstance(value, Undefined):
                str(value)  # StrictUndefined raises here, naming the missing variable
        except Exception as exc:
            raise self.error(f"cannot evaluate {expression!r}: {_describe_exception(exc)}", path) from None
        return value


RowKey = int | float | str | bool


def is_dataframe(value: object) -> bool:
    """A pandas DataFrame, told by its shape rather than by importing pandas (which loading a spec must
    not need): iterating one gives its column names, so it must be read as rows instead."""
    return all(hasattr(value, name) for name in ("columns", "index", "to_dict", "iterrows"))


def dataframe_rows(frame: Any) -> tuple[list[RowKey], list[dict[str, Any]]]:
    """Each row as a mapping of its fields (plain Python values), and its index label as the key. A label
    that is not a plain scalar (a timestamp, a tuple of a MultiIndex) becomes its text."""
    rows = [{str(k): v for k, v in row.items()} for row in frame.to_dict(orient="records")]
    keys = [_plain_key(label) for label in frame.index.tolist()]
    return keys, rows


def _table_rows(table: Any, error: Callable[[str], SpecError]) -> list[Any]:
    """The rows of a table other than a pandas DataFrame, keyed by position: polars' `to_dicts()`, or
    refused (iterating a table gives its columns, not its rows)."""
    if callable(getattr(table, "to_dicts", None)):
        return list(table.to_dicts())
    raise error(f"for_each got a {type(table).__name__}, a table whose iteration gives its columns; pass a "
                "pandas DataFrame or a list of row mappings")


def _plain_key(label: Any) -> RowKey:
    return label if isinstance(label, int | float | str | bool) else str(label)


def _what(value: Any) -> str:
    """What a refused `for_each` was given, in words, with what iterating it would have produced."""
    if value is None:
        return "nothing"
    if isinstance(value, Mapping):
        return f"a {type(value).__name__} (iterating it gives its {len(value)} keys; pass a list of its values)"
    if isinstance(value, str | bytes):
        return f"a {type(value).__name__} of {len(value)} characters (iterating it gives the characters)"
    return type(value).__name__


def _describe_exception(exc: Exception) -> str:
    if isinstance(exc, TemplateError):
        return exc.message or type(exc).__name__
    return f"{type(exc).__name__}: {exc}"


def _names_a_model(value: Any, path: Path_, variables: Mapping[str, Any]) -> bool:
    return (isinstance(value, str) and len(path) == OUTPUT_PATH_LENGTH and path[0] == "roles"
            and path[-1] == "output" and value.strip() in variables and isinstance(variables[value.strip()], type))


def _is_for_each(value: Any) -> bool:
    return isinstance(value, dict) and "for_each" in value


def unknown_key(key: object, known: Iterable[str]) -> str:
    # Swapped letters ('modle') are the commonest typo; difflib alone would offer 'mode' for it.
    close = [k for k in known if sorted(k) == sorted(str(key))]
    close = close or difflib.get_close_matches(str(key), list(known), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
    return f"unknown key {key!r}{hint}"
