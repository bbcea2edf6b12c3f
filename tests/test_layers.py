"""The import rules of the layout: UI → lifecycle → providers, the simulator only through the
backend that chooses it, and no import circle anywhere in the product code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("providers", "simulator", "studio", "components")
PRODUCT = (*PACKAGES, "app")

# package → top-level names it must never import
FORBIDDEN = {
    "providers": {"studio", "components", "simulator", "app"},
    "simulator": {"studio", "components", "app"},
    "studio": {"components", "app"},
    "components": {"simulator", "app"},
}
SIMULATOR_GATE = "studio.backends"  # the one product module outside simulator/ that imports it


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def product_modules() -> dict[str, Path]:
    files = [ROOT / "app.py"] + [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    return {module_name(p): p for p in files}


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """Product modules `path` imports at module level (not inside functions)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in tree.body:
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            if name.split(".")[0] in PRODUCT and name in modules:
                found.add(name)
    return found


MODULES = product_modules()
GRAPH = {name: imports_of(path, MODULES) for name, path in MODULES.items()}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_each_layer_imports_only_what_is_below_it(name: str) -> None:
    package = name.split(".")[0]
    banned = FORBIDDEN.get(package, set())
    if name == SIMULATOR_GATE:
        banned = banned - {"simulator"}
    elif package != "simulator":
        banned = banned | {"simulator"}
    wrong = sorted(i for i in GRAPH[name] if i.split(".")[0] in banned)
    assert wrong == [], f"{name} imports {wrong}"


def test_no_import_circle() -> None:
    # Depth-first search; a module seen again on the current path closes a circle.
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import circle: " + " → ".join([*path[path.index(name) :], name]))
        if name in done:
            return
        for imported in sorted(GRAPH.get(name, ())):
            if imported != name and not name.startswith(imported + "."):  # a package's own parent
                visit(imported, [*path, name])
        done.add(name)

    for name in sorted(GRAPH):
        visit(name, [])
