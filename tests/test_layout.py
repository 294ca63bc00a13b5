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


#: The package's folders, lowest first: a module imports only modules of its own folder
#: or of a folder listed before it.
LAYERS = ["core", "integration", "digital", "design", "experiments", "cli"]
#: Modules outside the folders: the version (imported by every layer) and the package's
#: public API (which imports from every layer).
OUTSIDE = {"aihwkit_slicing.version": -1, "aihwkit_slicing": len(LAYERS)}


def layer_of(name: str) -> int:
    if name in OUTSIDE:
        return OUTSIDE[name]
    folder = name.split(".")[1]
    assert folder in LAYERS, f"{name} is in no layer's folder"
    return LAYERS.index(folder)


def test_every_module_is_in_a_layer_folder():
    for name in MODULES:
        layer_of(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_flow_down_the_layers(name):
    upward = sorted(dep for dep in GRAPH[name] if layer_of(dep) > layer_of(name))
    assert not upward, f"{name} (layer {layer_of(name)}) imports {upward} from above"


def test_the_layer_check_sees_an_upward_import():
    assert layer_of("aihwkit_slicing.experiments.sweep") > layer_of("aihwkit_slicing.core.tables")
    assert "aihwkit_slicing.core.converter" in GRAPH["aihwkit_slicing.integration.catalog"]


#: The most lines a module may have.
MAX_LINES = 600


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small_and_say_what_they_hold(name):
    text = MODULES[name].read_text()
    assert len(text.splitlines()) <= MAX_LINES, f"{name}: {len(text.splitlines())} lines"
    docstring = ast.get_docstring(ast.parse(text))
    assert docstring and docstring.splitlines()[0].strip(), f"{name} has no first docstring line"


def test_tests_mirror_the_package_folders():
    tests = Path(__file__).resolve().parent
    folders = {p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    assert folders == set(LAYERS), folders
    for folder in folders:
        assert list((tests / folder).glob("test_*.py")), f"tests/{folder} holds no tests"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_module_imports_private_names_of_another(name):
    private = sorted(f"{module}.{imported}" for module, imported in imports_of(name)
                     if module.startswith("aihwkit_slicing") and imported.startswith("_")
                     and not imported.startswith("__") and module != name)
    assert not private, f"{name} reaches into {private}"


def test_the_numeric_core_does_not_know_aihwkit_tiles():
    numeric = ["aihwkit_slicing.core.tables", "aihwkit_slicing.core.builders",
               "aihwkit_slicing.core.quantize", "aihwkit_slicing.core.scaling"]
    allowed = {"aihwkit_slicing.core.tables", "aihwkit_slicing.core.table_checks",
               "aihwkit_slicing.core.quantize", "aihwkit_slicing.core.validation",
               "aihwkit_slicing.core.device_model", "aihwkit_slicing.core.cell_index",
               "aihwkit_slicing.core.mse_errors"}
    for name in numeric:
        assert GRAPH[name] <= allowed, (name, GRAPH[name])
