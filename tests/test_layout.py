"""The package's modules depend on each other one way: no import cycles, no reach-ins.

Every ``import`` statement of every module counts, also those inside functions (a
function-level import hides a cycle from Python, not from a reader).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "aihwkit_slicing"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports_of(name: str) -> set[tuple[str, str]]:
    """``(module, imported name or "")`` for every import in module ``name``."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update((alias.name, "") for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            found.update((base, alias.name) for alias in node.names)
    return found


def dependencies(name: str) -> set[str]:
    """The package's modules that module ``name`` imports."""
    deps = set()
    for module, imported in imports_of(name):
        if f"{module}.{imported}" in MODULES:
            deps.add(f"{module}.{imported}")  # from package import submodule
        elif module in MODULES:
            deps.add(module)
    deps.discard(name)
    return deps


GRAPH = {name: dependencies(name) for name in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep):] + [dep]
            if dep not in state:
                cycle = visit(dep)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_itself_through_others():
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH) or [])


def test_the_graph_sees_function_level_imports():
    # the command line imports the sweep inside its functions
    assert "aihwkit_slicing.experiments.sweep" in GRAPH["aihwkit_slicing.cli.main"]


#: Modules nothing below may import: the top of the house.
TOP = {"aihwkit_slicing.cli.main", "aihwkit_slicing.cli.allocate",
       "aihwkit_slicing.experiments.plotting"}


@pytest.mark.parametrize("name", sorted(set(MODULES) - TOP - {"aihwkit_slicing"}))
def test_lower_modules_do_not_import_the_command_line_or_plots(name):
    assert not GRAPH[name] & TOP, f"{name} imports {sorted(GRAPH[name] & TOP)}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_private_names_of_another(name):
    private = sorted(f"{module}.{imported}" for module, imported in imports_of(name)
                     if module.startswith("aihwkit_slicing") and imported.startswith("_")
                     and not imported.startswith("__") and module != name)
    assert not private, f"{name} reaches into {private}"


def test_the_numeric_core_does_not_know_sweeps_or_aihwkit_tiles():
    core = ["aihwkit_slicing.core.tables", "aihwkit_slicing.core.quantize",
            "aihwkit_slicing.core.scaling"]
    for name in core:
        assert GRAPH[name] <= {"aihwkit_slicing.core.tables", "aihwkit_slicing.core.quantize",
                               "aihwkit_slicing.core.validation"}, (name, GRAPH[name])
