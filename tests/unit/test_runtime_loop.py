"""The operator's worker loop (Runtime.handle on the real store and queue): a reconcile that
returns without writing, after its last write came back with a generation it had not read,
is not requeued for ever."""

import asyncio
import contextlib

from rbg_operator import kinds
from rbg_operator.controller.store import Store, writer
from rbg_operator.controller.workqueue import WorkQueue
from rbg_operator.operator import GROUP, Runtime


class ReturnsEarly:
    """What every reconciler does for an object being deleted: nothing, and no write."""

    def __init__(self) -> None:
        self.passes = 0

    async def reconcile(self, namespace: str, name: str) -> None:
        self.passes += 1


def group(rv: str, generation: int, **meta) -> dict:
    return {
        "apiVersion": kinds.API_VERSION,
        "kind": "RoleBasedGroup",
        "spec": {},
        "metadata": {
            "name": "g",
            "namespace": "ns",
            "uid": "u",
            "resourceVersion": rv,
            "generation": generation,
            **meta,
        },
    }


async def test_a_group_being_deleted_under_its_status_write_is_reconciled_once_and_the_loop_runs():
    key = (GROUP, "ns", "g")
    store, queue, reconciler = Store(), WorkQueue(), ReturnsEarly()
    store.upsert(group("10", 1))
    token = writer.set(key)
    try:  # the status write's answer: deletionTimestamp set, generation bumped meanwhile
        store.upsert(group("12", 2, deletionTimestamp="2026-12-04T00:00:00Z", finalizers=["x"]), read_generation=1)
    finally:
        writer.reset(token)
    runtime = Runtime(None, store, queue, {GROUP: reconciler})
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    queue.add(key)
    tasks = [asyncio.create_task(queue.run_workers(2, runtime.handle)), asyncio.create_task(ticker())]
    await asyncio.sleep(0.3)
    for task in tasks:
        task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.gather(*tasks)
    assert reconciler.passes == 1, f"{reconciler.passes} passes: the key requeued itself"
    assert ticks >= 10


async def test_a_deleted_objects_failure_count_goes_with_it():
    key = (GROUP, "ns", "g")
    store, queue = Store(), WorkQueue()
    store.upsert(group("10", 1))
    runtime = Runtime(None, store, queue, {GROUP: ReturnsEarly()})
    queue.add_rate_limited(key)
    assert key in queue._failures
    runtime.deliver("DELETED", group("11", 1))
    assert key not in queue._failures and store.get(kinds.API_VERSION, "RoleBasedGroup", "ns", "g") is None
