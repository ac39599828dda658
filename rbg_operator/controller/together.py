"""Run a reconcile's independent writes side by side, as one unit."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable


async def together(*steps: Awaitable) -> list:
    """Await every step concurrently. The first failure cancels the others and is raised as it
    is (not wrapped), so the reconcile ends as soon as any of its writes fails: a retry is a
    fresh reconcile, and no write of the failed one is still running when it starts."""
    tasks: list[asyncio.Task] = []
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(_awaited(step)) for step in steps]
    except BaseExceptionGroup as failures:
        raise failures.exceptions[0] from None
    return [task.result() for task in tasks]


async def _awaited(step: Awaitable):
    return await step
