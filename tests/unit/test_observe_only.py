"""The RoleInstanceSet, RoleInstance, adapter, set and warmup passes read the cache in one place, observe, and their
decisions (the *_plan modules) can reach neither the API server nor the cache."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CONTROLLER = Path(__file__).resolve().parents[2] / "rbg_operator" / "controller"
PASSES = ("instanceset.py", "roleinstance.py", "scaling.py", "warmup.py", "drain.py")
PLANS = ("instanceset_plan.py", "roleinstance_plan.py", "scaling_plan.py", "warmup_plan.py", "drain_plan.py")
READERS = {"owned"}  # with every observe*: the functions that may read the cache
# What a pass may do with the cache outside them: keep its own writes' answers, hand the cache
# to the reader or to the status writer (which only stores its answer).
ALLOWED_USES = {"upsert", "remove"}
TAKES_THE_CACHE = ("observe", "write_status", "report")  # report: write_status and the Events


def is_store(node: ast.AST) -> bool:
    return (isinstance(node, ast.Name) and node.id == "store") or (
        isinstance(node, ast.Attribute) and node.attr == "store"
    )


def cache_reads_outside_observe(source: str) -> list[str]:
    found = []

    def visit(node: ast.AST, function: str | None, parent: ast.AST | None) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            function = node.name
        reader = function in READERS or (function or "").startswith("observe")
        if is_store(node) and not reader and function != "__init__":
            used_for = parent.attr if isinstance(parent, ast.Attribute) and parent.value is node else None
            called = parent.func if isinstance(parent, ast.Call) and node in parent.args else None
            callee = getattr(called, "id", getattr(called, "attr", None))
            if used_for not in ALLOWED_USES and not (callee or "").startswith(TAKES_THE_CACHE):
                found.append(f"{function}:{node.lineno}")
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "owned" and not reader:
            found.append(f"{function}:{node.lineno} calls owned")
        for child in ast.iter_child_nodes(node):
            visit(child, function, node)

    visit(ast.parse(source), None, None)
    return found


@pytest.mark.parametrize("module", PASSES)
def test_only_observe_reads_the_cache(module: str):
    assert cache_reads_outside_observe((CONTROLLER / module).read_text()) == []


def test_the_check_sees_a_read_outside_observe():
    source = "def act(self):\n    return self.store.get('v1', 'Pod', 'ns', 'p')\n"
    assert cache_reads_outside_observe(source) == ["act:2"]
    assert cache_reads_outside_observe(source.replace("def act", "def observe")) == []
    assert cache_reads_outside_observe("def act(self, r):\n    self.store.upsert(r)\n") == []


@pytest.mark.parametrize("module", PLANS)
def test_the_plans_import_neither_the_api_client_nor_the_cache(module: str):
    imported = set()
    for node in ast.walk(ast.parse((CONTROLLER / module).read_text())):
        if isinstance(node, ast.ImportFrom):
            imported.add("." * node.level + (node.module or ""))
            imported.update("." * node.level + alias.name for alias in node.names if not node.module)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    assert not imported & {
        "..kube",
        ".store",
        "rbg_operator.kube",
        "rbg_operator.controller.store",
        "..events",
        ".reflector",
        ".workqueue",
    }, imported


def clock_reads(source: str) -> list[str]:
    """Calls that read the wall clock: `.now()`, `time()`, and conditions.merge without `at=`
    (it stamps with the clock then)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        if node.func.attr in ("now", "utcnow", "utc_now", "time", "monotonic"):
            found.append(ast.unparse(node))
        elif node.func.attr == "merge" and not any(k.arg == "at" for k in node.keywords):
            found.append(ast.unparse(node))
    return found


@pytest.mark.parametrize("module", PLANS)
def test_the_plans_take_the_time_as_now(module: str):
    # A plan that read the clock could not be replayed from its snapshot and `now`.
    assert clock_reads((CONTROLLER / module).read_text()) == []


def test_the_clock_check_sees_a_stamp_from_the_clock():
    assert clock_reads("conditions.merge(old, new, 1)\n") == ["conditions.merge(old, new, 1)"]
    assert clock_reads("conditions.merge(old, new, 1, at=stamp)\n") == []
    assert clock_reads("datetime.datetime.now(datetime.UTC)\n") == ["datetime.datetime.now(datetime.UTC)"]
