"""A group's pass reads the store in one place, observe(), and decides in a module that can
neither read nor write: checked on the source, so a read slipped in between two awaits fails here."""

from __future__ import annotations

import ast
import inspect

from rbg_operator.controller import group_plan, group_snapshot, reconciler, restarts, steps
from rbg_operator.controller.store import Store

# Every Store method that answers from the cache.
STORE_READS = {
    name
    for name, member in inspect.getmembers(Store, inspect.isfunction)
    if not name.startswith("_") and name not in {"upsert", "remove", "forget", "mark_served", "mark_read"}
}
GROUP_MODULES = (reconciler, group_plan, group_snapshot, steps)


def tree(module) -> ast.Module:
    return ast.parse(inspect.getsource(module))


def functions_calling(module, names: set[str]) -> dict[str, set[str]]:
    """function name -> the `names` it calls as methods (x.get(...)) or plain functions."""
    found: dict[str, set[str]] = {}
    for function in ast.walk(tree(module)):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.Call):
                callee = node.func
                name = callee.attr if isinstance(callee, ast.Attribute) else getattr(callee, "id", None)
                receiver = callee.value if isinstance(callee, ast.Attribute) else None
                on_store = receiver is not None and "store" in ast.unparse(receiver)
                if name in names and (on_store or isinstance(callee, ast.Name)):
                    found.setdefault(function.name, set()).add(name)
    return found


def test_the_store_reads_methods_are_known():
    assert {"get", "owned_by_group", "in_role", "serves"} <= STORE_READS


def test_only_observe_reads_the_store():
    reads = {
        f"{module.__name__}.{function}": names
        for module in GROUP_MODULES
        for function, names in functions_calling(module, STORE_READS).items()
    }
    assert set(reads) == {"rbg_operator.controller.group_snapshot.observe"}
    assert reads["rbg_operator.controller.group_snapshot.observe"] >= {"get", "owned_by_group", "serves"}


def test_act_looks_a_name_up_again_only_to_create_it():
    """The one read outside observe: the creation check under the name's lock (control.py),
    which also asks the API server, since the cache may not show the name."""
    callers = functions_calling(reconciler, {"look_up"})
    assert set(callers) == {"_apply", "_record_revision"}
    for function in ast.walk(tree(reconciler)):
        if isinstance(function, ast.AsyncFunctionDef) and function.name in callers:
            held = [
                w
                for w in ast.walk(function)
                if isinstance(w, ast.AsyncWith) and "CREATING.hold" in ast.unparse(w.items[0].context_expr)
            ]
            assert held and all(
                any(c is call for w in held for c in ast.walk(w))
                for call in ast.walk(function)
                if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "look_up"
            )


def imported_modules(module) -> set[str]:
    found = set()
    for node in ast.walk(tree(module)):
        if isinstance(node, ast.ImportFrom):
            found.add(node.module or "")
            found |= {f"{node.module}.{a.name}" if node.module else a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
    return found


def test_the_plan_imports_neither_the_api_client_nor_the_store():
    for module in (group_plan, steps):
        imported = imported_modules(module)
        assert not [m for m in imported if m.split(".")[-1] in ("kube", "store", "Kube", "Store")], imported
        assert "asyncio" not in imported


def test_the_plan_has_no_awaits():
    for module in (group_plan, steps):
        source = tree(module)
        assert not [n for n in ast.walk(source) if isinstance(n, (ast.Await, ast.AsyncFunctionDef, ast.AsyncWith))]
    # Time comes in as `now`: a plan read from the clock could not be replayed.
    clock = [
        n
        for n in ast.walk(tree(group_plan))
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr in ("now", "utcnow", "time", "monotonic")
    ]
    assert not clock, [ast.unparse(n) for n in clock]
    plan_restarts = next(
        n for n in ast.walk(tree(restarts)) if isinstance(n, ast.FunctionDef) and n.name == "plan_restarts"
    )
    assert not {n.id for n in ast.walk(plan_restarts) if isinstance(n, ast.Name)} & {"kube", "store"}
