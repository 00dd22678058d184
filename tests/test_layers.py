"""The package's layering: no import circles, and lower layers never import upper ones.

Every ``import`` in ``trio_chat`` counts: those under ``if TYPE_CHECKING:`` and those inside
functions too (a circle that only type checkers or a lazy import see is still a circle).
Importing a name from a package (``from .. import __version__``) counts as importing the
package's ``__init__``; importing a submodule does not count its parents' ``__init__``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

PACKAGE = "trio_chat"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE


def module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def source_files() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


MODULES = source_files()


def imported_modules(name: str, path: Path) -> set[str]:
    """The ``trio_chat`` modules that module ``name`` (at ``path``) imports."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def add(target: str) -> None:
        # The module itself if it is one; else the nearest enclosing package or module.
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                    add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                package = name if is_package else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{node.module}" if node.module else package
            elif node.module is not None and (
                node.module == PACKAGE or node.module.startswith(PACKAGE + ".")
            ):
                base = node.module
            else:
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                add(submodule if submodule in MODULES else base)
    return found


GRAPH = {name: imported_modules(name, path) for name, path in MODULES.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def reachable(start: str) -> set[str]:
    """Every module that importing ``start`` may import, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in GRAPH[todo.pop()]:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def under(prefixes: Iterable[str]) -> list[str]:
    return sorted(
        name
        for name in MODULES
        if any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes)
    )


def test_the_import_graph_is_read() -> None:
    # The checks below are only as good as the graph: spot-check what it found.
    assert "trio_chat.transports.tcp" in MODULES
    assert "trio_chat.hub" in GRAPH["trio_chat.server"]
    assert "trio_chat.transports.connection" in GRAPH["trio_chat.transports.tcp"]


def test_no_import_circles() -> None:
    assert circles(GRAPH) == []


def test_the_circle_finder_finds_circles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [["a", "b", "c"]]


#: Modules that must not depend, even indirectly, on the listed upper layers.
LOWER_LAYERS = {
    "trio_chat.transports": ["trio_chat.server", "trio_chat.cli"],
    "trio_chat.hub": ["trio_chat.server", "trio_chat.transports", "trio_chat.cli"],
    "trio_chat.mailbox": ["trio_chat.server", "trio_chat.transports", "trio_chat.cli"],
    "trio_chat.protocol": ["trio_chat.server", "trio_chat.transports", "trio_chat.cli"],
    "trio_chat.store": ["trio_chat.server", "trio_chat.transports", "trio_chat.cli"],
}
for _lower in ("trio_chat.hub", "trio_chat.mailbox", "trio_chat.protocol", "trio_chat.store"):
    LOWER_LAYERS[_lower] += ["trio_chat.commands", "trio_chat.plugins"]
#: The plugin API: what the server is built from, never what is built from it.
for _lower in ("trio_chat.api", "trio_chat.commands", "trio_chat.hookspecs", "trio_chat.plugins"):
    LOWER_LAYERS[_lower] = ["trio_chat.server", "trio_chat.transports", "trio_chat.cli"]


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        (module, forbidden)
        for layer, upper in LOWER_LAYERS.items()
        for module in under([layer])
        for forbidden in upper
    ],
)
def test_lower_layers_do_not_import_upper_ones(module: str, forbidden: str) -> None:
    assert module in MODULES
    offending = sorted(
        target
        for target in reachable(module)
        if target == forbidden or target.startswith(forbidden + ".")
    )
    assert offending == [], f"{module} imports {forbidden} (through {GRAPH[module]})"
