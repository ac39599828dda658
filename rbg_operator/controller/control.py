"""Who controls an object: the check made before the operator writes any object it makes.

Every object the operator writes (a group's workloads, Services, ConfigMaps, gang objects and
adapters; a set's member groups; a RoleInstanceSet's instances; a RoleInstance's pods) is
written only when it is absent or controlled by the owner writing it (its controller
ownerReference carries the owner's UID). Anything else, another group's child or an object
nobody controls, is left alone and reported: a forced server-side apply would take it over,
and labels, which anyone may set, prove nothing.

Names stay as the reference API defines them, so two owners can want the same name (group `a`
with role `b-c` and group `a-b` with role `c` both want Service `s-a-b-c`). The first to create
it keeps it; the other reports the conflict and writes nothing, so the object never changes
hands. Creation of a name not yet seen is serialized per name in this process (CREATING), so
two owners reconciled side by side cannot both see it absent and both apply it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Hashable

from ..kube import KINDS, Kube
from .store import Store

# An object in an owner's way carries nothing that would wake the owner when it goes: how often
# an owner that reported a conflict looks again.
CONFLICT_RECHECK_SECONDS = 30


def controller_of(obj: dict) -> dict | None:
    """The ownerReference with controller=true, if any."""
    return next((o for o in obj["metadata"].get("ownerReferences") or [] if o.get("controller")), None)


def controlled_by(obj: dict, owner_uid: str) -> bool:
    controller = controller_of(obj)
    return controller is not None and bool(owner_uid) and controller.get("uid") == owner_uid


def conflict(observed: dict | None, owner: dict, kind: str | None = None) -> str | None:
    """None when `owner` may write the object: it does not exist, or `owner` controls it.
    Otherwise why not, naming the object and who holds it."""
    if observed is None or controlled_by(observed, owner["metadata"].get("uid", "")):
        return None
    meta = observed["metadata"]
    what = f"{kind or observed.get('kind', 'object')} {meta['name']}"
    held = controller_of(observed)
    held_by = f"is controlled by {held.get('kind')} {held.get('name')}" if held is not None else "has no controller"
    return (
        f"{what} already exists and {held_by}; {owner['kind']} {owner['metadata']['name']} leaves it "
        f"alone: delete or rename it"
    )


class NameLocks:
    """One lock per object name, held while an owner looks for the object and creates it."""

    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, list[int]]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: Hashable) -> AsyncIterator[None]:
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._locks[key]

    def __len__(self) -> int:
        return len(self._locks)


CREATING = NameLocks()


async def observe(store: Store, kube: Kube, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
    """The object as the store has it, else as the API server has it: an object the cache does
    not show (it lacks the label the watches select, or its event is still on its way) must be
    seen before anything is written under its name."""
    found = store.get(api_version, kind, namespace, name)
    if found is not None:
        return found
    found = await kube.get(KINDS[(api_version, kind)], namespace, name)
    if found is not None:
        found.update(apiVersion=api_version, kind=kind)
    return found
