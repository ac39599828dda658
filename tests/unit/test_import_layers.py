"""The operator's modules import downward only, and never in a circle.

The layers, lowest first (LAYERS below is the one place they are written down):

1. base: kinds (the API group, versions and kind keys), naming, timestamps, hashing,
   bounded_json, metrics, liveness, kubeconfig. Facts and small pure helpers; none of them
   knows of any other layer.
2. api: the API's models, validation and conversion (api/).
3. desired: the children a group should have, built purely from its spec (desired/).
4. client: talking to the API server (kube, events, leader). Above api and desired, so the
   pure layers below cannot reach the network.
5. controller: the reconcilers, the store, the work queue and the wake table (controller/).
6. app: what runs the rest: the operator's wiring, the admission and conversion webhook, the
   CLI, the kubectl plugin, storage migration, the metrics server.

A module may import from its own layer or a lower one. Every import counts, the ones inside
functions too (a deferred import is still a dependency, and a circle through it is still a
circle). Importing a submodule also runs its package's __init__; that implicit edge is not
counted, as Python orders package initialisation itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = Path(__file__).resolve().parents[2] / "rbg_operator"
ROOT = "rbg_operator"

# Lowest first. An entry names a module, or a package with everything under it.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "base",
        (
            "rbg_operator",
            "rbg_operator.kinds",
            "rbg_operator.naming",
            "rbg_operator.timestamps",
            "rbg_operator.hashing",
            "rbg_operator.bounded_json",
            "rbg_operator.metrics",
            "rbg_operator.liveness",
            "rbg_operator.kubeconfig",
        ),
    ),
    ("api", ("rbg_operator.api",)),
    ("desired", ("rbg_operator.desired",)),
    ("client", ("rbg_operator.kube", "rbg_operator.events", "rbg_operator.leader")),
    ("controller", ("rbg_operator.controller",)),
    (
        "app",
        (
            "rbg_operator.operator",
            "rbg_operator.webhook",
            "rbg_operator.cli",
            "rbg_operator.kubectl_plugin",
            "rbg_operator.storage_migration",
            "rbg_operator.metrics_server",
            "rbg_operator.__main__",
        ),
    ),
]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Our modules that `name` imports anywhere in its text, each resolved to the module itself
    (`from . import kinds` is an import of rbg_operator.kinds, not of the package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                found.add(f"{source}.{alias.name}" if f"{source}.{alias.name}" in known else source)
    return {module for module in found if module in known and module != name}


def import_graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def layer_of(module: str) -> int:
    """The index in LAYERS of the most specific entry naming the module or a package above it."""
    best, index = "", None
    for i, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            if (module == entry or module.startswith(entry + ".")) and len(entry) > len(best):
                best, index = entry, i
    if index is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return index


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports, as the modules along it, or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" when fully explored
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                return path[path.index(imported) :] + [imported]
            if imported not in state and (found := visit(imported)):
                return found
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_the_graph_sees_imports_of_every_form():
    graph = import_graph()
    assert "rbg_operator.kinds" in graph["rbg_operator.kube"]  # from . import bounded_json, kinds, ...
    assert "rbg_operator.api.kept" in graph["rbg_operator.api.conversion"]  # from .kept import (...)
    assert "rbg_operator.kinds" in graph["rbg_operator.api.crdgen"]  # from ..kinds import GROUP, ...
    assert "rbg_operator.api.v1alpha2" in graph["rbg_operator.api.crdgen"]  # inside a function
    assert "rbg_operator.cli" in graph["rbg_operator.__main__"]


def test_the_cycle_finder_finds_a_circle_and_only_a_circle():
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None  # a diamond is no circle


def test_no_module_imports_itself_back_through_others():
    cycle = cycle_in(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_imports_only_its_own_layer_or_lower():
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {imported} ({LAYERS[layer_of(imported)][0]})"
        for module, imported_modules in sorted(import_graph().items())
        for imported in sorted(imported_modules)
        if layer_of(imported) > layer_of(module)
    ]
    assert not upward, "imports running up the layers:\n" + "\n".join(upward)
