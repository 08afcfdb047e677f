"""The package's layers point one way: no module imports, even inside a function, one that imports it back.

Imports under `if TYPE_CHECKING:` are left out (they never run). The graph is read from the source with
`ast`, so a lazy import is still an arrow, as it is in the design.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "orchestra_magic"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST) -> list[ast.ImportFrom | ast.Import]:
    found: list[ast.ImportFrom | ast.Import] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _type_checking_only(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules `name` imports: `from .x import y` names `x.y` when that is a module, else `x`."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in _imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names if alias.name in known}
            continue
        if node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            source = ".".join([*base, *([node.module] if node.module else [])])
        else:
            source = node.module or ""
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            targets.add(submodule if submodule in known else source)
    return {target for target in targets if target in known and target != name}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imported_modules(name, path, set(found)) for name, path in found.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the list of modules around it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_sees_lazy_imports_and_ignores_type_checking_ones() -> None:
    graph = import_graph()
    assert "orchestra_magic.fake.server" in graph["orchestra_magic.cli"]  # inside a function
    assert "orchestra_magic.providers.base" not in graph["orchestra_magic.errors"]  # under TYPE_CHECKING


def test_the_package_has_no_import_circles() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_fake_api_is_imported_only_by_the_offline_provider_and_the_cli() -> None:
    users = {name for name, targets in import_graph().items()
             if any(target.startswith("orchestra_magic.fake") for target in targets)
             and not name.startswith("orchestra_magic.fake")}
    assert users <= {"orchestra_magic.providers.anthropic.provider", "orchestra_magic.cli"}, users


def test_the_provider_seam_depends_only_on_pure_values() -> None:
    # `providers/base.py` is what every backend and the engine share: plain values in and out. It may use
    # the pure bottom (state's types, errors), never the engine, the run folder, tools or a view.
    seam = import_graph()["orchestra_magic.providers.base"]
    assert {t for t in seam if t.startswith("orchestra_magic.")} <= {"orchestra_magic.state.events",
                                                                      "orchestra_magic.state.usage",
                                                                      "orchestra_magic.errors"}, seam
