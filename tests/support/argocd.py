"""Runs the repository's Argo CD health checks the way Argo CD does: the Lua script with the live
object bound to the global `obj`, in Lua 5.1 (Argo CD embeds gopher-lua, a Lua 5.1)."""

from __future__ import annotations

from pathlib import Path

from lupa import lua51

HEALTH_DIR = Path(__file__).resolve().parents[2] / "argocd" / "health"


def argocd_health(kind: str, obj: dict) -> dict[str, str]:
    """{'status': Healthy|Progressing|Degraded|Suspended, 'message': ...} of a live object."""
    runtime = lua51.LuaRuntime()
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute((HEALTH_DIR / f"{kind.lower()}.lua").read_text())
    return dict(result.items())
