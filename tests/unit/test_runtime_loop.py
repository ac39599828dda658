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


def instance_set(rv: str) -> dict:
    return {
        "apiVersion": kinds.API_VERSION,
        "kind": "RoleInstanceSet",
        "spec": {},
        "metadata": {
            "name": "g-router",
            "namespace": "ns",
            "uid": "ris",
            "resourceVersion": rv,
            "generation": 1,
            "labels": {"rolebasedgroup.workloads.x-k8s.io/name": "g"},
            "ownerReferences": [
                {"apiVersion": kinds.API_VERSION, "kind": "RoleBasedGroup", "name": "g", "uid": "u", "controller": True}
            ],
        },
    }


async def test_a_write_answer_wakes_the_child_at_once_and_its_echo_wakes_nothing_again():
    """Expectations: a group that creates a RoleInstanceSet starts the set's pass on the write's
    answer, not on its watch echo; the echo then wakes neither the set nor (again) the group."""
    group_key, set_key = (GROUP, "ns", "g"), ("roleinstanceset", "ns", "g-router")
    store, queue = Store(), WorkQueue()
    runtime = Runtime(None, store, queue, {})
    store.on_write = runtime.written
    token = writer.set(group_key)
    try:
        store.upsert(instance_set("5"))  # the group's create, answered
    finally:
        writer.reset(token)
    assert list(queue._queued) == [set_key], "the set's pass waits for the echo"
    assert queue._ready.get_nowait() == set_key
    queue._queued.clear()
    runtime.deliver("ADDED", instance_set("5"))  # the echo
    assert not queue._queued and not queue._timers, "the echo woke again what the answer woke"
    runtime.deliver("MODIFIED", instance_set("6"))  # someone else's change wakes as before
    assert set_key in queue._queued


async def test_a_key_queued_now_drops_its_pending_timer_so_it_is_not_passed_twice():
    queue = WorkQueue()
    queue.add_after("k", 0.05)  # a child's change, coalesced
    queue.add("k")  # then a change that wakes it at once
    assert await queue.get() == "k"
    queue.done("k")
    await asyncio.sleep(0.1)
    assert len(queue) == 0, "the timer queued the key again after its pass had read everything"
