"""Tools agents may call, resolved once before a run starts.

    web_search, web_fetch, code_execution   server tools: the API runs them; their blocks pass through
    read_file, write_file, list_files       built in: read the run folder, write only the agent's own
                                            workspace folder inside it (see `filetools`)
    any other name                          a Python function: from `tools=`, else from the variables
                                            (in a notebook: your namespace)

`resolve_tools` turns the spec's names into `PythonTool`s (schema from the function's type hints and
docstring, by the anthropic SDK's own helper) before the run folder exists, so an unknown name or an
unusable function is a `ConfigError` naming the tool and the role, never a failure halfway through.
While a tool runs, `workspace()` gives it its agent's own folder inside the run folder.
"""

from __future__ import annotations

import difflib
import importlib.util
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..state.events import ROLES
from ..threads import in_thread

if TYPE_CHECKING:
    from ..spec.model import Spec

ToolFunction = Callable[..., Any]
ToolsArg = Sequence[ToolFunction] | Mapping[str, ToolFunction]

# The newest versions the installed SDK (anthropic 2.14) lists in its non-beta `ToolUnionParam`: all
# three are generally available, so no `anthropic-beta` header is needed. A name with a date
# (`web_search_20250305`) asks for that version instead, for models that lack the newest.
SERVER_TOOLS = {"web_search": "web_search_20260318", "web_fetch": "web_fetch_20260318",
                "code_execution": "code_execution_20260521"}
FILE_TOOLS = ("read_file", "write_file", "list_files")
_VERSIONED = re.compile(r"(web_search|web_fetch|code_execution)_(\d{8})")
_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def server_tool(name: str) -> dict[str, str] | None:
    """The API's definition of a server tool (`{"type": ..., "name": ...}`), or None for other names."""
    if name in SERVER_TOOLS:
        return {"type": SERVER_TOOLS[name], "name": name}
    versioned = _VERSIONED.fullmatch(name)
    return {"type": name, "name": versioned.group(1)} if versioned else None


@dataclass(frozen=True, slots=True)
class PythonTool:
    """A Python function offered to agents: what the model sees (`definition`) and what runs when
    it calls (`call`). Arguments are checked and coerced against the type hints before the call."""

    name: str
    description: str
    input_schema: Mapping[str, Any]
    function: ToolFunction  # wrapped by pydantic's validate_call

    def definition(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": dict(self.input_schema)}

    async def call(self, arguments: Mapping[str, Any]) -> Any:
        """Async functions are awaited; sync ones run in a thread (with this context, so `workspace()`
        works there) so one slow tool never stalls the other agents."""
        if inspect.iscoroutinefunction(self.function):
            return await self.function(**arguments)
        result = await in_thread(self.function, **arguments)
        return await result if inspect.isawaitable(result) else result


def python_tool(name: str, function: ToolFunction) -> PythonTool:
    """Describe `function` as tool `name`. The schema comes from the SDK's `beta_tool` helper (the
    one its own tool runner uses): pydantic reads the type hints, docstring_parser the `Args:`."""
    import pydantic
    from anthropic.lib.tools import beta_async_tool, beta_tool

    try:
        make = beta_async_tool if inspect.iscoroutinefunction(function) else beta_tool
        described = make(function, name=name)
        return PythonTool(name, described.description, described.input_schema, pydantic.validate_call(function))
    except Exception as exc:
        raise ConfigError(f"cannot offer {getattr(function, '__qualname__', function)!r} as the tool {name!r}: "
                          f"{exc}. A tool is a plain function (def or async def) with type hints") from None


def resolve_tools(spec: Spec, supplied: ToolsArg | None = None,
                  variables: Mapping[str, Any] | None = None) -> dict[str, PythonTool]:
    """The Python tools (yours and the built-in file tools) the spec's roles name, each described
    once. Server tools need nothing here: the provider sends their definitions as they are."""
    given = _by_name(supplied)
    named = {name for role in ROLES for name in spec.settings(role).tools}
    if given and not named:
        raise ConfigError(f"you passed tools ({', '.join(given)}) but the spec names none: add "
                          "`tools: [...]` to the spec (every agent) or to roles.worker / roles.coordinator")
    resolved: dict[str, PythonTool] = {}
    for role in ROLES:
        where = ".".join(spec.key_of(role, "tools"))
        names = spec.settings(role).tools
        _check_names(names, where, role)
        for name in names:
            if server_tool(name) is None and name not in resolved:
                resolved[name] = python_tool(name, _find(name, where, role, given, variables or {}))
    return resolved


def _by_name(supplied: ToolsArg | None) -> dict[str, ToolFunction]:
    if supplied is None:
        return {}
    pairs = list(supplied.items()) if isinstance(supplied, Mapping) else [
        (getattr(f, "__name__", ""), f) for f in supplied]
    for name, function in pairs:
        if not callable(function):
            raise ConfigError(f"tools: {name or function!r} is not a function")
        if not _TOOL_NAME.fullmatch(name):
            raise ConfigError(f"tools: {function!r} has no usable name ({name!r}); pass it in a mapping, "
                              "e.g. tools={'lookup': fn}, with a name of letters, digits, _ and -")
        if name in FILE_TOOLS or server_tool(name):
            raise ConfigError(f"tools: {name!r} is the name of a built-in tool; pass your function under "
                              f"another name, e.g. tools={{'my_{name}': fn}}")
    return dict(pairs)


def _check_names(names: Sequence[str], where: str, role: str) -> None:
    sent: dict[str, str] = {}
    for name in names:
        if not _TOOL_NAME.fullmatch(name):
            raise ConfigError(f"{where}: {name!r} (for the {role}s) is not a tool name: use letters, digits, "
                              "_ and -, at most 64")
        api_name = (server_tool(name) or {}).get("name", name)
        if api_name in sent:
            raise ConfigError(f"{where}: {sent[api_name]!r} and {name!r} are the same tool for the {role}s; keep one")
        sent[api_name] = name


def _find(name: str, where: str, role: str, given: Mapping[str, ToolFunction],
          variables: Mapping[str, Any]) -> ToolFunction:
    if name in FILE_TOOLS:
        from . import files as filetools

        function: ToolFunction = getattr(filetools, name)
        return function
    found = given.get(name, variables.get(name))
    if callable(found):
        return found
    known = [*given, *SERVER_TOOLS, *FILE_TOOLS, *(k for k, v in variables.items() if callable(v))]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"{where}: unknown tool {name!r} for the {role}s.{hint} It is not a server tool "
        f"({', '.join(SERVER_TOOLS)}) or a built-in one ({', '.join(FILE_TOOLS)}), so it must be a Python "
        f"function: pass it with tools=[{name}] (Python), --tools FILE.py (command line), or define it "
        "in the notebook (%%orchestrate)")


def load_tools_file(path: str) -> dict[str, ToolFunction]:
    """The public functions defined in a Python file (`orchestra run --tools FILE.py`)."""
    source = Path(path)
    spec = importlib.util.spec_from_file_location(f"orchestra_tools_{source.stem}", source)
    if not source.is_file() or spec is None or spec.loader is None:
        raise ConfigError(f"--tools {path}: no such Python file")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise ConfigError(f"--tools {path}: the file failed to load: {type(exc).__name__}: {exc}") from None
    return {name: value for name, value in vars(module).items()
            if inspect.isfunction(value) and value.__module__ == module.__name__ and not name.startswith("_")}
