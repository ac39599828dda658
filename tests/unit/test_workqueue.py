import asyncio

from rbg_operator.controller.workqueue import WorkQueue


async def test_bursts_of_adds_coalesce_into_one_item():
    queue: WorkQueue[str] = WorkQueue()
    for _ in range(50):
        queue.add("ns/a")
    queue.add("ns/b")
    assert len(queue) == 2
    assert await queue.get() == "ns/a"
    assert await queue.get() == "ns/b"
    assert len(queue) == 0


async def test_key_added_while_processing_is_requeued_once_after_done():
    queue: WorkQueue[str] = WorkQueue()
    queue.add("k")
    key = await queue.get()
    queue.add(key)
    queue.add(key)
    assert len(queue) == 0, "a key being processed must not be handed to a second worker"
    queue.done(key)
    assert len(queue) == 1


async def test_rate_limited_requeue_backs_off_exponentially():
    queue: WorkQueue[str] = WorkQueue(base_delay=0.05, max_delay=1)
    queue.add_rate_limited("k")
    assert len(queue) == 0
    await asyncio.sleep(0.08)
    assert len(queue) == 1
    key = await queue.get()
    queue.done(key)
    queue.add_rate_limited("k")  # second failure: 0.1s
    await asyncio.sleep(0.06)
    assert len(queue) == 0
    await asyncio.sleep(0.08)
    assert len(queue) == 1
    queue.forget("k")


async def test_workers_never_process_one_key_concurrently():
    queue: WorkQueue[str] = WorkQueue()
    active: set[str] = set()
    overlaps = 0
    handled = 0

    async def handle(key: str) -> None:
        nonlocal overlaps, handled
        if key in active:
            overlaps += 1
        active.add(key)
        await asyncio.sleep(0.01)
        active.discard(key)
        handled += 1

    runner = asyncio.create_task(queue.run_workers(4, handle))
    for _ in range(20):
        queue.add("same")
        await asyncio.sleep(0.002)
    await asyncio.sleep(0.1)
    runner.cancel()
    assert overlaps == 0
    assert 1 <= handled < 20, "adds during processing coalesce"


async def test_delayed_adds_within_the_window_coalesce_into_one_item():
    queue: WorkQueue[str] = WorkQueue()
    for _ in range(10):
        queue.add_after("g", 0.05)
        await asyncio.sleep(0.002)
    assert len(queue) == 0, "nothing is queued before the window ends"
    await asyncio.sleep(0.08)
    assert len(queue) == 1
    assert await queue.get() == "g"
    queue.done("g")
    await asyncio.sleep(0.08)
    assert len(queue) == 0, "the burst cost one item, not one per add"


async def test_a_delayed_add_of_a_queued_key_adds_nothing_later():
    queue: WorkQueue[str] = WorkQueue()
    queue.add("g")
    queue.add_after("g", 0.03)
    assert await queue.get() == "g"
    queue.done("g")
    await asyncio.sleep(0.06)
    assert len(queue) == 0


async def test_a_worker_whose_key_requeues_itself_still_lets_the_event_loop_run():
    """A handler with no await that re-adds its own key: get() must suspend all the same."""
    queue: WorkQueue[str] = WorkQueue()
    ticks = passes = 0

    async def requeue_itself(key: str) -> None:
        nonlocal passes
        passes += 1
        queue.add(key)

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    queue.add("k")
    tasks = [asyncio.create_task(queue.run_workers(1, requeue_itself)), asyncio.create_task(ticker())]
    await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert passes > 10 and ticks > 10, (passes, ticks)
